//! The catalog as records: what the server indexes into its read cache.

use souk_wire::api::{Category, Product, Sku};

/// A whole catalog: categories, products with their variants, and the units
/// received of each SKU (its stock on hand before any sale).
#[derive(Debug, Clone, Default)]
pub struct CatalogData {
    pub categories: Vec<Category>,
    pub products: Vec<Product>,
    pub stock: Vec<(Sku, i64)>,
}

impl CatalogData {
    /// Every SKU of every product, in catalog order.
    pub fn skus(&self) -> impl Iterator<Item = &Sku> {
        self.products
            .iter()
            .flat_map(|p| p.variants.iter().map(|v| &v.sku))
    }
}
