//! The catalog read model: every product indexed for browsing, shared
//! immutably by all shards (behind an `Arc`, swapped whole when the catalog
//! changes). Nothing here does I/O or mutates after `build`.

use std::collections::HashMap;

use souk_storage::CatalogData;
use souk_wire::api::{
    ApiError, BrowseCategory, BrowseSort, Category, CategoryId, Cursor, ErrorStatus, Product,
    ProductId, ProductPage, ProductSummary, Sku, StockStatus, Variant,
};

/// Positions into `Catalog::products`, in each browse order. `u32` keeps the
/// lists small: a catalog is bounded far below 4 billion products.
#[derive(Debug, Default)]
struct Orderings {
    by_name: Vec<u32>,
    by_price: Vec<u32>,
    by_newest: Vec<u32>,
}

impl Orderings {
    fn build(positions: Vec<u32>, products: &[Entry]) -> Orderings {
        let mut by_name = positions.clone();
        by_name.sort_by(|&a, &b| {
            let (a, b) = (&products[a as usize], &products[b as usize]);
            a.product
                .name
                .cmp(&b.product.name)
                .then(a.product.id.cmp(&b.product.id))
        });
        let mut by_price = positions.clone();
        by_price.sort_by_key(|&p| (products[p as usize].price_from, p));
        let mut by_newest = positions;
        by_newest.sort_by_key(|&p| {
            (
                std::cmp::Reverse(products[p as usize].product.created_at),
                p,
            )
        });
        Orderings {
            by_name,
            by_price,
            by_newest,
        }
    }

    /// The positions in `sort` order: ascending lists are walked backwards
    /// for the descending sorts.
    fn walk(&self, sort: BrowseSort) -> Box<dyn Iterator<Item = u32> + '_> {
        match sort {
            BrowseSort::NameAsc => Box::new(self.by_name.iter().copied()),
            BrowseSort::NameDesc => Box::new(self.by_name.iter().rev().copied()),
            BrowseSort::PriceAsc => Box::new(self.by_price.iter().copied()),
            BrowseSort::PriceDesc => Box::new(self.by_price.iter().rev().copied()),
            BrowseSort::Newest => Box::new(self.by_newest.iter().copied()),
        }
    }
}

#[derive(Debug)]
struct Entry {
    product: Product,
    summary: ProductSummary,
    /// The lowest variant price, in minor units: what browse sorts and filters by.
    price_from: i64,
}

/// Where a SKU lives in the catalog.
#[derive(Debug, Clone, Copy)]
pub struct SkuEntry {
    pub product: u32,
    pub variant: u16,
}

#[derive(Debug, Default)]
pub struct Catalog {
    categories: Vec<Category>,
    products: Vec<Entry>,
    by_id: HashMap<ProductId, u32>,
    by_sku: HashMap<Sku, SkuEntry>,
    all: Orderings,
    by_category: HashMap<CategoryId, Orderings>,
}

impl Catalog {
    pub fn build(data: &CatalogData) -> Catalog {
        let products: Vec<Entry> = data.products.iter().map(entry).collect();
        let mut by_id = HashMap::with_capacity(products.len());
        let mut by_sku = HashMap::new();
        let mut members: HashMap<CategoryId, Vec<u32>> = HashMap::new();
        for (position, entry) in products.iter().enumerate() {
            let position = position as u32;
            by_id.insert(entry.product.id.clone(), position);
            for (variant, v) in entry.product.variants.iter().enumerate() {
                let variant = variant as u16;
                by_sku.insert(
                    v.sku.clone(),
                    SkuEntry {
                        product: position,
                        variant,
                    },
                );
            }
            for category in &entry.product.category_ids {
                members.entry(category.clone()).or_default().push(position);
            }
        }
        let all = Orderings::build((0..products.len() as u32).collect(), &products);
        // Every known category browses, even an empty one.
        for category in &data.categories {
            members.entry(category.id.clone()).or_default();
        }
        // Counts come from the products, so they stay right whatever the
        // stored categories say after products change.
        let mut categories = data.categories.clone();
        for category in &mut categories {
            category.product_count = members.get(&category.id).map_or(0, |m| m.len() as u32);
        }
        let by_category = members
            .into_iter()
            .map(|(category, positions)| (category, Orderings::build(positions, &products)))
            .collect();
        Catalog {
            categories,
            products,
            by_id,
            by_sku,
            all,
            by_category,
        }
    }

    pub fn categories(&self) -> &[Category] {
        &self.categories
    }

    pub fn product(&self, id: &ProductId) -> Option<&Product> {
        self.by_id
            .get(id)
            .map(|&p| &self.products[p as usize].product)
    }

    pub fn sku(&self, sku: &Sku) -> Option<SkuEntry> {
        self.by_sku.get(sku).copied()
    }

    /// Checks a product an admin wants to store, against this catalog.
    pub fn check_upsert(&self, product: &Product) -> Result<(), ApiError> {
        if product.name.trim().is_empty() {
            return Err(ApiError::bad_request("a product needs a name"));
        }
        let Some(first) = product.variants.first() else {
            return Err(ApiError::bad_request(
                "a product needs at least one variant",
            ));
        };
        for (n, variant) in product.variants.iter().enumerate() {
            if variant.price.minor_units < 0 {
                return Err(ApiError::bad_request(format!(
                    "{}: a price cannot be negative",
                    variant.sku
                )));
            }
            if variant.price.currency != first.price.currency {
                return Err(ApiError::bad_request(
                    "all variants of a product are priced in one currency",
                ));
            }
            if product.variants[..n].iter().any(|v| v.sku == variant.sku) {
                return Err(ApiError::bad_request(format!(
                    "{} appears twice",
                    variant.sku
                )));
            }
            if let Some((owner, _)) = self.sku_variant(&variant.sku)
                && owner.id != product.id
            {
                return Err(ApiError::new(
                    ErrorStatus::Conflict,
                    format!("{} belongs to product {}", variant.sku, owner.id),
                ));
            }
        }
        for category in &product.category_ids {
            if !self.categories.iter().any(|c| &c.id == category) {
                return Err(ApiError::bad_request(format!("no category {category}")));
            }
        }
        Ok(())
    }

    /// This catalog with `product` added or replaced. Built whole: admin
    /// changes are rare and the result is shared by every shard.
    pub fn with_product(&self, product: Product) -> Catalog {
        let mut products: Vec<Product> = self.products.iter().map(|e| e.product.clone()).collect();
        match self.by_id.get(&product.id) {
            Some(&position) => products[position as usize] = product,
            None => products.push(product),
        }
        Catalog::build(&CatalogData {
            categories: self.categories.clone(),
            products,
            stock: Vec::new(),
        })
    }

    /// The product and variant a SKU belongs to.
    pub fn sku_variant(&self, sku: &Sku) -> Option<(&Product, &Variant)> {
        let entry = self.sku(sku)?;
        let product = &self.products.get(entry.product as usize)?.product;
        Some((product, product.variants.get(usize::from(entry.variant))?))
    }

    /// Every product, in catalog order.
    pub fn products(&self) -> impl Iterator<Item = &Product> {
        self.products.iter().map(|e| &e.product)
    }

    /// Every SKU of every product.
    pub fn skus(&self) -> impl Iterator<Item = &Sku> {
        self.products()
            .flat_map(|p| p.variants.iter().map(|v| &v.sku))
    }

    pub fn product_count(&self) -> usize {
        self.products.len()
    }

    /// A page of products in one category (or all), sorted and filtered.
    pub fn browse(&self, query: &BrowseCategory) -> Result<ProductPage, ApiError> {
        let orderings = match &query.category_id {
            None => &self.all,
            Some(id) => self
                .by_category
                .get(id)
                .ok_or_else(|| ApiError::new(ErrorStatus::NotFound, format!("no category {id}")))?,
        };
        let offset = parse_cursor(query.cursor.as_ref())?;
        let limit = usize::from(query.limit);
        let (low, high) = (
            query.price.min_minor_units.unwrap_or(i64::MIN),
            query.price.max_minor_units.unwrap_or(i64::MAX),
        );
        let mut total = 0usize;
        let mut products = Vec::with_capacity(limit);
        for position in orderings.walk(query.sort) {
            let entry = &self.products[position as usize];
            if entry.price_from < low || entry.price_from > high {
                continue;
            }
            if total >= offset && products.len() < limit {
                products.push(entry.summary.clone());
            }
            total += 1;
        }
        let end = offset + products.len();
        Ok(ProductPage {
            products,
            next_cursor: (end < total).then(|| Cursor(format!("o:{end}"))),
            total: total as u32,
        })
    }
}

fn entry(product: &Product) -> Entry {
    let cheapest = product
        .variants
        .iter()
        .min_by_key(|v| v.price.minor_units)
        .expect("catalog products have at least one variant");
    let summary = ProductSummary {
        id: product.id.clone(),
        name: product.name.clone(),
        brand: product.brand.clone(),
        category_id: product.category_ids.first().cloned(),
        price_from: cheapest.price,
        image: product.images.first().cloned(),
        // Filled in per page from the stock board (`domain::browse`).
        stock_status: StockStatus::Unknown,
        created_at: product.created_at,
    };
    Entry {
        price_from: cheapest.price.minor_units,
        summary,
        product: product.clone(),
    }
}

/// Cursors are `o:<offset>`; anything else was not made by this server.
fn parse_cursor(cursor: Option<&Cursor>) -> Result<usize, ApiError> {
    let Some(cursor) = cursor else {
        return Ok(0);
    };
    cursor
        .0
        .strip_prefix("o:")
        .and_then(|n| n.parse::<usize>().ok())
        .ok_or_else(|| ApiError::bad_request(format!("invalid cursor {:?}", cursor.0)))
}

#[cfg(test)]
mod tests {
    use souk_storage::demo;
    use souk_wire::api::PriceRange;

    use super::*;

    fn catalog() -> Catalog {
        Catalog::build(&demo::generate(3, 200))
    }

    fn browse(category: Option<&str>, sort: BrowseSort, limit: u16) -> BrowseCategory {
        BrowseCategory {
            category_id: category.map(|c| CategoryId::new(c).unwrap()),
            sort,
            limit,
            ..BrowseCategory::default()
        }
    }

    #[test]
    fn paging_walks_every_product_once_in_order() {
        let catalog = catalog();
        let mut query = browse(Some("shoes"), BrowseSort::PriceAsc, 7);
        let mut seen = Vec::new();
        loop {
            let page = catalog.browse(&query).unwrap();
            assert_eq!(page.total, 20);
            seen.extend(page.products.iter().map(|p| p.price_from.minor_units));
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => break,
            }
        }
        assert_eq!(seen.len(), 20);
        assert!(
            seen.windows(2).all(|w| w[0] <= w[1]),
            "sorted by price: {seen:?}"
        );
    }

    #[test]
    fn descending_and_newest_orders_hold() {
        let catalog = catalog();
        let page = catalog
            .browse(&browse(None, BrowseSort::NameDesc, 50))
            .unwrap();
        let names: Vec<_> = page.products.iter().map(|p| p.name.clone()).collect();
        assert!(names.windows(2).all(|w| w[0] >= w[1]));
        let page = catalog
            .browse(&browse(None, BrowseSort::Newest, 50))
            .unwrap();
        assert!(
            page.products
                .windows(2)
                .all(|w| w[0].created_at >= w[1].created_at)
        );
        assert_eq!(page.total, 200);
    }

    #[test]
    fn price_filter_bounds_are_inclusive() {
        let catalog = catalog();
        let mut query = browse(None, BrowseSort::PriceAsc, 100);
        query.price = PriceRange {
            min_minor_units: Some(2000),
            max_minor_units: Some(5000),
        };
        let page = catalog.browse(&query).unwrap();
        assert!(page.total > 0);
        for product in &page.products {
            assert!((2000..=5000).contains(&product.price_from.minor_units));
        }
    }

    #[test]
    fn unknown_category_and_forged_cursor_are_typed_errors() {
        let catalog = catalog();
        let error = catalog
            .browse(&browse(Some("nope"), BrowseSort::NameAsc, 5))
            .unwrap_err();
        assert_eq!(error.status, ErrorStatus::NotFound);
        let mut query = browse(None, BrowseSort::NameAsc, 5);
        query.cursor = Some(Cursor("DROP TABLE".into()));
        assert_eq!(
            catalog.browse(&query).unwrap_err().status,
            ErrorStatus::BadRequest
        );
    }

    #[test]
    fn every_sku_maps_back_to_its_product() {
        let data = demo::generate(3, 50);
        let catalog = Catalog::build(&data);
        for product in &data.products {
            for (i, variant) in product.variants.iter().enumerate() {
                let entry = catalog.sku(&variant.sku).unwrap();
                assert_eq!(
                    catalog.products[entry.product as usize].product.id,
                    product.id
                );
                assert_eq!(usize::from(entry.variant), i);
            }
        }
    }
}
