//! A seeded generator of a plausible demo catalog: categories, products with
//! size or colour variants, prices in whole-looking minor units, and stock.
//!
//! The same seed and size always give the same catalog (ChaCha8 is
//! value-stable across platforms and versions), so tests, benchmarks and the
//! load generator can name products and SKUs the generator will produce.

use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use souk_wire::api::{
    Attribute, Category, CategoryId, Currency, Image, Money, OptionValue, Product, ProductId,
    ProductOption, Sku, StockStatus, UnixMillis, Variant,
};

use crate::CatalogData;

/// The default demo catalog: large enough to page through and to spread
/// SKUs over shards, small enough to build in milliseconds.
pub const DEMO_PRODUCTS_DEFAULT: usize = 500;

/// When the demo catalog's products were "created": a fixed instant, so the
/// catalog does not depend on the clock.
const EPOCH_MS: u64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z

struct Kind {
    id: &'static str,
    name: &'static str,
    nouns: &'static [&'static str],
    brands: &'static [&'static str],
    price_minor_units: (i64, i64),
    variants: VariantAxis,
}

#[derive(Clone, Copy)]
enum VariantAxis {
    Size(&'static [&'static str]),
    Colour,
    Single,
}

const CLOTHING_SIZES: &[&str] = &["XS", "S", "M", "L", "XL"];
const SHOE_SIZES: &[&str] = &["39", "40", "41", "42", "43", "44", "45"];
const COLOURS: &[(&str, &str)] = &[
    ("Black", "BLK"),
    ("White", "WHT"),
    ("Navy", "NVY"),
    ("Olive", "OLV"),
    ("Red", "RED"),
    ("Grey", "GRY"),
];
const ADJECTIVES: &[&str] = &[
    "Classic",
    "Everyday",
    "Light",
    "Heritage",
    "Urban",
    "Alpine",
    "Coastal",
    "Compact",
    "Premium",
    "Essential",
    "Vintage",
    "Modern",
    "Rugged",
    "Soft",
    "Studio",
    "Nordic",
    "Summit",
    "Harbor",
];
const MATERIALS: &[&str] = &[
    "Cotton", "Linen", "Wool", "Leather", "Bamboo", "Steel", "Oak", "Ceramic", "Recycled", "Canvas",
];

const KINDS: &[Kind] = &[
    Kind {
        id: "apparel",
        name: "Apparel",
        nouns: &[
            "T-Shirt", "Hoodie", "Jacket", "Shirt", "Sweater", "Chinos", "Jeans",
        ],
        brands: &["Northwind", "Fjord & Co", "Larkspur"],
        price_minor_units: (1499, 14999),
        variants: VariantAxis::Size(CLOTHING_SIZES),
    },
    Kind {
        id: "shoes",
        name: "Shoes",
        nouns: &["Sneaker", "Trail Runner", "Boot", "Loafer", "Sandal"],
        brands: &["Stride", "Northwind", "Peakline"],
        price_minor_units: (3999, 18999),
        variants: VariantAxis::Size(SHOE_SIZES),
    },
    Kind {
        id: "outdoor",
        name: "Outdoor",
        nouns: &[
            "Backpack",
            "Tent",
            "Sleeping Bag",
            "Water Bottle",
            "Headlamp",
        ],
        brands: &["Peakline", "Basecamp"],
        price_minor_units: (1299, 39999),
        variants: VariantAxis::Colour,
    },
    Kind {
        id: "kitchen",
        name: "Kitchen",
        nouns: &[
            "Chef's Knife",
            "Skillet",
            "Cutting Board",
            "Kettle",
            "Mug",
            "Dutch Oven",
        ],
        brands: &["Hearth", "Copperleaf"],
        price_minor_units: (899, 24999),
        variants: VariantAxis::Single,
    },
    Kind {
        id: "home",
        name: "Home",
        nouns: &["Throw Blanket", "Lamp", "Cushion", "Vase", "Rug", "Candle"],
        brands: &["Hearth", "Linden House"],
        price_minor_units: (1499, 29999),
        variants: VariantAxis::Colour,
    },
    Kind {
        id: "electronics",
        name: "Electronics",
        nouns: &[
            "Headphones",
            "Speaker",
            "Charger",
            "Keyboard",
            "Mouse",
            "Webcam",
        ],
        brands: &["Voltaic", "Soundry", "Keystone"],
        price_minor_units: (1999, 34999),
        variants: VariantAxis::Colour,
    },
    Kind {
        id: "books",
        name: "Books",
        nouns: &["Notebook", "Journal", "Field Guide", "Cookbook", "Atlas"],
        brands: &["Quire Press", "Folio"],
        price_minor_units: (799, 4999),
        variants: VariantAxis::Single,
    },
    Kind {
        id: "sports",
        name: "Sports",
        nouns: &[
            "Yoga Mat",
            "Dumbbell Set",
            "Jump Rope",
            "Cycling Gloves",
            "Running Cap",
        ],
        brands: &["Peakline", "Tempo"],
        price_minor_units: (999, 19999),
        variants: VariantAxis::Colour,
    },
    Kind {
        id: "garden",
        name: "Garden",
        nouns: &[
            "Planter",
            "Pruning Shears",
            "Watering Can",
            "Seed Kit",
            "Hose",
        ],
        brands: &["Greenway", "Linden House"],
        price_minor_units: (699, 8999),
        variants: VariantAxis::Single,
    },
    Kind {
        id: "office",
        name: "Office",
        nouns: &[
            "Desk Lamp",
            "Desk Organizer",
            "Monitor Stand",
            "Fountain Pen",
            "Planner",
        ],
        brands: &["Keystone", "Folio"],
        price_minor_units: (999, 15999),
        variants: VariantAxis::Colour,
    },
];

/// Generates `product_count` products from `seed`.
pub fn generate(seed: u64, product_count: usize) -> CatalogData {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut data = CatalogData::default();
    let mut counts = vec![0u32; KINDS.len()];
    for n in 0..product_count {
        let kind_index = n % KINDS.len();
        counts[kind_index] += 1;
        let (product, stock) = product(&mut rng, n, &KINDS[kind_index]);
        data.stock.extend(stock);
        data.products.push(product);
    }
    data.categories = KINDS
        .iter()
        .zip(counts)
        .map(|(kind, product_count)| Category {
            id: category_id(kind.id),
            name: kind.name.to_owned(),
            parent_id: None,
            product_count,
        })
        .collect();
    data
}

/// The id the generator gives the `n`th product (from 0).
pub fn product_id(n: usize) -> ProductId {
    ProductId::new(format!("P{n:05}")).expect("generated ids are valid")
}

fn category_id(id: &str) -> CategoryId {
    CategoryId::new(id).expect("demo category ids are valid")
}

fn sku(product: &ProductId, suffix: &str) -> Sku {
    Sku::new(format!("{product}-{suffix}")).expect("generated SKUs are valid")
}

/// A price that looks like a shop's: whole units ending in 99.
fn price(rng: &mut ChaCha8Rng, (low, high): (i64, i64)) -> i64 {
    let units = rng.random_range(low / 100..=high / 100);
    units * 100 + 99
}

fn product(rng: &mut ChaCha8Rng, n: usize, kind: &Kind) -> (Product, Vec<(Sku, i64)>) {
    let id = product_id(n);
    let pick = |rng: &mut ChaCha8Rng, list: &[&'static str]| *list.choose(rng).expect("non-empty");
    let adjective = pick(rng, ADJECTIVES);
    let material = pick(rng, MATERIALS);
    let noun = pick(rng, kind.nouns);
    let name = format!("{adjective} {material} {noun}");
    let base_price = price(rng, kind.price_minor_units);
    let (options, variants) = variants(rng, &id, &name, kind.variants, base_price);
    let stock = variants
        .iter()
        .map(|v| (v.sku.clone(), rng.random_range(0..=200)))
        .collect();
    let created_at = UnixMillis(EPOCH_MS + rng.random_range(0..365 * 86_400_000));
    let product = Product {
        description: Some(format!(
            "The {} {} in {}: made to last, priced to be used every day.",
            adjective.to_lowercase(),
            noun.to_lowercase(),
            material.to_lowercase()
        )),
        brand: Some(pick(rng, kind.brands).to_owned()),
        category_ids: vec![category_id(kind.id)],
        options,
        variants,
        attributes: vec![Attribute {
            name: "Material".into(),
            value: material.into(),
        }],
        images: vec![Image {
            url: format!("https://images.souk.example/{id}/main.jpg"),
            alt: Some(name.clone()),
        }],
        created_at,
        updated_at: created_at,
        id,
        name,
    };
    (product, stock)
}

fn variants(
    rng: &mut ChaCha8Rng,
    id: &ProductId,
    name: &str,
    axis: VariantAxis,
    base_price: i64,
) -> (Vec<ProductOption>, Vec<Variant>) {
    let variant = |suffix: &str, option: Option<(&str, &str)>, price: i64| Variant {
        sku: sku(id, suffix),
        name: Some(match option {
            Some((_, value)) => format!("{name} ({value})"),
            None => name.to_owned(),
        }),
        options: option
            .map(|(name, value)| OptionValue {
                name: name.into(),
                value: value.into(),
            })
            .into_iter()
            .collect(),
        price: Money::new(price, Currency::USD),
        compare_at_price: None,
        stock_status: StockStatus::Unknown,
        available: 0,
        attributes: Vec::new(),
    };
    match axis {
        VariantAxis::Single => (Vec::new(), vec![variant("STD", None, base_price)]),
        VariantAxis::Size(sizes) => {
            let option = ProductOption {
                name: "Size".into(),
                values: sizes.iter().map(|s| s.to_string()).collect(),
            };
            let variants = sizes
                .iter()
                .map(|size| variant(size, Some(("Size", size)), base_price))
                .collect();
            (vec![option], variants)
        }
        VariantAxis::Colour => {
            let count = rng.random_range(2..=4);
            let colours = &COLOURS[..count];
            let option = ProductOption {
                name: "Colour".into(),
                values: colours.iter().map(|(c, _)| c.to_string()).collect(),
            };
            let variants = colours
                .iter()
                .enumerate()
                // Later colours cost a little more, as special finishes do.
                .map(|(i, (colour, code))| {
                    variant(code, Some(("Colour", colour)), base_price + i as i64 * 500)
                })
                .collect();
            (vec![option], variants)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn same_seed_same_catalog() {
        let a = generate(7, 50);
        let b = generate(7, 50);
        assert_eq!(a.products, b.products);
        assert_eq!(a.stock, b.stock);
        assert_ne!(generate(8, 50).products, a.products);
    }

    #[test]
    fn ids_and_skus_are_unique_and_every_sku_has_stock() {
        let data = generate(1, DEMO_PRODUCTS_DEFAULT);
        assert_eq!(data.products.len(), DEMO_PRODUCTS_DEFAULT);
        let ids: HashSet<_> = data.products.iter().map(|p| &p.id).collect();
        assert_eq!(ids.len(), data.products.len());
        let skus: Vec<_> = data.skus().collect();
        let unique: HashSet<_> = skus.iter().collect();
        assert_eq!(unique.len(), skus.len());
        assert_eq!(data.stock.len(), skus.len());
        assert_eq!(data.products[42].id, product_id(42));
    }

    #[test]
    fn categories_count_their_products_and_prices_are_positive() {
        let data = generate(1, 100);
        let total: u32 = data.categories.iter().map(|c| c.product_count).sum();
        assert_eq!(total as usize, data.products.len());
        for product in &data.products {
            assert!(!product.variants.is_empty());
            for variant in &product.variants {
                assert!(variant.price.minor_units > 0);
                assert_eq!(variant.price.minor_units % 100, 99);
            }
        }
    }
}
