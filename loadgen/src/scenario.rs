//! What a shopper does: the scenarios, their mix, and one action each.
//!
//! Every connection is one shopper. The scenarios that need an account
//! (`checkout`, `flash-sale`, and `mixed` when it includes them) sign each
//! connection in as its own user in the setup phase; the others browse and
//! keep a guest cart anonymously.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use clap::ValueEnum;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Zipf};
use souk_client::api::{
    BrowseCategory, BrowseSort, CategoryId, Checkout, CheckoutLine, DeviceId, ErrorStatus, OrderId,
    ProductId, Sku,
};
use souk_client::{ClientError, new_idempotency_key};

use crate::shop::Shop;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Product detail, products chosen with a Zipf popularity.
    Browse,
    /// Category pages in every sort order.
    Category,
    /// A guest cart: add, change and view lines.
    Cart,
    /// Signed-in shoppers each adding a random SKU and checking out.
    Checkout,
    /// Every shopper buying one SKU of `--flash-units` units until it is
    /// gone; verified at the end (nothing oversold, every unit in an order).
    FlashSale,
    /// A weighted mix of the above (`--mix`).
    Mixed,
}

impl Scenario {
    pub fn needs_accounts(self) -> bool {
        matches!(self, Scenario::Checkout | Scenario::FlashSale)
    }
}

/// Weights of the scenarios in `mixed`, as `browse=60,category=20,...`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Mix(pub Vec<(Scenario, u32)>);

impl std::str::FromStr for Mix {
    type Err = String;

    fn from_str(text: &str) -> Result<Mix, String> {
        let mut parts = Vec::new();
        for part in text.split(',').filter(|p| !p.trim().is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected scenario=weight"))?;
            let scenario = Scenario::from_str(name.trim(), true)?;
            if matches!(scenario, Scenario::Mixed | Scenario::FlashSale) {
                return Err(format!("{name} cannot be part of a mix"));
            }
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: the weight is a whole number"))?;
            parts.push((scenario, weight));
        }
        if parts.iter().map(|(_, w)| *w).sum::<u32>() == 0 {
            return Err("the mix needs at least one positive weight".into());
        }
        Ok(Mix(parts))
    }
}

/// What the setup phase found and prepared, shared by every thread.
#[derive(Debug)]
pub struct Catalog {
    pub products: Vec<ProductId>,
    pub categories: Vec<CategoryId>,
    /// SKUs the cart and checkout scenarios buy.
    pub skus: Vec<Sku>,
    /// The flash sale's one SKU.
    pub flash_sku: Option<Sku>,
    /// Checkouts and flash-sale buys name their line in the checkout
    /// ("buy now", one request) instead of going through the cart.
    pub buy_now: bool,
}

/// One connection's shopper.
pub struct Shopper {
    pub client: Shop,
    pub device: DeviceId,
    /// The node it is connected to (its index among the endpoints).
    pub node: usize,
    /// Lines of its guest cart, as far as it knows.
    cart: RefCell<Vec<Sku>>,
    /// Whether its (signed-in) cart holds the flash-sale unit.
    flash_in_cart: Cell<bool>,
    /// Add-then-checkout must not interleave with another slot's checkout
    /// or cart edit on the same account; waiting here counts in the
    /// action's latency.
    pub turn: tokio::sync::Mutex<()>,
}

impl Shopper {
    pub fn new(client: Shop, device: DeviceId, node: usize) -> Shopper {
        Shopper {
            client,
            device,
            node,
            cart: RefCell::default(),
            flash_in_cart: Cell::new(false),
            turn: tokio::sync::Mutex::new(()),
        }
    }
}

/// The kinds of action, named in the report.
pub const ACTIONS: &[&str] = &[
    "product",
    "category",
    "cart-add",
    "cart-update",
    "cart-view",
    "checkout",
    "flash-buy",
];

/// One action's result.
pub struct Outcome {
    pub action: &'static str,
    /// The error status (or `transport`/`timeout`) of a failed request.
    pub error: Option<String>,
    /// A flash-sale checkout refused because the stock is gone: the sale
    /// working as it should, counted apart from errors.
    pub sold_out: bool,
    pub order: Option<OrderId>,
}

impl Outcome {
    fn of(action: &'static str, result: Result<(), ClientError>) -> Outcome {
        Outcome {
            action,
            error: result.err().map(|e| error_name(&e)),
            sold_out: false,
            order: None,
        }
    }
}

pub fn error_name(error: &ClientError) -> String {
    match error {
        ClientError::Api(api) => format!("{:?}", api.status),
        ClientError::Timeout => "Timeout".into(),
        ClientError::Transport(_) => "Transport".into(),
        // Encoding, decoding or configuration: the load generator's own
        // fault, never the server's answer.
        _ => "ClientSide".into(),
    }
}

/// A reproducible chooser of actions: the same seed, thread and slot give
/// the same sequence.
pub struct Workload {
    scenario: Scenario,
    mix: Arc<[(Scenario, u32)]>,
    pub rng: ChaCha8Rng,
    catalog: Arc<Catalog>,
    popularity: Option<Zipf<f64>>,
}

impl Workload {
    pub fn new(
        scenario: Scenario,
        mix: &Mix,
        zipf: f64,
        catalog: Arc<Catalog>,
        rng: ChaCha8Rng,
    ) -> Workload {
        let popularity = (zipf > 0.0 && catalog.products.len() > 1).then(|| {
            Zipf::new(catalog.products.len() as f64, zipf).expect("valid Zipf parameters")
        });
        Workload {
            scenario,
            mix: mix.0.clone().into(),
            rng,
            catalog,
            popularity,
        }
    }

    /// The same workload drawing from `rng`.
    pub fn fork(&self, rng: ChaCha8Rng) -> Workload {
        Workload {
            scenario: self.scenario,
            mix: self.mix.clone(),
            rng,
            catalog: self.catalog.clone(),
            popularity: self.popularity,
        }
    }

    fn pick_scenario(&mut self) -> Scenario {
        if self.scenario != Scenario::Mixed {
            return self.scenario;
        }
        let total: u32 = self.mix.iter().map(|(_, w)| w).sum();
        let mut ticket = self.rng.random_range(0..total);
        for (scenario, weight) in self.mix.iter() {
            if ticket < *weight {
                return *scenario;
            }
            ticket -= weight;
        }
        self.mix[0].0
    }

    fn product(&mut self) -> ProductId {
        let index = match &self.popularity {
            // Zipf ranks run from 1 to n.
            Some(zipf) => (zipf.sample(&mut self.rng) as usize).saturating_sub(1),
            None => self.rng.random_range(0..self.catalog.products.len()),
        };
        self.catalog.products[index.min(self.catalog.products.len() - 1)].clone()
    }

    fn sku(&mut self) -> Sku {
        self.catalog.skus[self.rng.random_range(0..self.catalog.skus.len())].clone()
    }

    /// Runs one action of the scenario for `shopper`.
    pub async fn act(&mut self, shopper: &Shopper) -> Outcome {
        match self.pick_scenario() {
            Scenario::Browse => {
                let product = self.product();
                let result = shopper.client.product(&product).await.map(drop);
                Outcome::of("product", result)
            }
            Scenario::Category => {
                let categories = &self.catalog.categories;
                let category = categories[self.rng.random_range(0..categories.len())].clone();
                let sorts = [
                    BrowseSort::NameAsc,
                    BrowseSort::PriceAsc,
                    BrowseSort::PriceDesc,
                    BrowseSort::Newest,
                ];
                let query = BrowseCategory {
                    category_id: Some(category),
                    sort: sorts[self.rng.random_range(0..sorts.len())],
                    limit: 20,
                    ..BrowseCategory::default()
                };
                Outcome::of("category", shopper.client.browse(query).await.map(drop))
            }
            Scenario::Cart => self.cart(shopper).await,
            Scenario::Checkout => self.checkout(shopper).await,
            Scenario::FlashSale => self.flash_buy(shopper).await,
            Scenario::Mixed => unreachable!("a mix holds no mix"),
        }
    }

    async fn cart(&mut self, shopper: &Shopper) -> Outcome {
        // A signed-in shopper's cart edits land in the cart its checkouts
        // order: one person does not edit the cart between adding a line
        // and checking it out.
        let _turn = shopper.turn.lock().await;
        let device = Some(shopper.device.clone());
        let lines = shopper.cart.borrow().len();
        let roll = self.rng.random_range(0..10);
        // Add 40 %, change 20 %, view 40 %; a cart of 20 lines only shrinks.
        if roll < 4 && lines < 20 || lines == 0 {
            let sku = self.sku();
            let added = shopper.client.add_to_cart(device, &sku, 1).await;
            if added.is_ok() && !shopper.cart.borrow().contains(&sku) {
                shopper.cart.borrow_mut().push(sku);
            }
            Outcome::of("cart-add", added)
        } else if roll < 6 || lines >= 20 {
            let index = self.rng.random_range(0..lines);
            let sku = shopper.cart.borrow()[index].clone();
            let quantity = self.rng.random_range(0..4);
            let changed = shopper
                .client
                .update_cart_line(device, &sku, quantity)
                .await;
            if changed.is_ok() && quantity == 0 {
                shopper.cart.borrow_mut().retain(|s| *s != sku);
            }
            Outcome::of("cart-update", changed)
        } else {
            Outcome::of("cart-view", shopper.client.view_cart(device).await)
        }
    }

    async fn checkout(&mut self, shopper: &Shopper) -> Outcome {
        let sku = self.sku();
        let _turn = shopper.turn.lock().await;
        let buy_now = self.catalog.buy_now;
        if !buy_now && let Err(error) = shopper.client.add_to_cart(None, &sku, 1).await {
            return Outcome::of("checkout", Err(error));
        }
        match shopper
            .client
            .checkout(checkout(buy_now.then_some(&sku)), new_idempotency_key())
            .await
        {
            Ok(order) => Outcome {
                order: Some(order),
                ..Outcome::of("checkout", Ok(()))
            },
            Err(error) => Outcome::of("checkout", Err(error)),
        }
    }

    async fn flash_buy(&mut self, shopper: &Shopper) -> Outcome {
        let sku = self
            .catalog
            .flash_sku
            .clone()
            .expect("the flash sale's SKU is chosen in setup");
        let _turn = shopper.turn.lock().await;
        let buy_now = self.catalog.buy_now;
        if !buy_now && !shopper.flash_in_cart.get() {
            if let Err(error) = shopper.client.add_to_cart(None, &sku, 1).await {
                return Outcome::of("flash-buy", Err(error));
            }
            shopper.flash_in_cart.set(true);
        }
        match shopper
            .client
            .checkout(checkout(buy_now.then_some(&sku)), new_idempotency_key())
            .await
        {
            Ok(order) => {
                shopper.flash_in_cart.set(false);
                Outcome {
                    order: Some(order),
                    ..Outcome::of("flash-buy", Ok(()))
                }
            }
            Err(error) if error.status() == Some(ErrorStatus::InsufficientStock) => Outcome {
                sold_out: true,
                ..Outcome::of("flash-buy", Ok(()))
            },
            Err(error) => Outcome::of("flash-buy", Err(error)),
        }
    }
}

/// A checkout of the cart, or of one unit of `buy_now`.
fn checkout(buy_now: Option<&Sku>) -> Checkout {
    Checkout {
        device_id: None,
        payment_method_token: "pm_tok_loadgen".into(),
        shipping_address_id: None,
        expected_total: None,
        lines: buy_now
            .map(|sku| CheckoutLine {
                sku: sku.clone(),
                quantity: 1,
            })
            .into_iter()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mix_parses_and_refuses_what_cannot_mix() {
        let mix: Mix = "browse=60, category=20,cart=15,checkout=5".parse().unwrap();
        assert_eq!(mix.0.len(), 4);
        assert_eq!(mix.0[3], (Scenario::Checkout, 5));
        assert!("browse".parse::<Mix>().is_err());
        assert!("browse=x".parse::<Mix>().is_err());
        assert!("flash-sale=1".parse::<Mix>().is_err());
        assert!("browse=0".parse::<Mix>().is_err());
    }
}
