//! Every operation driven through the real handlers in one thread, by the
//! simulator's `Shop`: no sockets, no runtime, simulated time.

use std::time::Duration;

use souk_wire::api::{
    AdminRestock, CartLineChange, Checkout, DeviceId, Hello, IdempotencyKey, Login, OrderStatus,
    PaymentStatus, Register, RequestBody, RestockMode,
};

use super::*;
use crate::sim::Shop;
use crate::sim::gateway::GatewayMode;

fn hello(version: u16) -> RequestBody {
    RequestBody::Hello(Hello {
        protocol_version: version,
        client_name: None,
        client_version: None,
    })
}

fn first_sku(shop: &Shop) -> Sku {
    shop.state(0, |s| s.catalog.skus().next().unwrap().clone())
}

fn product_of(shop: &Shop, sku: &Sku) -> ProductId {
    shop.state(0, |s| s.catalog.sku_variant(sku).unwrap().0.id.clone())
}

fn register(shop: &Shop, on: &crate::sim::Connection, email: &str) -> souk_wire::api::SessionGrant {
    let body = RequestBody::Register(Register {
        email: email.into(),
        password: "correct horse battery".into(),
        name: None,
    });
    match shop.send(on, body) {
        Ok(ResponseBody::SessionGrant(grant)) => grant,
        other => panic!("register: {other:?}"),
    }
}

fn add(shop: &Shop, on: &crate::sim::Connection, sku: &Sku, units: u32, device: Option<DeviceId>) {
    let change = CartLineChange {
        device_id: device,
        sku: sku.clone(),
        quantity: units,
    };
    shop.send(on, RequestBody::AddToCart(change))
        .expect("added");
}

fn checkout() -> RequestBody {
    RequestBody::Checkout(Checkout {
        device_id: None,
        payment_method_token: "pm_card".into(),
        shipping_address_id: None,
        expected_total: None,
        lines: Vec::new(),
    })
}

fn order_of(response: Response) -> Box<Order> {
    match response {
        Ok(ResponseBody::OrderView(order)) => order,
        other => panic!("expected an order: {other:?}"),
    }
}

fn available(shop: &Shop, sku: &Sku) -> i64 {
    let owner = shop.state(0, |s| s.placement.sku_owner(sku));
    shop.state(owner.index(), |s| s.inventory.level(sku).available)
}

#[test]
fn hello_reports_the_shard_and_refuses_unknown_versions() {
    let shop = Shop::new(2, 5);
    let on = shop.connect(1);
    let Ok(ResponseBody::HelloReply(reply)) = shop.send(&on, hello(PROTOCOL_VERSION)) else {
        panic!("hello replies");
    };
    assert_eq!(
        (reply.shard, reply.shard_count, reply.server_time),
        (1, 2, shop.now())
    );
    let refused = shop.send(&on, hello(PROTOCOL_VERSION + 1)).unwrap_err();
    assert_eq!(refused.status, ErrorStatus::BadRequest);
}

#[test]
fn product_detail_shows_live_stock_from_the_owners() {
    let shop = Shop::new(3, 5);
    let sku = first_sku(&shop);
    let product_id = product_of(&shop, &sku);
    let Ok(ResponseBody::ProductDetail(product)) =
        shop.send(&shop.connect(2), RequestBody::GetProduct { product_id })
    else {
        panic!("product detail");
    };
    let variant = product.variants.iter().find(|v| v.sku == sku).unwrap();
    assert_eq!(variant.available, 5);
    let missing = RequestBody::GetProduct {
        product_id: ProductId::new("no-such-product").unwrap(),
    };
    assert_eq!(
        shop.send(&shop.connect(0), missing).unwrap_err().status,
        ErrorStatus::NotFound
    );
}

#[test]
fn operations_of_later_versions_are_not_offered_rather_than_unavailable() {
    let shop = Shop::new(1, 5);
    let watch = RequestBody::WatchProduct {
        product_id: ProductId::new("p").unwrap(),
    };
    let error = shop.send(&shop.connect(0), watch).unwrap_err();
    assert_eq!(error.status, ErrorStatus::NotOffered);
    assert!(!error.status.is_retryable());
    assert!(error.message.contains("watch_product"), "{error}");
}

#[test]
fn restock_needs_an_admin_and_is_undone_when_it_cannot_be_stored() {
    let shop = Shop::new(2, 5);
    let sku = first_sku(&shop);
    let restock = || {
        RequestBody::AdminRestock(AdminRestock {
            sku: sku.clone(),
            quantity: 3,
            mode: RestockMode::Add,
        })
    };
    let customer = shop.connect(0);
    register(&shop, &customer, "c@example.com");
    assert_eq!(
        shop.send(&customer, restock()).unwrap_err().status,
        ErrorStatus::Forbidden
    );
    let admin = shop.connect(1);
    let token = shop.admin_token();
    shop.send(
        &admin,
        RequestBody::Authenticate {
            access_token: token,
        },
    )
    .unwrap();
    shop.fail_storage(10_000);
    let failed = shop.send(&admin, restock()).unwrap_err();
    assert_eq!(failed.status, ErrorStatus::Unavailable);
    assert_eq!(available(&shop, &sku), 5, "the failed restock is undone");
    shop.fail_storage(0);
    let Ok(ResponseBody::StockLevel(level)) = shop.send(&admin, restock()) else {
        panic!("restocked");
    };
    assert_eq!((level.on_hand, available(&shop, &sku)), (8, 8));
}

#[test]
fn checkout_reserves_pays_and_a_retry_under_its_key_returns_the_same_order() {
    let shop = Shop::new(3, 5);
    let sku = first_sku(&shop);
    let on = shop.connect(0);
    register(&shop, &on, "buyer@example.com");
    add(&shop, &on, &sku, 2, None);
    let key = Some(IdempotencyKey(77));
    let order = order_of(shop.send_with_key(&on, checkout(), key));
    assert_eq!(order.status, OrderStatus::PendingPayment);
    assert_eq!(available(&shop, &sku), 3, "two units reserved");
    shop.wait(Duration::from_secs(1));
    let stored = shop.store().all_orders();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].status, OrderStatus::Paid);
    assert_eq!(shop.gateway().captured(order.id), Some(order.total));
    let again = order_of(shop.send_with_key(&on, checkout(), key));
    assert_eq!(again.id, order.id, "the retry finds the first order");
    assert_eq!(
        shop.store().all_orders().len(),
        1,
        "and places no second one"
    );
    assert_eq!(available(&shop, &sku), 3);
}

#[test]
fn a_declined_payment_cancels_the_order_and_releases_its_stock() {
    let shop = Shop::new(2, 5);
    shop.gateway().set_mode(GatewayMode::Decline);
    let sku = first_sku(&shop);
    let on = shop.connect(1);
    register(&shop, &on, "declined@example.com");
    add(&shop, &on, &sku, 1, None);
    let order = order_of(shop.send(&on, checkout()));
    shop.wait(Duration::from_secs(1));
    let Ok(ResponseBody::PaymentView(payment)) =
        shop.send(&on, RequestBody::GetPaymentStatus { order_id: order.id })
    else {
        panic!("payment view");
    };
    assert_eq!(payment.status, PaymentStatus::Failed);
    assert_eq!(shop.store().all_orders()[0].status, OrderStatus::Cancelled);
    assert_eq!(available(&shop, &sku), 5);
}

/// A shop of 5 units with an order of 2 whose payment never answers.
fn an_unanswered_order(email: &str) -> (Shop, Sku) {
    let shop = Shop::new(2, 5);
    shop.gateway().set_mode(GatewayMode::TimeOutAfterCharging);
    let sku = first_sku(&shop);
    let on = shop.connect(0);
    register(&shop, &on, email);
    add(&shop, &on, &sku, 2, None);
    order_of(shop.send(&on, checkout()));
    assert_eq!(available(&shop, &sku), 3);
    (shop, sku)
}

#[test]
fn an_order_whose_payment_never_answers_expires_and_releases_its_stock() {
    let (shop, sku) = an_unanswered_order("slow@example.com");
    shop.wait(Duration::from_secs(10));
    assert_eq!(
        shop.store().all_orders()[0].status,
        OrderStatus::PendingPayment
    );
    // Past the reservation (30 s in the shop) and the next expiry sweep.
    shop.wait(Duration::from_secs(60));
    assert_eq!(shop.store().all_orders()[0].status, OrderStatus::Expired);
    assert_eq!(available(&shop, &sku), 5);
}

#[test]
fn an_order_cancelled_through_another_node_frees_its_units_here_by_its_deadline() {
    let (shop, sku) = an_unanswered_order("elsewhere@example.com");
    // Another node sharing the store cancels it; this one is not told.
    let cancelled = souk_storage::model::OrderRecord {
        status: OrderStatus::Cancelled,
        ..shop.store().all_orders()[0].clone()
    };
    shop.store()
        .update_order_elsewhere(&cancelled, OrderStatus::PendingPayment)
        .unwrap();
    // Past the reservation (30 s in the shop) and the next expiry sweep.
    shop.wait(Duration::from_secs(60));
    assert_eq!(shop.store().all_orders()[0].status, OrderStatus::Cancelled);
    assert_eq!(available(&shop, &sku), 5);
}

#[test]
fn a_payment_that_answers_after_the_order_expired_is_refunded() {
    let shop = Shop::new(2, 5);
    // The gateway answers after the reservation (30 s) has lapsed.
    shop.gateway().set_latency(Duration::from_secs(90));
    let sku = first_sku(&shop);
    let on = shop.connect(0);
    register(&shop, &on, "late@example.com");
    add(&shop, &on, &sku, 2, None);
    let order = order_of(shop.send(&on, checkout()));
    shop.wait(Duration::from_secs(60));
    assert_eq!(shop.store().all_orders()[0].status, OrderStatus::Expired);
    assert_eq!(available(&shop, &sku), 5);
    shop.wait(Duration::from_secs(60));
    assert_eq!(shop.store().all_orders()[0].status, OrderStatus::Expired);
    assert_eq!(available(&shop, &sku), 5, "the late charge sells nothing");
    let payment = &shop.store().all_payments()[0];
    assert_eq!(payment.status, PaymentStatus::Refunded);
    assert_eq!(payment.refunded, order.total);
}

#[test]
fn cancelling_a_pending_order_releases_it_and_a_paid_one_stays_paid() {
    let shop = Shop::new(2, 5);
    shop.gateway().set_mode(GatewayMode::TimeOutAfterCharging);
    let sku = first_sku(&shop);
    let on = shop.connect(0);
    register(&shop, &on, "cancel@example.com");
    add(&shop, &on, &sku, 1, None);
    let order = order_of(shop.send(&on, checkout()));
    let cancelled = order_of(shop.send(&on, RequestBody::CancelOrder { order_id: order.id }));
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(available(&shop, &sku), 5);
    shop.gateway().set_mode(GatewayMode::Approve);
    add(&shop, &on, &sku, 1, None);
    let paid = order_of(shop.send(&on, checkout()));
    shop.wait(Duration::from_secs(1));
    let refused = shop
        .send(&on, RequestBody::CancelOrder { order_id: paid.id })
        .unwrap_err();
    assert_eq!(refused.status, ErrorStatus::Conflict);
}

#[test]
fn signing_in_merges_the_guest_cart_into_the_users() {
    let shop = Shop::new(3, 5);
    let sku = first_sku(&shop);
    let device = DeviceId::new("phone-1").unwrap();
    let first = shop.connect(0);
    register(&shop, &first, "merge@example.com");
    let guest = shop.connect(2);
    add(&shop, &guest, &sku, 2, Some(device.clone()));
    let login = RequestBody::Login(Login {
        email: "merge@example.com".into(),
        password: "correct horse battery".into(),
        device_id: Some(device.clone()),
    });
    shop.send(&guest, login).expect("signed in");
    let Ok(ResponseBody::CartView(cart)) =
        shop.send(&guest, RequestBody::GetCart { device_id: None })
    else {
        panic!("cart view");
    };
    assert_eq!(cart.lines.iter().map(|l| l.quantity).sum::<u32>(), 2);
    let fresh = shop.connect(1);
    let Ok(ResponseBody::CartView(guest_cart)) = shop.send(
        &fresh,
        RequestBody::GetCart {
            device_id: Some(device),
        },
    ) else {
        panic!("guest cart view");
    };
    assert!(guest_cart.lines.is_empty(), "the guest cart moved");
}

#[test]
fn login_refuses_a_wrong_password_and_refresh_rotates_once() {
    let shop = Shop::new(2, 5);
    let on = shop.connect(0);
    let grant = register(&shop, &on, "rotate@example.com");
    let wrong = RequestBody::Login(Login {
        email: "rotate@example.com".into(),
        password: "not the password".into(),
        device_id: None,
    });
    assert_eq!(
        shop.send(&on, wrong).unwrap_err().status,
        ErrorStatus::Unauthenticated
    );
    let refresh = |token: &str| RequestBody::Refresh {
        refresh_token: token.to_owned(),
    };
    let Ok(ResponseBody::SessionGrant(rotated)) = shop.send(&on, refresh(&grant.refresh_token))
    else {
        panic!("refreshed");
    };
    assert_ne!(rotated.refresh_token, grant.refresh_token);
    let reused = shop.send(&on, refresh(&grant.refresh_token)).unwrap_err();
    assert_eq!(reused.status, ErrorStatus::Unauthenticated);
    let revoked = shop.send(&on, refresh(&rotated.refresh_token)).unwrap_err();
    assert_eq!(
        revoked.status,
        ErrorStatus::Unauthenticated,
        "reuse revokes the family"
    );
}

#[test]
fn an_acknowledged_order_survives_a_restart_and_its_key_still_finds_it() {
    let shop = Shop::new(2, 5);
    shop.gateway().set_mode(GatewayMode::TimeOutAfterCharging);
    let sku = first_sku(&shop);
    let on = shop.connect(0);
    let grant = register(&shop, &on, "crash@example.com");
    add(&shop, &on, &sku, 1, None);
    let key = Some(IdempotencyKey(5));
    let order = order_of(shop.send_with_key(&on, checkout(), key));
    shop.restart();
    assert_eq!(
        available(&shop, &sku),
        4,
        "the rebuild holds the pending order's unit"
    );
    let on = shop.connect(1);
    shop.send(
        &on,
        RequestBody::Authenticate {
            access_token: grant.access_token,
        },
    )
    .unwrap();
    assert_eq!(
        order_of(shop.send_with_key(&on, checkout(), key)).id,
        order.id
    );
}

#[test]
#[should_panic(expected = "does not own it")]
fn a_call_for_state_a_shard_does_not_own_is_a_bug() {
    let shop = Shop::new(2, 5);
    let sku = shop.state(0, |s| {
        s.catalog
            .skus()
            .find(|sku| s.placement.sku_owner(sku) == ShardId(1))
            .cloned()
            .expect("some SKU is owned by shard 1")
    });
    shop.state(0, |s| stock_levels(s, &[sku]));
}
