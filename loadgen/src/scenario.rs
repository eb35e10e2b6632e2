//! What the load generator asks for.

use std::sync::Arc;

use clap::ValueEnum;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Zipf};
use souk_client::api::{BrowseCategory, BrowseSort, CategoryId, ProductId, RequestBody};

use crate::Args;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Product detail, products chosen with a Zipf popularity.
    Browse,
    /// Category pages in every sort order.
    Category,
}

/// The demo catalog's categories (see `souk_storage::demo`).
const CATEGORIES: &[&str] = &[
    "apparel",
    "shoes",
    "outdoor",
    "kitchen",
    "home",
    "electronics",
    "books",
    "sports",
    "garden",
    "office",
];

/// A reproducible stream of requests: the same seed, thread and slot always
/// give the same sequence.
pub struct Workload {
    scenario: Scenario,
    rng: ChaCha8Rng,
    products: Arc<Vec<ProductId>>,
    popularity: Option<Zipf<f64>>,
}

impl Workload {
    pub fn new(args: &Args, thread: usize) -> Workload {
        let products = (0..args.products)
            .map(|n| ProductId::new(format!("P{n:05}")).expect("valid id"))
            .collect();
        let popularity = (args.zipf > 0.0)
            .then(|| Zipf::new(args.products as f64, args.zipf).expect("valid Zipf parameters"));
        Workload {
            scenario: args.scenario,
            rng: ChaCha8Rng::seed_from_u64(args.seed ^ ((thread as u64) << 32)),
            products: Arc::new(products),
            popularity,
        }
    }

    /// An independent stream for one in-flight slot.
    pub fn fork(&self, slot: usize) -> Workload {
        let mut rng = self.rng.clone();
        rng.set_stream(slot as u64);
        Workload {
            scenario: self.scenario,
            rng,
            products: self.products.clone(),
            popularity: self.popularity,
        }
    }

    pub fn next_request(&mut self) -> RequestBody {
        match self.scenario {
            Scenario::Browse => {
                let index = self.product_index();
                RequestBody::GetProduct {
                    product_id: self.products[index].clone(),
                }
            }
            Scenario::Category => {
                let category = CATEGORIES[self.rng.random_range(0..CATEGORIES.len())];
                let sorts = [
                    BrowseSort::NameAsc,
                    BrowseSort::PriceAsc,
                    BrowseSort::PriceDesc,
                    BrowseSort::Newest,
                ];
                RequestBody::BrowseCategory(BrowseCategory {
                    category_id: Some(CategoryId::new(category).expect("valid id")),
                    sort: sorts[self.rng.random_range(0..sorts.len())],
                    limit: 20,
                    ..BrowseCategory::default()
                })
            }
        }
    }

    fn product_index(&mut self) -> usize {
        match &self.popularity {
            // Zipf ranks run from 1 to n.
            Some(zipf) => (zipf.sample(&mut self.rng) as usize).saturating_sub(1),
            None => self.rng.random_range(0..self.products.len()),
        }
    }
}
