use super::*;
use souk_storage::store::{CatalogStore, StockStore};

const USD: Currency = Currency::USD;

fn defaults() -> Defaults {
    Defaults {
        currency: USD,
        stock: 25,
    }
}

fn parse_text(text: &str) -> Parsed {
    parse(text.as_bytes(), None, defaults(), |_| {}).unwrap()
}

#[test]
fn souk_layout_groups_variants_and_builds_category_paths() {
    let parsed = parse_text(
        "product_id,name,description,brand,categories,sku,variant_name,options,price,currency,compare_at_price,stock,image_url\n\
         TEE,Plain Tee,Soft cotton,Souk,Clothing>T-Shirts|Sale,TEE-S,Small,Size=S|Color=Red,19.99,,24.50,10,https://img/tee.jpg\n\
         TEE,,,,,TEE-M,Medium,Size=M|Color=Red,19.99,,,,\n\
         MUG,Mug,,,Kitchen,MUG-1,,,7.5,EUR,,3,\n\
         BAD,Bad,,,,BAD 1,,,1,,,,\n\
         TEE,,,,,TEE-L,,,-3,,,,\n",
    );
    assert_eq!(parsed.rows, 5);
    assert_eq!(parsed.products.len(), 2);
    let tee = &parsed.products[0];
    assert_eq!(tee.variants.len(), 2);
    assert_eq!(tee.variants[0].price, Money::new(1999, USD));
    assert_eq!(
        tee.variants[0].compare_at_price,
        Some(Money::new(2450, USD))
    );
    assert_eq!(tee.options[0].values, vec!["S", "M"]);
    assert_eq!(
        tee.category_ids
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>(),
        ["clothing-t-shirts", "sale"]
    );
    let child = parsed
        .categories
        .iter()
        .find(|c| c.id.as_str() == "clothing-t-shirts")
        .unwrap();
    assert_eq!(
        child.parent_id.as_ref().map(|p| p.as_str()),
        Some("clothing")
    );
    assert_eq!(
        parsed.products[1].variants[0].price,
        Money::new(750, Currency::EUR)
    );
    assert_eq!(
        parsed
            .stock
            .iter()
            .find(|(s, _)| s.as_str() == "TEE-M")
            .unwrap()
            .1,
        25,
        "the default stock"
    );
    assert_eq!(parsed.rejected.len(), 2);
    assert_eq!(parsed.rejected[0].line, 5);
    assert!(
        parsed.rejected[0].reason.contains("SKU \"BAD 1\""),
        "{:?}",
        parsed.rejected
    );
    assert!(
        parsed.rejected[1].reason.contains("price"),
        "{:?}",
        parsed.rejected
    );
}

#[test]
fn superstore_layout_prices_from_sales_and_keeps_one_product_per_id() {
    let parsed = parse_text(
        "\"Row ID\",\"Order ID\",\"Product ID\",\"Category\",\"Sub-Category\",\"Product Name\",\"Sales\",\"Quantity\",\"Discount\",\"Profit\"\n\
         1,\"CA-1\",\"FUR-BO-1\",\"Furniture\",\"Bookcases\",\"Oak Bookcase\",261.96,2,0,41.9\n\
         2,\"CA-2\",\"FUR-BO-1\",\"Furniture\",\"Bookcases\",\"Oak Bookcase (renamed)\",130.98,1,0,1\n\
         3,\"CA-3\",\"OFF-LA-2\",\"Office Supplies\",\"Labels\",\"Labels\",14.62,2,0.2,6.8\n\
         4,\"CA-4\",\"OFF-PA-3\",\"Office Supplies\",\"Paper\",\"Paper\",10,0,0,1\n",
    );
    assert_eq!(parsed.products.len(), 2);
    let bookcase = &parsed.products[0];
    assert_eq!(bookcase.name, "Oak Bookcase", "the first row of an id wins");
    // 261.96 / 2 / (1 - 0) = 130.98
    assert_eq!(bookcase.variants[0].price, Money::new(13098, USD));
    assert_eq!(bookcase.variants[0].sku.as_str(), "FUR-BO-1");
    // 14.62 / 2 / 0.8 = 9.1375, to the cent 9.14
    assert_eq!(parsed.products[1].variants[0].price, Money::new(914, USD));
    let ids: Vec<&str> = bookcase.category_ids.iter().map(|c| c.as_str()).collect();
    assert_eq!(
        ids,
        ["furniture-bookcases", "furniture"],
        "browsable under both levels"
    );
    assert_eq!(parsed.rejected.len(), 1);
    assert!(parsed.rejected[0].reason.contains("Quantity"));
}

#[test]
fn vendure_layout_reads_variants_options_and_facets() {
    let parsed = parse_text(
        "name ,slug ,description ,assets ,facets ,optionGroups ,optionValues ,sku ,price ,taxCategory,stockOnHand,trackInventory,variantAssets,variantFacets\n\
         Laptop ,laptop ,\"Fast, light.\" ,laptop.jpg ,category:Electronics|category:Computers|brand:Apple ,\"screen size|RAM\",\"13 inch|8GB\" ,L1 ,1299.00,standard ,100 ,,,\n\
         , , , , , ,\"15 inch|16GB\" ,L2 ,2299.00,standard ,7 ,,,\n\
         Mouse ,mouse ,Clicks ,mouse.jpg ,category:Electronics|color:black , , ,M1 ,18.99 ,standard ,100 ,,,\n\
         , , , , , ,\"oops\" ,M2 ,1.00 ,standard ,1 ,,,\n",
    );
    assert_eq!(parsed.products.len(), 2);
    let laptop = &parsed.products[0];
    assert_eq!(laptop.id.as_str(), "laptop");
    assert_eq!(laptop.brand.as_deref(), Some("Apple"));
    assert_eq!(laptop.description.as_deref(), Some("Fast, light."));
    assert_eq!(laptop.variants.len(), 2);
    assert_eq!(laptop.variants[1].name.as_deref(), Some("15 inch / 16GB"));
    assert_eq!(
        laptop.variants[1].options[1],
        OptionValue {
            name: "RAM".into(),
            value: "16GB".into()
        }
    );
    assert_eq!(laptop.category_ids[0].as_str(), "electronics-computers");
    assert_eq!(
        parsed
            .stock
            .iter()
            .find(|(s, _)| s.as_str() == "L2")
            .unwrap()
            .1,
        7
    );
    assert_eq!(parsed.products[1].attributes[0].name, "color");
    assert_eq!(parsed.rejected.len(), 1, "option values without groups");
}

#[test]
fn an_unknown_header_is_refused() {
    let error = parse("a,b,c\n1,2,3\n".as_bytes(), None, defaults(), |_| {}).unwrap_err();
    assert!(matches!(error, ImportError::UnknownLayout(_)));
}

#[test]
fn decimals_are_exact() {
    assert_eq!(decimal("19.99", 2), Some(1999));
    assert_eq!(decimal("7.5", 2), Some(750));
    assert_eq!(decimal("7", 2), Some(700));
    assert_eq!(decimal(".5", 2), Some(50));
    assert_eq!(decimal("1.005", 2), None, "no silent rounding of prices");
    assert_eq!(decimal("-1", 2), None);
    assert_eq!(decimal("1e3", 2), None);
    assert_eq!(decimal("", 2), None);
    assert_eq!(slugify("Office Supplies & Co."), "office-supplies-co");
}

#[tokio::test]
async fn importing_twice_updates_and_never_duplicates() {
    use souk_storage::embedded::{EmbeddedStore, EngineKind};
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), EngineKind::Redb).unwrap();
    let csv = "product_id,name,categories,sku,price,stock\nA,Apple,Fruit,A-1,1.00,5\nB,Banana,Fruit,B-1,2.00,6\n";
    let first = store_parsed(&store, csv).await;
    assert_eq!(
        (first.new, first.updated, first.unchanged, first.stocked),
        (2, 0, 0, 2)
    );
    // A sale moved the stock of A-1 in the running shop since.
    store
        .put_stock(&[souk_storage::model::StockRecord {
            sku: Sku::new("A-1").unwrap(),
            received: 9,
            updated_at: UnixMillis(1),
        }])
        .await
        .unwrap();
    let csv = "product_id,name,categories,sku,price,stock\nA,Apple,Fruit,A-1,1.50,5\nB,Banana,Fruit,B-1,2.00,6\nC,Cherry,Fruit,C-1,3.00,7\n";
    let second = store_parsed(&store, csv).await;
    assert_eq!(
        (second.new, second.updated, second.unchanged, second.stocked),
        (1, 1, 1, 1)
    );
    let catalog = store.load_catalog().await.unwrap();
    assert_eq!(catalog.products.len(), 3, "no duplicates");
    let apple = catalog
        .products
        .iter()
        .find(|p| p.id.as_str() == "A")
        .unwrap();
    assert_eq!(apple.variants[0].price.minor_units, 150);
    let a_stock = catalog
        .stock
        .iter()
        .find(|(s, _)| s.as_str() == "A-1")
        .unwrap()
        .1;
    assert_eq!(a_stock, 9, "the shop's stock of a known SKU is left alone");
    assert!(store.catalog_imported().await.unwrap());

    let clash = "product_id,name,sku,price\nZ,Zucchini,A-1,1.00\n";
    let third = store_parsed(&store, clash).await;
    assert_eq!(third.new, 0);
    assert_eq!(third.conflicts.len(), 1, "{:?}", third.conflicts);
}

async fn store_parsed(store: &dyn Store, csv: &str) -> Summary {
    let parsed = parse_text(csv);
    assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
    super::store(store, &parsed, UnixMillis(1_800_000_000_000), |_| {})
        .await
        .unwrap()
}
