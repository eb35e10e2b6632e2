//! Kill -9 during a checkout load: after a restart every acknowledged order
//! is there, and for every SKU the units received equal the units
//! available, reserved and sold.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use souk_client::api::{DeviceId, OrderId, OrderStatus, RestockMode, Sku};
use souk_client::{Client, RetryPolicy, new_idempotency_key};
use souk_storage::demo;
use support::{ADMIN_EMAIL, ADMIN_PASSWORD, PASSWORD, Souk, checkout, sign_in_admin};

mod support;

const BUYERS: usize = 24;
const UNITS: i64 = 20_000;

fn spawn(data: &Path) -> Souk {
    let args = ["--shards", "2", "--demo-products", "40"];
    let more = [
        "--payment-latency-ms",
        "40",
        "--purchase-limit",
        "0",
        "--log",
        "warn",
    ];
    // The buyers check out as fast as they can; per-customer rates are off.
    let rates = ["--rate-checkouts", "0", "--rate-cart-writes", "0"];
    Souk::spawn(
        &[&args[..], &more[..], &rates[..]].concat(),
        data,
        Stdio::null(),
    )
}

async fn connect(souk: &Souk) -> Client {
    let mut config = souk.client_config();
    config.request_timeout = support::REQUEST_TIMEOUT;
    config.retry = RetryPolicy::none();
    Client::connect(config).await.unwrap()
}

fn phone() -> DeviceId {
    DeviceId::new("crash-test-phone").unwrap()
}

#[test]
fn acknowledged_orders_survive_sigkill_and_stock_is_conserved() {
    let data = tempfile::tempdir().unwrap();
    let _keyspace = support::Keyspace::of(data.path());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let created = Souk::create_admin(data.path(), ADMIN_EMAIL, ADMIN_PASSWORD);
    assert!(created.status.success(), "{created:?}");
    let mut souk = spawn(data.path());
    let acknowledged: Arc<Mutex<Vec<(usize, OrderId)>>> = Arc::default();

    let skus: Vec<Sku> = runtime.block_on(async {
        let admin = connect(&souk).await;
        sign_in_admin(&admin).await;
        let mut skus = Vec::new();
        for n in 1..4 {
            let product = admin.get_product(&demo::product_id(n)).await.unwrap();
            let sku = product.variants[0].sku.clone();
            admin
                .admin_restock(&sku, UNITS, RestockMode::Set)
                .await
                .unwrap();
            skus.push(sku);
        }
        // A guest cart, written behind within CART_FLUSH_INTERVAL.
        let guest = connect(&souk).await;
        guest.add_to_cart(Some(phone()), &skus[0], 4).await.unwrap();
        let mut buyers = Vec::new();
        for n in 0..BUYERS {
            let client = connect(&souk).await;
            client
                .register(&format!("crash{n}@example.org"), PASSWORD, None)
                .await
                .unwrap();
            buyers.push(client);
        }
        for (n, client) in buyers.into_iter().enumerate() {
            let (skus, acknowledged) = (skus.clone(), acknowledged.clone());
            tokio::spawn(async move {
                for round in 0.. {
                    let sku = &skus[(n + round) % skus.len()];
                    let units = 1 + (round % 2) as u32;
                    if client.update_cart_line(None, sku, units).await.is_err() {
                        return;
                    }
                    if round % 3 == 0 {
                        let other = &skus[(n + round + 1) % skus.len()];
                        let _ = client.update_cart_line(None, other, 1).await;
                    }
                    match client
                        .checkout(checkout("pm_tok_visa"), new_idempotency_key())
                        .await
                    {
                        Ok(order) => acknowledged.lock().unwrap().push((n, order.id)),
                        Err(error) if error.status().is_some() => {}
                        // The server is gone.
                        Err(_) => return,
                    }
                }
            });
        }
        skus
    });
    // Let orders pile up (some paid, some pending), then kill mid-load;
    // at least a second after the guest cart was filled.
    std::thread::sleep(Duration::from_millis(1000));
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(50));
        if acknowledged.lock().unwrap().len() >= 60 {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    souk.child.kill().unwrap();
    souk.child.wait().unwrap();
    // Checkouts still in flight at the kill get no acknowledgement, and
    // none is recorded after this point.
    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
    assert!(
        acknowledged.len() >= 20,
        "the load placed orders: {}",
        acknowledged.len()
    );

    let souk = spawn(data.path());
    runtime.block_on(async {
        let mut buyers = Vec::new();
        for n in 0..BUYERS {
            let client = connect(&souk).await;
            client
                .login(&format!("crash{n}@example.org"), PASSWORD, None)
                .await
                .unwrap();
            buyers.push(client);
        }
        let guest = connect(&souk).await;
        let cart = guest.get_cart(Some(phone())).await.unwrap();
        assert_eq!(
            cart.item_count, 4,
            "a cart older than the flush interval survives the kill"
        );
        for (n, id) in &acknowledged {
            let order = buyers[*n].get_order(*id).await;
            assert!(order.is_ok(), "acknowledged order {} lost: {order:?}", id.0);
        }
        // Payments interrupted by the kill resume; wait until none is left.
        let mut orders = Vec::new();
        for _ in 0..100 {
            orders.clear();
            for client in &buyers {
                let mut cursor = None;
                loop {
                    let page = client.list_orders(cursor, 100).await.unwrap();
                    orders.extend(page.orders);
                    cursor = page.next_cursor;
                    if cursor.is_none() {
                        break;
                    }
                }
            }
            if orders
                .iter()
                .all(|o| o.status != OrderStatus::PendingPayment)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(orders.len() >= acknowledged.len());
        println!(
            "{} orders acknowledged before the kill, {} stored after the restart",
            acknowledged.len(),
            orders.len()
        );
        let admin = connect(&souk).await;
        sign_in_admin(&admin).await;
        for sku in &skus {
            let units = |status: OrderStatus| -> i64 {
                orders
                    .iter()
                    .filter(|o| o.status == status)
                    .flat_map(|o| o.lines.iter())
                    .filter(|l| &l.sku == sku)
                    .map(|l| i64::from(l.quantity))
                    .sum()
            };
            let sold = units(OrderStatus::Paid);
            let pending = units(OrderStatus::PendingPayment);
            let level = admin.admin_restock(sku, 0, RestockMode::Add).await.unwrap();
            assert_eq!(
                level.reserved, pending,
                "{sku}: reserved units are the pending orders'"
            );
            assert_eq!(
                level.available + level.reserved + sold,
                UNITS,
                "{sku}: received = available + reserved + sold ({level:?}, sold {sold})"
            );
        }
    });
    souk.kill();
}
