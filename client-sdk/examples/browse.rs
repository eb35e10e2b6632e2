//! Browse a running souk shop.
//!
//!     cargo run --release -p souk-server -- --data-dir ./data
//!     cargo run -p souk-client --example browse -- 127.0.0.1:4433 <fingerprint>
//!
//! The fingerprint is the hex SHA-256 the server prints at start.

use souk_client::api::{BrowseCategory, BrowseSort};
use souk_client::{Client, ClientConfig, Trust};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(fingerprint)) = (args.next(), args.next()) else {
        eprintln!("usage: browse <host:port> <certificate sha-256 in hex>");
        std::process::exit(2);
    };
    let fingerprint: [u8; 32] = hex::decode(fingerprint.trim())?
        .try_into()
        .map_err(|_| "the fingerprint is 32 bytes (64 hex digits)")?;
    let client = Client::connect(ClientConfig::new(
        addr.parse()?,
        Trust::Fingerprint(fingerprint),
    ))
    .await?;

    let hello = client.hello().await?;
    println!(
        "connected to souk {} (shard {} of {})",
        hello.server_version, hello.shard, hello.shard_count
    );

    let categories = client.list_categories().await?;
    for category in &categories {
        println!(
            "  {:<12} {:>4} products",
            category.name, category.product_count
        );
    }

    // Many requests in flight on the one connection: each is its own stream.
    let first = &categories[0];
    let page = client
        .browse(BrowseCategory {
            category_id: Some(first.id.clone()),
            sort: BrowseSort::PriceAsc,
            limit: 5,
            ..BrowseCategory::default()
        })
        .await?;
    let details: Vec<_> = page
        .products
        .iter()
        .map(|summary| {
            let (client, id) = (client.clone(), summary.id.clone());
            tokio::spawn(async move { client.get_product(&id).await })
        })
        .collect();
    for detail in details {
        let product = detail.await??;
        println!("\n{} ({})", product.name, product.id);
        for variant in &product.variants {
            println!(
                "  {:<24} {:>12}  {:?}, {} available",
                variant.sku.as_str(),
                variant.price.to_string(),
                variant.stock_status,
                variant.available
            );
        }
    }
    Ok(())
}
