//! Selling, end to end: accounts, carts, checkout, payment, expiry and the
//! flash sale, on a real two-shard server through the client SDK.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use souk_client::api::{
    BrowseCategory, Checkout, CheckoutLine, DeviceId, ErrorStatus, IdempotencyKey, OrderStatus,
    PaymentStatus, RestockMode, Sku, StockLevel, StockStatus,
};
use souk_client::{Client, ClientConfig, ClientError, new_idempotency_key};
use souk_server::{Config, Server};
use souk_storage::demo;
use support::{PASSWORD, Running, checkout, sign_in_admin, start_with_admin, status};

mod support;

/// Two shards on an ephemeral port over `data`, with fast payments.
fn config(data: &std::path::Path) -> Config {
    Config {
        payment_latency: Duration::from_millis(10),
        ..support::config(data, 60)
    }
}

/// A server with an admin account, its configuration changed by `tune`.
fn start(tune: impl FnOnce(&mut Config)) -> Running {
    Running::start(|data| {
        let mut config = config(data);
        tune(&mut config);
        config
    })
}

/// A connection that waits twice the other tests' time for a reply: the
/// flash sale puts 2,000 checkouts on one debug-build server.
async fn connect(server: &Server) -> Client {
    let config = ClientConfig {
        request_timeout: support::REQUEST_TIMEOUT * 2,
        ..support::client_config(server)
    };
    Client::connect(config).await.unwrap()
}

async fn admin(server: &Server) -> Client {
    let client = connect(server).await;
    sign_in_admin(&client).await;
    client
}

/// A new customer account, signed in on its own connection.
async fn customer(server: &Server, email: &str) -> Client {
    let client = connect(server).await;
    client.register(email, PASSWORD, None).await.unwrap();
    client
}

/// The first SKU of demo product `n`.
async fn sku_of(client: &Client, n: usize) -> Sku {
    let product = client.get_product(&demo::product_id(n)).await.unwrap();
    product.variants[0].sku.clone()
}

async fn level(admin: &Client, sku: &Sku) -> StockLevel {
    admin.admin_restock(sku, 0, RestockMode::Add).await.unwrap()
}

async fn order_settles(client: &Client, id: souk_client::api::OrderId) -> OrderStatus {
    for _ in 0..200 {
        let order = client.get_order(id).await.unwrap();
        if order.status != OrderStatus::PendingPayment {
            return order.status;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("order {} never left PendingPayment", id.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_fills_a_cart_checks_out_pays_and_sees_the_order() {
    let running = start(|_| {});
    let admin = admin(&running.server).await;
    let shirt = sku_of(&admin, 1).await;
    let mug = sku_of(&admin, 2).await;
    admin
        .admin_restock(&shirt, 50, RestockMode::Set)
        .await
        .unwrap();
    admin
        .admin_restock(&mug, 50, RestockMode::Set)
        .await
        .unwrap();

    // A guest fills a cart on their phone, then signs up and signs in.
    let client = connect(&running.server).await;
    let phone = DeviceId::new("phone-7f3a").unwrap();
    client
        .add_to_cart(Some(phone.clone()), &shirt, 2)
        .await
        .unwrap();
    let guest = client
        .add_to_cart(Some(phone.clone()), &mug, 1)
        .await
        .unwrap();
    assert_eq!(guest.item_count, 3);
    assert_eq!(status(client.get_cart(None).await), ErrorStatus::BadRequest);
    client
        .register("ada@example.org", PASSWORD, Some("Ada"))
        .await
        .unwrap();
    assert_eq!(
        status(client.register("ADA@example.org", PASSWORD, None).await),
        ErrorStatus::Conflict,
        "e-mails are unique regardless of case"
    );
    let other = connect(&running.server).await;
    assert_eq!(
        status(other.login("ada@example.org", "wrong password", None).await),
        ErrorStatus::Unauthenticated
    );
    let grant = client
        .login("ada@example.org", PASSWORD, Some(phone.clone()))
        .await
        .unwrap();
    let cart = client.get_cart(None).await.unwrap();
    assert_eq!(
        cart.item_count, 3,
        "the guest cart joined the user's at login"
    );
    assert!(
        client.get_cart(Some(phone)).await.unwrap().item_count == 3,
        "signed in, the device id is ignored"
    );
    let line = cart.lines.iter().find(|l| l.sku == shirt).unwrap();
    assert_eq!(line.line_total.minor_units, 2 * line.unit_price.minor_units);
    assert_eq!(line.available, 50);
    let subtotal = cart.subtotal.unwrap();

    // A stale expected total is refused before anything is reserved.
    let mut stale = checkout("pm_tok_visa");
    stale.expected_total = Some(souk_client::api::Money::new(
        subtotal.minor_units - 1,
        subtotal.currency,
    ));
    assert_eq!(
        status(client.checkout(stale, new_idempotency_key()).await),
        ErrorStatus::Conflict
    );

    let key = new_idempotency_key();
    let mut exact = checkout("pm_tok_visa");
    exact.expected_total = Some(subtotal);
    let order = client.checkout(exact.clone(), key).await.unwrap();
    assert_eq!(order.status, OrderStatus::PendingPayment);
    assert_eq!(order.total, subtotal);
    assert_eq!(order.user_id, grant.user_id);
    assert_eq!(
        client.get_cart(None).await.unwrap().item_count,
        0,
        "ordered lines leave the cart"
    );

    // The same key again: the same order, nothing reserved twice.
    let again = client.checkout(exact.clone(), key).await.unwrap();
    assert_eq!(again.id, order.id);
    let mut different = exact;
    different.payment_method_token = "pm_tok_other".into();
    assert_eq!(
        status(client.checkout(different, key).await),
        ErrorStatus::Conflict,
        "a key reused for another checkout"
    );

    assert_eq!(order_settles(&client, order.id).await, OrderStatus::Paid);
    let shirts = level(&admin, &shirt).await;
    assert_eq!((shirts.on_hand, shirts.reserved), (48, 0), "sold once");
    let payment = client.payment_status(order.id).await.unwrap();
    assert_eq!(payment.status, PaymentStatus::Captured);
    assert_eq!(payment.amount, subtotal);
    assert_eq!(
        status(client.cancel_order(order.id).await),
        ErrorStatus::Conflict,
        "a paid order cannot be cancelled"
    );

    // Two more orders; history is newest first and pages.
    let mut ids = vec![order.id];
    for _ in 0..2 {
        client.add_to_cart(None, &mug, 1).await.unwrap();
        ids.push(
            client
                .checkout(checkout("pm_tok_visa"), new_idempotency_key())
                .await
                .unwrap()
                .id,
        );
    }
    let first = client.list_orders(None, 2).await.unwrap();
    assert_eq!(
        first.orders.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![ids[2], ids[1]]
    );
    let rest = client.list_orders(first.next_cursor, 2).await.unwrap();
    assert_eq!(
        rest.orders.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![ids[0]]
    );

    // Nobody else sees the order.
    other
        .register("eve@example.org", PASSWORD, None)
        .await
        .unwrap();
    assert_eq!(
        status(other.get_order(order.id).await),
        ErrorStatus::NotFound
    );
    assert_eq!(
        status(other.cancel_order(order.id).await),
        ErrorStatus::NotFound
    );
    assert!(other.list_orders(None, 10).await.unwrap().orders.is_empty());
    // Without signing in there is no checkout.
    let anonymous = connect(&running.server).await;
    assert_eq!(
        status(
            anonymous
                .checkout(checkout("pm_tok_visa"), new_idempotency_key())
                .await
        ),
        ErrorStatus::Unauthenticated
    );
    running.server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_whose_second_line_is_sold_out_reserves_nothing() {
    let running = start(|_| {});
    let admin = admin(&running.server).await;
    // SKUs on both shards, so that the reservation spans them.
    let mut skus = Vec::new();
    for n in 1..20 {
        skus.push(sku_of(&admin, n).await);
    }
    let hello = admin.hello().await.unwrap();
    assert_eq!(hello.shard_count, 2);
    let first = skus[0].clone();
    let second = skus[1..].iter().find(|s| **s != first).unwrap().clone();
    admin
        .admin_restock(&first, 10, RestockMode::Set)
        .await
        .unwrap();
    admin
        .admin_restock(&second, 0, RestockMode::Set)
        .await
        .unwrap();

    let client = customer(&running.server, "bo@example.org").await;
    client.add_to_cart(None, &first, 2).await.unwrap();
    client.add_to_cart(None, &second, 1).await.unwrap();
    let refused = client
        .checkout(checkout("pm_tok_visa"), new_idempotency_key())
        .await;
    assert_eq!(status(refused), ErrorStatus::InsufficientStock);
    let first_level = level(&admin, &first).await;
    assert_eq!(
        (first_level.available, first_level.reserved),
        (10, 0),
        "the first line is untouched"
    );
    assert_eq!(
        client.get_cart(None).await.unwrap().item_count,
        3,
        "the cart is kept"
    );
    assert!(
        client
            .list_orders(None, 10)
            .await
            .unwrap()
            .orders
            .is_empty(),
        "no partial order"
    );

    // With the sold-out line removed, the same cart goes through.
    client.remove_cart_line(None, &second).await.unwrap();
    let order = client
        .checkout(checkout("pm_tok_visa"), new_idempotency_key())
        .await
        .unwrap();
    assert_eq!(order.lines.len(), 1);
    running.server.shutdown().unwrap();
}

fn buy_now(lines: &[(&Sku, u32)]) -> Checkout {
    Checkout {
        lines: lines
            .iter()
            .map(|(sku, quantity)| CheckoutLine {
                sku: (*sku).clone(),
                quantity: *quantity,
            })
            .collect(),
        ..checkout("pm_tok_visa")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buying_now_orders_the_named_lines_and_leaves_the_cart_alone() {
    let running = start(|_| {});
    let admin = admin(&running.server).await;
    let mut skus = Vec::new();
    for n in 1..20 {
        skus.push(sku_of(&admin, n).await);
    }
    skus.dedup();
    let (kept, bought, sold_out) = (skus[0].clone(), skus[1].clone(), skus[2].clone());
    for (sku, units) in [(&kept, 10), (&bought, 10), (&sold_out, 0)] {
        admin
            .admin_restock(sku, units, RestockMode::Set)
            .await
            .unwrap();
    }
    let client = customer(&running.server, "cy@example.org").await;
    client.add_to_cart(None, &kept, 1).await.unwrap();

    let key = new_idempotency_key();
    let order = client
        .checkout(buy_now(&[(&bought, 3)]), key)
        .await
        .unwrap();
    assert_eq!(order.status, OrderStatus::PendingPayment);
    assert_eq!(order.lines.len(), 1);
    assert_eq!((&order.lines[0].sku, order.lines[0].quantity), (&bought, 3));
    assert_eq!(
        order.total.minor_units,
        3 * order.lines[0].unit_price.minor_units
    );
    let levels = (level(&admin, &bought).await, level(&admin, &kept).await);
    assert_eq!(levels.0.available, 7, "three units reserved");
    assert_eq!(levels.1.available, 10, "the cart's line is not ordered");
    let cart = client.get_cart(None).await.unwrap();
    assert_eq!(
        cart.lines
            .iter()
            .map(|l| (&l.sku, l.quantity))
            .collect::<Vec<_>>(),
        vec![(&kept, 1)],
        "the cart is left as it was"
    );

    // A retry with the key is the same order, and reserves nothing more;
    // other lines under the same key are refused.
    let again = client
        .checkout(buy_now(&[(&bought, 3)]), key)
        .await
        .unwrap();
    assert_eq!(again.id, order.id);
    assert_eq!(level(&admin, &bought).await.available, 7);
    let other = client.checkout(buy_now(&[(&bought, 2)]), key).await;
    assert_eq!(status(other), ErrorStatus::Conflict);

    // Bad lines are typed errors, and a short line (all or nothing, as
    // from the cart) reserves nothing.
    let unknown = Sku::new("NO-SUCH-SKU").unwrap();
    let refused: [(&[(&Sku, u32)], ErrorStatus); 5] = [
        (&[(&bought, 1), (&bought, 1)], ErrorStatus::BadRequest),
        (&[(&bought, 1), (&unknown, 1)], ErrorStatus::NotFound),
        (&[(&bought, 0)], ErrorStatus::BadRequest),
        (&[(&bought, 1000)], ErrorStatus::BadRequest),
        (
            &[(&bought, 1), (&sold_out, 1)],
            ErrorStatus::InsufficientStock,
        ),
    ];
    for (lines, expected) in refused {
        let result = client.checkout(buy_now(lines), new_idempotency_key()).await;
        assert_eq!(status(result), expected, "{lines:?}");
    }
    assert_eq!(level(&admin, &bought).await.available, 7);
    assert_eq!(client.list_orders(None, 10).await.unwrap().orders.len(), 1);
    running.server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpaid_orders_expire_cancelled_and_declined_ones_return_their_stock() {
    // Payment takes longer than the reservation lasts.
    let running = start(|config| {
        config.reservation_ttl = Duration::from_secs(1);
        config.payment_latency = Duration::from_millis(2500);
        config.purchase_limit = 3;
    });
    let admin = admin(&running.server).await;
    let sku = sku_of(&admin, 3).await;
    admin
        .admin_restock(&sku, 10, RestockMode::Set)
        .await
        .unwrap();
    let client = connect(&running.server).await;
    client
        .register("cy@example.org", PASSWORD, None)
        .await
        .unwrap();

    client.add_to_cart(None, &sku, 2).await.unwrap();
    let lapsing = client
        .checkout(checkout("pm_tok_visa"), new_idempotency_key())
        .await
        .unwrap();
    assert_eq!(level(&admin, &sku).await.reserved, 2);

    // The purchase limit counts the pending order.
    client.add_to_cart(None, &sku, 2).await.unwrap();
    let over = client
        .checkout(checkout("pm_tok_visa"), new_idempotency_key())
        .await;
    assert_eq!(status(over), ErrorStatus::LimitExceeded);
    client.update_cart_line(None, &sku, 1).await.unwrap();
    let cancelled = client
        .checkout(checkout("pm_tok_visa"), new_idempotency_key())
        .await
        .unwrap();
    let cancelled = client.cancel_order(cancelled.id).await.unwrap();
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(
        status(client.cancel_order(cancelled.id).await),
        ErrorStatus::Conflict
    );
    assert_eq!(
        level(&admin, &sku).await.reserved,
        2,
        "the cancelled unit is back"
    );

    assert_eq!(
        order_settles(&client, lapsing.id).await,
        OrderStatus::Expired
    );
    let after = level(&admin, &sku).await;
    assert_eq!(
        (after.on_hand, after.reserved, after.available),
        (10, 0, 10)
    );
    // A payment answering after the expiry is refunded: a domain test,
    // in simulated time (`domain::tests`).
    running.server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_payment_cancels_the_order_and_returns_the_stock() {
    let running = start(|_| {});
    let admin = admin(&running.server).await;
    let sku = sku_of(&admin, 4).await;
    admin
        .admin_restock(&sku, 5, RestockMode::Set)
        .await
        .unwrap();
    let client = connect(&running.server).await;
    client
        .register("di@example.org", PASSWORD, None)
        .await
        .unwrap();
    client.add_to_cart(None, &sku, 5).await.unwrap();
    let order = client
        .checkout(
            checkout("pm_decline_insufficient_funds"),
            new_idempotency_key(),
        )
        .await
        .unwrap();
    assert_eq!(
        order_settles(&client, order.id).await,
        OrderStatus::Cancelled
    );
    let payment = client.payment_status(order.id).await.unwrap();
    assert_eq!(payment.status, PaymentStatus::Failed);
    assert!(payment.last_error.is_some());
    assert_eq!(level(&admin, &sku).await.available, 5);
    running.server.shutdown().unwrap();
}

/// Buyers per flash sale, each on a connection of their own.
const BUYERS: usize = 100;
/// Checkouts each buyer attempts: 2,000 in all, for 100 units.
const ATTEMPTS: usize = 20;
const UNITS: i64 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flash_sale_sells_exactly_the_stock() {
    let running = start(|config| {
        config.purchase_limit = ATTEMPTS as i64;
        // Each buyer retries as fast as it can: the sale tests stock, not
        // the per-customer rates (tested on their own below).
        config.rate_checkouts = 0;
        config.rate_cart_writes = 0;
        // A hundred buyers, all from one address.
        config.new_connections_per_sec = 0;
    });
    let admin = admin(&running.server).await;
    let sku = sku_of(&admin, 5).await;
    admin
        .admin_restock(&sku, UNITS, RestockMode::Set)
        .await
        .unwrap();

    let mut buyers = Vec::new();
    for n in 0..BUYERS {
        let client = connect(&running.server).await;
        client
            .register(&format!("buyer{n}@example.org"), PASSWORD, None)
            .await
            .unwrap();
        buyers.push(client);
    }
    let sold = Arc::new(AtomicUsize::new(0));
    let sold_out = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for client in buyers {
        let (sku, sold, sold_out) = (sku.clone(), sold.clone(), sold_out.clone());
        tasks.push(tokio::spawn(async move {
            let mut orders = Vec::new();
            for _ in 0..ATTEMPTS {
                client.update_cart_line(None, &sku, 1).await.unwrap();
                let key: IdempotencyKey = new_idempotency_key();
                match client.checkout(checkout("pm_tok_visa"), key).await {
                    Ok(order) => {
                        sold.fetch_add(1, Ordering::Relaxed);
                        orders.push(order.id);
                    }
                    Err(error) => {
                        assert_eq!(
                            error.status(),
                            Some(ErrorStatus::InsufficientStock),
                            "{error}"
                        );
                        sold_out.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            (client, orders)
        }));
    }
    let mut stored = 0;
    for task in tasks {
        let (client, orders) = task.await.unwrap();
        for id in &orders {
            assert_eq!(order_settles(&client, *id).await, OrderStatus::Paid);
        }
        stored += client.list_orders(None, 100).await.unwrap().orders.len();
        assert_eq!(
            client.list_orders(None, 100).await.unwrap().orders.len(),
            orders.len()
        );
    }
    assert_eq!(
        sold.load(Ordering::Relaxed),
        UNITS as usize,
        "exactly the stock is sold"
    );
    assert_eq!(
        sold_out.load(Ordering::Relaxed),
        BUYERS * ATTEMPTS - UNITS as usize
    );
    assert_eq!(stored, UNITS as usize, "one stored order per unit sold");
    let end = level(&admin, &sku).await;
    assert_eq!((end.on_hand, end.reserved, end.available), (0, 0, 0));
    running.server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_retried_after_a_restart_returns_the_same_order_and_carts_survive() {
    let data = tempfile::tempdir().unwrap();
    let _keyspace = support::Keyspace::of(data.path());
    let config = config(data.path());
    let server = start_with_admin(&config);
    let admin_client = admin(&server).await;
    let sku = sku_of(&admin_client, 6).await;
    admin_client
        .admin_restock(&sku, 10, RestockMode::Set)
        .await
        .unwrap();
    let client = connect(&server).await;
    let grant = client
        .register("eo@example.org", PASSWORD, None)
        .await
        .unwrap();
    client.add_to_cart(None, &sku, 3).await.unwrap();
    let key = new_idempotency_key();
    let order = client.checkout(checkout("pm_tok_visa"), key).await.unwrap();
    assert_eq!(order_settles(&client, order.id).await, OrderStatus::Paid);
    // Carts are kept too: the user's and a guest's.
    client.add_to_cart(None, &sku, 3).await.unwrap();
    let phone = DeviceId::new("phone-restart").unwrap();
    let guest = connect(&server).await;
    guest
        .add_to_cart(Some(phone.clone()), &sku, 2)
        .await
        .unwrap();
    server.shutdown().unwrap();

    let server = Server::start(&config).unwrap();
    let guest = connect(&server).await;
    assert_eq!(
        guest.get_cart(Some(phone)).await.unwrap().item_count,
        2,
        "the guest cart survived"
    );
    let client = connect(&server).await;
    client.authenticate(&grant.access_token).await.unwrap();
    assert_eq!(
        client.get_cart(None).await.unwrap().item_count,
        3,
        "the user's cart survived"
    );
    let again = client.checkout(checkout("pm_tok_visa"), key).await.unwrap();
    assert_eq!(again.id, order.id, "the key still names the order");
    assert_eq!(again.status, OrderStatus::Paid);
    let admin_client = admin(&server).await;
    let level = level(&admin_client, &sku).await;
    assert_eq!(
        (level.on_hand, level.reserved),
        (7, 0),
        "sold once, across the restart"
    );
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merged_guest_cart_is_capped_by_stock_and_the_purchase_limit() {
    let running = start(|config| config.purchase_limit = 4);
    let admin = admin(&running.server).await;
    let scarce = sku_of(&admin, 7).await;
    let limited = sku_of(&admin, 8).await;
    admin
        .admin_restock(&scarce, 2, RestockMode::Set)
        .await
        .unwrap();
    admin
        .admin_restock(&limited, 100, RestockMode::Set)
        .await
        .unwrap();
    let client = connect(&running.server).await;
    let tablet = DeviceId::new("tablet-19").unwrap();
    client
        .add_to_cart(Some(tablet.clone()), &scarce, 5)
        .await
        .unwrap();
    client
        .add_to_cart(Some(tablet.clone()), &limited, 9)
        .await
        .unwrap();
    client
        .register("fu@example.org", PASSWORD, None)
        .await
        .unwrap();
    let merged = client.merge_cart(tablet.clone()).await.unwrap();
    let units = |sku: &Sku| {
        merged
            .lines
            .iter()
            .find(|l| &l.sku == sku)
            .unwrap()
            .quantity
    };
    assert_eq!(units(&scarce), 2, "no more than in stock");
    assert_eq!(units(&limited), 4, "no more than the customer may buy");
    assert_eq!(
        client.get_cart(Some(tablet)).await.unwrap().item_count,
        6,
        "signed in, the user's cart"
    );
    running.server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_and_addresses_belong_to_their_user() {
    let running = start(|_| {});
    let ada = connect(&running.server).await;
    let grant = ada
        .register("Gi@Example.org", PASSWORD, Some("Gi"))
        .await
        .unwrap();
    let profile = ada.profile().await.unwrap();
    assert_eq!(
        (profile.user_id, profile.email.as_str()),
        (grant.user_id, "gi@example.org")
    );
    let renamed = ada.update_profile(Some("Gi Tanaka".into())).await.unwrap();
    assert_eq!(renamed.name.as_deref(), Some("Gi Tanaka"));

    let address = |city: &str, is_default: bool| souk_client::api::Address {
        city: Some(city.into()),
        country: Some("JP".into()),
        is_default,
        ..Default::default()
    };
    let home = ada.upsert_address(address("Kyoto", true)).await.unwrap();
    assert_ne!(home.id.0, 0, "a new address gets an id");
    let work = ada.upsert_address(address("Osaka", true)).await.unwrap();
    let listed = ada.list_addresses().await.unwrap();
    assert_eq!(listed.len(), 2);
    let defaults: Vec<_> = listed
        .iter()
        .filter(|a| a.is_default)
        .map(|a| a.id)
        .collect();
    assert_eq!(defaults, vec![work.id], "one default at a time");

    let eve = connect(&running.server).await;
    eve.register("eve2@example.org", PASSWORD, None)
        .await
        .unwrap();
    assert!(eve.list_addresses().await.unwrap().is_empty());
    assert_eq!(
        status(eve.delete_address(home.id).await),
        ErrorStatus::NotFound,
        "not hers"
    );
    let mut stolen = home.clone();
    stolen.city = Some("Elsewhere".into());
    assert_eq!(
        status(eve.upsert_address(stolen).await),
        ErrorStatus::NotFound
    );
    assert_eq!(ada.list_addresses().await.unwrap().len(), 2, "untouched");

    ada.delete_address(home.id).await.unwrap();
    assert_eq!(
        status(ada.delete_address(home.id).await),
        ErrorStatus::NotFound
    );
    for n in 1..souk_wire::limits::ADDRESSES_MAX {
        ada.upsert_address(address(&format!("Town {n}"), false))
            .await
            .unwrap();
    }
    assert_eq!(
        status(ada.upsert_address(address("One too many", false)).await),
        ErrorStatus::LimitExceeded
    );
    let anonymous = connect(&running.server).await;
    assert_eq!(
        status(anonymous.profile().await),
        ErrorStatus::Unauthenticated
    );
    running.server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_rotate_a_reused_one_revokes_its_family_and_logout_revokes() {
    let running = start(|_| {});
    let client = connect(&running.server).await;
    let first = client
        .register("hu@example.org", PASSWORD, None)
        .await
        .unwrap();
    let second = client.refresh(&first.refresh_token).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token, "rotated");
    assert_eq!(second.user_id, first.user_id);
    // The first token, used again: someone copied it. The whole family goes.
    assert_eq!(
        status(client.refresh(&first.refresh_token).await),
        ErrorStatus::Unauthenticated
    );
    assert_eq!(
        status(client.refresh(&second.refresh_token).await),
        ErrorStatus::Unauthenticated,
        "the rotated-to token is revoked with its family"
    );
    assert_eq!(
        status(client.refresh("not-a-token").await),
        ErrorStatus::Unauthenticated
    );

    let session = client
        .login("hu@example.org", PASSWORD, None)
        .await
        .unwrap();
    client.logout().await.unwrap();
    assert_eq!(
        status(client.list_orders(None, 10).await),
        ErrorStatus::Unauthenticated,
        "signed out"
    );
    assert_eq!(
        status(client.refresh(&session.refresh_token).await),
        ErrorStatus::Unauthenticated,
        "logout revoked the session's refresh token"
    );
    running.server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guessing_is_limited_per_account_without_revealing_accounts() {
    let running = start(|_| {});
    let client = connect(&running.server).await;
    client
        .register("iv@example.org", PASSWORD, None)
        .await
        .unwrap();
    let failures = souk_server::limits::LOGIN_FAILURES_PER_ACCOUNT;
    for email in ["iv@example.org", "nobody@example.org"] {
        for _ in 0..failures {
            let guess = client.login(email, "wrong guess 123", None).await;
            assert_eq!(status(guess), ErrorStatus::Unauthenticated);
        }
        let limited = client
            .login(email, "wrong guess 123", None)
            .await
            .unwrap_err();
        assert_eq!(
            limited.status(),
            Some(ErrorStatus::LimitExceeded),
            "{email}"
        );
        let souk_client::ClientError::Api(error) = limited else {
            panic!("an API error");
        };
        assert!(error.retry_after_ms > 0, "with a retry hint");
    }
    // Even the right password waits out the limit: the guesser cannot tell.
    assert_eq!(
        status(client.login("iv@example.org", PASSWORD, None).await),
        ErrorStatus::LimitExceeded
    );
    // Another account from the same address is not locked out.
    let other = connect(&running.server).await;
    other
        .register("jo@example.org", PASSWORD, None)
        .await
        .unwrap();
    other.login("jo@example.org", PASSWORD, None).await.unwrap();
    running.server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_checking_out_too_fast_is_told_when_to_retry() {
    let running = start(|config| config.rate_checkouts = 1);
    let admin = admin(&running.server).await;
    let sku = sku_of(&admin, 9).await;
    admin
        .admin_restock(&sku, 100, RestockMode::Set)
        .await
        .unwrap();
    let client = connect(&running.server).await;
    client
        .register("ka@example.org", PASSWORD, None)
        .await
        .unwrap();
    // The burst (5 for a rate of 1 per second) passes, the next does not.
    let mut outcomes = Vec::new();
    for _ in 0..6 {
        client.update_cart_line(None, &sku, 1).await.unwrap();
        outcomes.push(
            client
                .checkout(checkout("pm_tok_visa"), new_idempotency_key())
                .await,
        );
    }
    assert!(outcomes[..5].iter().all(|o| o.is_ok()), "{outcomes:?}");
    let Err(ClientError::Api(limited)) = &outcomes[5] else {
        panic!("the sixth is limited: {:?}", outcomes[5]);
    };
    assert_eq!(limited.status, ErrorStatus::LimitExceeded);
    assert!((1..=1000).contains(&limited.retry_after_ms), "{limited}");
    tokio::time::sleep(Duration::from_millis(u64::from(limited.retry_after_ms))).await;
    client
        .checkout(checkout("pm_tok_visa"), new_idempotency_key())
        .await
        .unwrap();
    let placed = client.list_orders(None, 100).await.unwrap().orders.len();
    assert_eq!(
        placed, 6,
        "five in the burst, one after waiting, none for the refused one"
    );
    running.server.shutdown().unwrap();
}

/// The whole session life through the SDK, with the server's clock driven
/// by the test: a guest cart joins the account at login, and when the
/// access token expires the SDK renews it on the same connection by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_renews_itself_through_the_sdk() {
    let running = start(|_| {});
    let admin = admin(&running.server).await;
    let lamp = sku_of(&admin, 3).await;
    admin
        .admin_restock(&lamp, 20, RestockMode::Set)
        .await
        .unwrap();

    let client = connect(&running.server).await;
    client
        .register("lin@example.org", PASSWORD, Some("Lin"))
        .await
        .unwrap();
    client.logout().await.unwrap();
    let tablet = DeviceId::new("tablet-01").unwrap();
    client
        .add_to_cart(Some(tablet.clone()), &lamp, 2)
        .await
        .unwrap();
    let grant = client
        .login("lin@example.org", PASSWORD, Some(tablet))
        .await
        .unwrap();
    assert_eq!(client.get_cart(None).await.unwrap().item_count, 2, "merged");

    // Another connection bound with the access token alone (no refresh
    // token to renew with) sees the expiry as it is.
    let bare = connect(&running.server).await;
    bare.authenticate(&grant.access_token).await.unwrap();
    let mut updates = client.session_updates();
    updates.borrow_and_update();

    running.server.clock().advance(Duration::from_secs(16 * 60));
    assert_eq!(
        status(bare.get_cart(None).await),
        ErrorStatus::Unauthenticated,
        "an expired access token is refused until the client refreshes"
    );
    let order = client
        .checkout(checkout("pm_tok_visa"), new_idempotency_key())
        .await
        .expect("the SDK renews the session and retries the checkout");
    assert_eq!(order.user_id, grant.user_id);
    assert!(updates.has_changed().unwrap(), "the renewal was published");
    let renewed = updates.borrow_and_update().clone().unwrap();
    assert_ne!(renewed.refresh_token, grant.refresh_token, "rotated");
    assert!(renewed.access_expires_at > grant.access_expires_at);
    assert_eq!(
        status(bare.refresh(&grant.refresh_token).await),
        ErrorStatus::Unauthenticated,
        "the rotated-away refresh token is spent"
    );
    // That reuse looked like theft: the family is revoked, so the next
    // renewal fails and the SDK stops presenting the refresh token.
    running.server.clock().advance(Duration::from_secs(16 * 60));
    assert_eq!(
        status(client.list_orders(None, 10).await),
        ErrorStatus::Unauthenticated
    );
    assert!(client.session_updates().borrow().is_none(), "forgotten");

    // A fresh sign-in, then past the refresh token's own lifetime.
    client
        .login("lin@example.org", PASSWORD, None)
        .await
        .unwrap();
    assert_eq!(client.list_orders(None, 10).await.unwrap().orders.len(), 1);
    running
        .server
        .clock()
        .advance(Duration::from_secs(31 * 24 * 3600));
    assert_eq!(
        status(client.list_orders(None, 10).await),
        ErrorStatus::Unauthenticated,
        "an expired refresh token cannot renew"
    );
    running.server.shutdown().unwrap();
}

/// An app restarted with a saved session resumes it on a new connection,
/// renewing it first when the access token has expired meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_session_resumes_on_a_new_connection() {
    let running = start(|_| {});
    let first = connect(&running.server).await;
    let saved = first
        .register("mo@example.org", PASSWORD, None)
        .await
        .unwrap();
    first.close();

    let later = connect(&running.server).await;
    let identity = later.resume(saved.clone()).await.unwrap();
    assert_eq!(identity.user_id, saved.user_id);
    assert!(later.list_orders(None, 5).await.unwrap().orders.is_empty());
    later.close();

    running.server.clock().advance(Duration::from_secs(20 * 60));
    let next_day = connect(&running.server).await;
    let identity = next_day.resume(saved.clone()).await.unwrap();
    assert_eq!(identity.user_id, saved.user_id);
    let current = next_day.session_updates().borrow().clone().unwrap();
    assert_ne!(
        current.refresh_token, saved.refresh_token,
        "the expired session was renewed, rotating the refresh token"
    );
    assert!(next_day.profile().await.is_ok());
    running.server.shutdown().unwrap();
}

/// Orders older than the replay window are folded into the stock snapshot;
/// a restart then replays only the later ones, and the stock levels, the
/// order history and new checkouts are what they would have been.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_orders_fold_into_the_stock_snapshot_and_a_restart_keeps_the_stock() {
    let data = tempfile::tempdir().unwrap();
    let _keyspace = support::Keyspace::of(data.path());
    let mut config = config(data.path());
    // The last checkout buys what is left, more than one customer may.
    config.purchase_limit = 0;
    let server = start_with_admin(&config);
    let admin_client = admin(&server).await;
    let sku = sku_of(&admin_client, 7).await;
    admin_client
        .admin_restock(&sku, 20, RestockMode::Set)
        .await
        .unwrap();
    let client = connect(&server).await;
    client
        .register("snap@example.org", PASSWORD, None)
        .await
        .unwrap();
    for token in [
        "pm_tok_visa",
        "pm_decline_insufficient_funds",
        "pm_tok_visa",
    ] {
        client.add_to_cart(None, &sku, 2).await.unwrap();
        let order = client
            .checkout(checkout(token), new_idempotency_key())
            .await
            .unwrap();
        order_settles(&client, order.id).await;
    }
    assert_eq!(
        server.fold_stock_snapshot().unwrap().folded,
        0,
        "nothing leaves the replay window yet"
    );

    let day = Duration::from_secs(25 * 3600);
    server.clock().advance(day);
    let progress = server.fold_stock_snapshot().unwrap();
    assert_eq!(progress.folded, 3, "two paid orders and a cancelled one");
    // A new order, above the watermark, after the fold.
    client
        .login("snap@example.org", PASSWORD, None)
        .await
        .unwrap();
    client.add_to_cart(None, &sku, 1).await.unwrap();
    let late = client
        .checkout(checkout("pm_tok_visa"), new_idempotency_key())
        .await
        .unwrap();
    assert!(late.id > progress.watermark);
    assert_eq!(order_settles(&client, late.id).await, OrderStatus::Paid);
    let admin_client = admin(&server).await;
    let before = level(&admin_client, &sku).await;
    assert_eq!((before.on_hand, before.reserved), (15, 0));
    server.shutdown().unwrap();

    let server = Server::start(&config).unwrap();
    server.clock().advance(day);
    let admin_client = admin(&server).await;
    let after = level(&admin_client, &sku).await;
    assert_eq!(
        (after.on_hand, after.reserved),
        (15, 0),
        "4 sold before the snapshot's watermark and 1 after it"
    );
    let client = connect(&server).await;
    client
        .login("snap@example.org", PASSWORD, None)
        .await
        .unwrap();
    let history = client.list_orders(None, 10).await.unwrap();
    assert_eq!(
        history.orders.len(),
        4,
        "folded orders are still there to read"
    );
    client.add_to_cart(None, &sku, 15).await.unwrap();
    client
        .checkout(checkout("pm_tok_visa"), new_idempotency_key())
        .await
        .unwrap();
    client.add_to_cart(None, &sku, 1).await.unwrap();
    assert_eq!(
        status(
            client
                .checkout(checkout("pm_tok_visa"), new_idempotency_key())
                .await
        ),
        ErrorStatus::InsufficientStock,
        "the rebuilt counters sell exactly what is left"
    );
    server.shutdown().unwrap();
}

/// The status a product has on a browse page.
async fn listed(client: &Client, product: &souk_client::api::ProductId) -> StockStatus {
    let query = BrowseCategory {
        limit: 100,
        ..BrowseCategory::default()
    };
    let page = client.browse(query).await.unwrap();
    page.products
        .iter()
        .find(|p| &p.id == product)
        .expect("every demo product fits one page")
        .stock_status
}

/// Polls a browse page until the product shows `expected`, within 3 s.
async fn becomes_listed(
    client: &Client,
    product: &souk_client::api::ProductId,
    expected: StockStatus,
) {
    for _ in 0..120 {
        if listed(client, product).await == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{product} never listed as {expected:?}");
}

/// Browse pages show each product in stock, low or sold out, from its SKU
/// owners' counters; a change reaches every shard's cached pages though
/// the cache's TTL is ten minutes here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browse_pages_show_a_product_running_low_and_selling_out() {
    let running = start(|c| c.catalog_cache_ttl = Duration::from_secs(600));
    let server = &running.server;
    let admin_client = admin(server).await;
    let id = demo::product_id(11);
    let product = admin_client.get_product(&id).await.unwrap();
    let client = connect(server).await;
    assert_eq!(listed(&client, &id).await, StockStatus::InStock);
    for (n, variant) in product.variants.iter().enumerate() {
        let units = if n == 0 { 2 } else { 0 };
        admin_client
            .admin_restock(&variant.sku, units, RestockMode::Set)
            .await
            .unwrap();
    }
    becomes_listed(&client, &id, StockStatus::LowStock).await;
    client
        .register("lister@example.org", PASSWORD, None)
        .await
        .unwrap();
    client
        .add_to_cart(None, &product.variants[0].sku, 2)
        .await
        .unwrap();
    let order = client
        .checkout(checkout("pm_tok_visa"), new_idempotency_key())
        .await
        .unwrap();
    becomes_listed(&client, &id, StockStatus::OutOfStock).await;
    assert_eq!(order_settles(&client, order.id).await, OrderStatus::Paid);
    admin_client
        .admin_restock(&product.variants.last().unwrap().sku, 50, RestockMode::Set)
        .await
        .unwrap();
    becomes_listed(&client, &id, StockStatus::InStock).await;
}
