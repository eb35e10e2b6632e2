//! One conformance suite for every storage backend: the embedded store on
//! both engines always, and ScyllaDB when `SOUK_SCYLLA_NODES` names a live
//! cluster (`host:port,...`; `storage/scylla/cluster.sh start` runs one, on
//! Apache Cassandra 5.0, and `.ci/run` does). Without one the ScyllaDB half
//! skips, printing why, except under `SOUK_REQUIRE_ALL_TESTS`, where it
//! fails unless `SOUK_SKIP_CQL=1` says that no cluster is to be had. Its
//! keyspaces use `SOUK_SCYLLA_REPLICATION_FACTOR` (1 by default, for the
//! one-node test cluster), and each is dropped after its test.

use std::collections::HashSet;
use std::sync::Arc;

use souk_storage::embedded::{EmbeddedStore, EngineKind};
use souk_storage::model::{
    CartRecord, OrderRecord, PaymentRecord, RefreshTokenRecord, StockRecord, UserRecord,
};
use souk_storage::store::TokenStore;
use souk_storage::{StorageError, Store, demo};
use souk_wire::api::{
    Address, AddressId, Currency, IdempotencyKey, Money, OrderId, OrderLine, OrderStatus,
    PaymentStatus, ProductId, Role, Sku, UnixMillis, UserId,
};

/// A store under test, with whatever keeps it alive.
struct Fixture {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    /// Distinguishes this run's ids on a shared cluster.
    salt: u64,
    /// The CQL store, whose keyspace is dropped after its test.
    scylla: Option<Arc<souk_storage::scylla::ScyllaStore>>,
}

impl Fixture {
    /// Runs `check` on this store, then drops a keyspace made for it,
    /// whether the check passed or not.
    async fn run<C, F>(self, check: C)
    where
        C: FnOnce(Arc<Fixture>) -> F,
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let fixture = Arc::new(self);
        let outcome = tokio::spawn(check(fixture.clone())).await;
        if let Some(store) = &fixture.scylla {
            store.drop_keyspace().await.unwrap();
        }
        if let Err(failed) = outcome {
            std::panic::resume_unwind(failed.into_panic());
        }
    }
}

async fn embedded(kind: EngineKind) -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), kind).unwrap();
    Some(Fixture {
        store: Arc::new(store),
        _dir: Some(dir),
        salt: 0,
        scylla: None,
    })
}

async fn scylla() -> Option<Fixture> {
    let Ok(nodes) = std::env::var("SOUK_SCYLLA_NODES") else {
        souk_storage::testing::skip_or_fail_unless(
            "SOUK_SKIP_CQL",
            "SOUK_SCYLLA_NODES is not set (no ScyllaDB cluster to test against)",
        );
        return None;
    };
    let salt: u64 = rand_salt();
    let keyspace = format!("souk_conformance_{salt}");
    let mut config = souk_storage::scylla::ScyllaConfig::new(
        nodes.split(',').map(str::to_owned).collect(),
        keyspace,
    );
    // The test cluster (storage/scylla/cluster.sh) starts with one node.
    config.replication_factor = std::env::var("SOUK_SCYLLA_REPLICATION_FACTOR")
        .ok()
        .and_then(|rf| rf.parse().ok())
        .unwrap_or(1);
    let store = Arc::new(
        souk_storage::scylla::ScyllaStore::connect(&config)
            .await
            .unwrap(),
    );
    Some(Fixture {
        store: store.clone(),
        _dir: None,
        salt: salt % 1_000_000,
        scylla: Some(store),
    })
}

fn rand_salt() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn usd(minor_units: i64) -> Money {
    Money::new(minor_units, Currency::USD)
}

fn order(id: u64, user: u64, shard: u16) -> OrderRecord {
    OrderRecord {
        id: OrderId(id),
        user_id: UserId(user),
        shard,
        status: OrderStatus::PendingPayment,
        lines: vec![OrderLine {
            sku: Sku::new("P00001-M").unwrap(),
            product_id: ProductId::new("P00001").unwrap(),
            name: "Classic Cotton T-Shirt (M)".into(),
            quantity: 2,
            unit_price: usd(1999),
            line_total: usd(3998),
        }],
        total: usd(3998),
        created_at: UnixMillis(1_800_000_000_000 + id),
        updated_at: UnixMillis(1_800_000_000_000 + id),
        expires_at: UnixMillis(1_800_000_900_000),
        shipping_address: None,
        payment_status: PaymentStatus::Pending,
        payment_method_token: "pm_tok_visa".into(),
        idempotency_key: Some(IdempotencyKey(u128::from(id))),
    }
}

fn user(id: u64, email: &str) -> UserRecord {
    UserRecord {
        id: UserId(id),
        email: email.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        name: Some("Ada".into()),
        role: Role::Customer,
        created_at: UnixMillis(1),
    }
}

fn token(hash: u8, family: u8, user: u64) -> RefreshTokenRecord {
    RefreshTokenRecord {
        token_hash: [hash; 32],
        user_id: UserId(user),
        family: [family; 16],
        issued_at: UnixMillis(10),
        expires_at: UnixMillis(1_000_000),
        rotated_at: None,
        revoked: false,
    }
}

async fn catalog_imports_once_and_loads_whole(f: &Fixture) {
    let store = &f.store;
    let data = demo::generate(3, 40);
    store.import_catalog(&data).await.unwrap();
    assert!(store.catalog_imported().await.unwrap());
    let loaded = store.load_catalog().await.unwrap();
    let ids: HashSet<_> = loaded.products.iter().map(|p| p.id.clone()).collect();
    for product in &data.products {
        assert!(ids.contains(&product.id));
    }
    let stock: HashSet<_> = loaded.stock.iter().cloned().collect();
    for level in &data.stock {
        assert!(stock.contains(level), "stock {level:?} persisted");
    }
    let mut product = data.products[3].clone();
    product.name = "Renamed".into();
    store.upsert_product(&product).await.unwrap();
    assert_eq!(
        store.product(&product.id).await.unwrap().unwrap().name,
        "Renamed"
    );
    assert_eq!(
        store
            .product(&ProductId::new("NOPE").unwrap())
            .await
            .unwrap(),
        None
    );
}

async fn stock_levels_round_trip(f: &Fixture) {
    let level = StockRecord {
        sku: Sku::new(format!("SKU-{}", f.salt)).unwrap(),
        received: 42,
        updated_at: UnixMillis(5),
    };
    f.store
        .put_stock(std::slice::from_ref(&level))
        .await
        .unwrap();
    assert!(f.store.stock_levels().await.unwrap().contains(&level));
}

async fn users_are_unique_by_id_and_case_insensitive_email(f: &Fixture) {
    let store = &f.store;
    let (a, b) = (f.salt * 10 + 1, f.salt * 10 + 2);
    let email = format!("ada{}@example.com", f.salt);
    store.create_user(&user(a, &email)).await.unwrap();
    let shouting = email.to_uppercase();
    let taken = store.create_user(&user(b, &shouting)).await.unwrap_err();
    assert!(matches!(taken, StorageError::Conflict(_)), "{taken:?}");
    let same_id = store
        .create_user(&user(a, "other@example.com"))
        .await
        .unwrap_err();
    assert!(matches!(same_id, StorageError::Conflict(_)), "{same_id:?}");
    assert_eq!(
        store.user_by_email(&shouting).await.unwrap().unwrap().id,
        UserId(a)
    );
    assert!(store.user(UserId(b)).await.unwrap().is_none());

    let mut renamed = user(a, &email);
    renamed.name = Some("Ada L.".into());
    store.update_user(&renamed).await.unwrap();
    assert_eq!(
        store
            .user(UserId(a))
            .await
            .unwrap()
            .unwrap()
            .name
            .as_deref(),
        Some("Ada L.")
    );
    let moved = user(a, "elsewhere@example.com");
    assert!(matches!(
        store.update_user(&moved).await,
        Err(StorageError::Conflict(_))
    ));
    let ghost = user(b, "ghost@example.com");
    assert!(matches!(
        store.update_user(&ghost).await,
        Err(StorageError::NotFound(_))
    ));
}

async fn addresses_belong_to_their_user(f: &Fixture) {
    let store = &f.store;
    let (a, b) = (UserId(f.salt * 10 + 3), UserId(f.salt * 10 + 4));
    let address = |id| Address {
        id: AddressId(id),
        city: Some("Lisbon".into()),
        country: Some("PT".into()),
        ..Address::default()
    };
    store.put_address(a, &address(1)).await.unwrap();
    store.put_address(a, &address(2)).await.unwrap();
    store.put_address(b, &address(1)).await.unwrap();
    assert_eq!(store.addresses(a).await.unwrap().len(), 2);
    assert!(store.delete_address(a, AddressId(1)).await.unwrap());
    assert!(!store.delete_address(a, AddressId(1)).await.unwrap());
    assert_eq!(store.addresses(a).await.unwrap(), vec![address(2)]);
    assert_eq!(store.addresses(b).await.unwrap().len(), 1);
}

async fn refresh_tokens_rotate_once_and_families_revoke(f: &Fixture) {
    tokens_rotate_once_and_families_revoke(f.store.as_ref(), (f.salt % 200) as u8).await;
}

/// Shared with the Redis token store (`redis_tokens` below).
async fn tokens_rotate_once_and_families_revoke(store: &dyn TokenStore, salt: u8) {
    let (first, second, third) = (
        token(salt, salt, 7),
        token(salt + 1, salt, 7),
        token(salt + 2, salt, 7),
    );
    store.put_refresh_token(&first).await.unwrap();
    store
        .rotate_refresh_token(&first.token_hash, &second)
        .await
        .unwrap();
    let used = store
        .refresh_token(&first.token_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(used.rotated_at, Some(second.issued_at));
    // Using a rotated token again is refused, and writes nothing.
    let reuse = store
        .rotate_refresh_token(&first.token_hash, &third)
        .await
        .unwrap_err();
    assert!(matches!(reuse, StorageError::Conflict(_)), "{reuse:?}");
    assert!(
        store
            .refresh_token(&third.token_hash)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.revoke_token_family(&first.family).await.unwrap(), 2);
    assert!(
        store
            .refresh_token(&second.token_hash)
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    let revoked = store
        .rotate_refresh_token(&second.token_hash, &third)
        .await
        .unwrap_err();
    assert!(matches!(revoked, StorageError::Conflict(_)));
}

async fn sign_outs_keep_the_latest_cutoff(f: &Fixture) {
    sign_outs_keep_the_latest_cutoff_of(f.store.as_ref(), f.salt).await;
}

/// Shared with the Redis token store (`redis_tokens` below).
async fn sign_outs_keep_the_latest_cutoff_of(store: &dyn TokenStore, salt: u64) {
    let (user, other) = (UserId(salt * 10 + 5), UserId(salt * 10 + 6));
    let keep = |at: u64| UnixMillis(at + 86_400_000);
    assert_eq!(store.signed_out_at(user).await.unwrap(), None);
    let at = UnixMillis(1_700_000_000_000);
    store
        .sign_out_everywhere(user, at, keep(at.0))
        .await
        .unwrap();
    assert_eq!(store.signed_out_at(user).await.unwrap(), Some(at));
    // An earlier cutoff arriving late does not move it back.
    let earlier = UnixMillis(at.0 - 5_000);
    store
        .sign_out_everywhere(user, earlier, keep(earlier.0))
        .await
        .unwrap();
    assert_eq!(store.signed_out_at(user).await.unwrap(), Some(at));
    let later = UnixMillis(at.0 + 1);
    store
        .sign_out_everywhere(user, later, keep(later.0))
        .await
        .unwrap();
    assert_eq!(store.signed_out_at(user).await.unwrap(), Some(later));
    assert_eq!(store.signed_out_at(other).await.unwrap(), None);
}

async fn orders_insert_once_transition_checked_and_page(f: &Fixture) {
    let store = &f.store;
    let base = f.salt * 1000 + 100;
    let user = f.salt * 10 + 5;
    for n in 0..25 {
        store.insert_order(&order(base + n, user, 3)).await.unwrap();
    }
    // A retried insert of the same order leaves one copy.
    store.insert_order(&order(base, user, 3)).await.unwrap();
    assert_eq!(
        store.order(OrderId(base + 4)).await.unwrap(),
        Some(order(base + 4, user, 3))
    );

    let mut paid = order(base + 4, user, 3);
    paid.status = OrderStatus::Paid;
    store
        .update_order(&paid, OrderStatus::PendingPayment)
        .await
        .unwrap();
    let stale = store
        .update_order(&paid, OrderStatus::PendingPayment)
        .await
        .unwrap_err();
    assert!(matches!(stale, StorageError::Conflict(_)), "{stale:?}");
    // An insert retried after the order moved on (its first attempt landed,
    // its answer was lost) leaves the order as it is.
    let late_retry = store
        .insert_order(&order(base + 4, user, 3))
        .await
        .unwrap_err();
    assert!(
        matches!(late_retry, StorageError::Conflict(_)),
        "{late_retry:?}"
    );
    let settled = store.order_settled(UserId(user), OrderId(base + 4)).await;
    assert_eq!(settled.unwrap().map(|o| o.status), Some(OrderStatus::Paid));
    let never = store.order_settled(UserId(user), OrderId(base + 998)).await;
    assert_eq!(never.unwrap(), None);
    assert_eq!(
        store
            .order(OrderId(base + 4))
            .await
            .unwrap()
            .unwrap()
            .status,
        OrderStatus::Paid
    );
    let missing = store
        .update_order(&order(base + 999, user, 3), OrderStatus::PendingPayment)
        .await;
    assert!(matches!(missing, Err(StorageError::NotFound(_))));

    // Newest first, in pages.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .orders_of_user(UserId(user), before, 10)
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|o| o.id.0));
        match page.next {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    let expected: Vec<u64> = (0..25).rev().map(|n| base + n).collect();
    assert_eq!(seen, expected);
    assert!(
        store
            .orders_of_user(UserId(user + 1), None, 10)
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // A shard's orders, oldest first, after a point.
    let page = store
        .orders_of_shard(3, Some(OrderId(base + 19)), 100)
        .await
        .unwrap();
    let ids: Vec<u64> = page.items.iter().map(|o| o.id.0).collect();
    assert_eq!(ids, (20..25).map(|n| base + n).collect::<Vec<_>>());
}

async fn orders_from_returns_each_order_once_in_its_last_state(f: &Fixture) {
    let store = &f.store;
    let base = f.salt * 1000 + 600;
    let ours = |o: &&OrderRecord| (base..base + 30).contains(&o.id.0);
    for n in 0..30 {
        let placed_by = (n % 3) as u16;
        store
            .insert_order(&order(base + n, f.salt * 10 + 7, placed_by))
            .await
            .unwrap();
    }
    let mut paid = order(base + 2, f.salt * 10 + 7, 2);
    paid.status = OrderStatus::Paid;
    store
        .update_order(&paid, OrderStatus::PendingPayment)
        .await
        .unwrap();
    let all = store.orders_from(OrderId(0), 3).await.unwrap();
    let ids: Vec<u64> = all.iter().filter(ours).map(|o| o.id.0).collect();
    assert_eq!(
        ids,
        (base..base + 30).collect::<Vec<_>>(),
        "each order once"
    );
    let stored = all.iter().find(|o| o.id.0 == base + 2).unwrap();
    assert_eq!(stored.status, OrderStatus::Paid);
    let fewer = store.orders_from(OrderId(0), 2).await.unwrap();
    assert_eq!(fewer.iter().filter(ours).count(), 20, "only shards 0 and 1");
    let later = store.orders_from(OrderId(base + 25), 3).await.unwrap();
    let ids: Vec<u64> = later.iter().filter(ours).map(|o| o.id.0).collect();
    assert_eq!(
        ids,
        (base + 25..base + 30).collect::<Vec<_>>(),
        "from an id on"
    );
}

async fn stock_snapshot_folds_settled_orders_and_guards_its_range(f: &Fixture) {
    let store = &f.store;
    let base = f.salt * 1000 + 800;
    let sku = || Sku::new("P00001-M").unwrap();
    assert_eq!(store.stock_snapshot().await.unwrap().watermark, OrderId(0));
    let settle = |n: u64, status: OrderStatus| async move {
        let mut o = order(base + n, 9, 0);
        o.status = OrderStatus::Paid;
        store
            .update_order(&o, OrderStatus::PendingPayment)
            .await
            .unwrap();
        if status != OrderStatus::Paid {
            o.status = status;
            store.update_order(&o, OrderStatus::Paid).await.unwrap();
        }
    };
    for n in 0..10 {
        store.insert_order(&order(base + n, 9, 0)).await.unwrap();
    }
    // 0 paid, 1 cancelled, 2 paid, 3 refunded, 4 pending, 5..10 paid.
    settle(0, OrderStatus::Paid).await;
    let mut cancelled = order(base + 1, 9, 0);
    cancelled.status = OrderStatus::Cancelled;
    store
        .update_order(&cancelled, OrderStatus::PendingPayment)
        .await
        .unwrap();
    settle(2, OrderStatus::Paid).await;
    settle(3, OrderStatus::Refunded).await;
    for n in 5..10 {
        settle(n, OrderStatus::Paid).await;
    }

    let below = OrderId(base + 8);
    let progress = store.advance_stock_snapshot(below, 100, 1).await.unwrap();
    assert_eq!(
        progress.watermark,
        OrderId(base + 4),
        "stops at the pending order"
    );
    assert_eq!(progress.folded, 4);
    let snapshot = store.stock_snapshot().await.unwrap();
    assert_eq!(snapshot.watermark, OrderId(base + 4));
    assert_eq!(
        snapshot.sold,
        vec![(sku(), 6)],
        "paid and refunded orders sold 2 each"
    );
    let stale = store.insert_order(&order(base + 3, 9, 0)).await;
    assert!(matches!(stale, Err(StorageError::Conflict(_))), "{stale:?}");
    let stale = store.insert_order(&order(base - 1, 9, 0)).await;
    assert!(matches!(stale, Err(StorageError::Conflict(_))), "{stale:?}");
    let again = store.advance_stock_snapshot(below, 100, 1).await.unwrap();
    assert_eq!(again.folded, 0, "still held by the pending order");

    settle(4, OrderStatus::Paid).await;
    let one = store.advance_stock_snapshot(below, 1, 1).await.unwrap();
    assert_eq!((one.watermark, one.folded), (OrderId(base + 5), 1));
    let rest = store.advance_stock_snapshot(below, 100, 1).await.unwrap();
    assert_eq!(
        (rest.watermark, rest.folded),
        (below, 3),
        "stops at `below`"
    );
    let snapshot = store.stock_snapshot().await.unwrap();
    assert_eq!(snapshot.sold, vec![(sku(), 14)]);
    let replayed: Vec<u64> = store
        .orders_from(snapshot.watermark, 1)
        .await
        .unwrap()
        .iter()
        .map(|o| o.id.0)
        .collect();
    assert_eq!(
        replayed,
        vec![base + 8, base + 9],
        "only orders from the watermark on"
    );
    store.insert_order(&order(base + 10, 9, 0)).await.unwrap();
}

/// A step folds `limit` orders when that many are settled, past any page
/// size a backend reads in: the server takes a short step as caught up.
async fn a_snapshot_step_folds_up_to_its_limit(f: &Fixture) {
    let store = &f.store;
    let base = f.salt * 10_000 + 1_000;
    let count = 1_500;
    // As a server's shards insert: a few dozen at a time, many customers.
    let mut tasks = tokio::task::JoinSet::<souk_storage::Result<()>>::new();
    for n in 0..count {
        if tasks.len() == 32 {
            tasks.join_next().await.unwrap().unwrap().unwrap();
        }
        let store = store.clone();
        tasks.spawn(async move {
            let mut o = order(base + n, 11 + n % 97, (n % 2) as u16);
            o.status = OrderStatus::Paid;
            store.insert_order(&o).await
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    let below = OrderId(base + count);
    let step = store.advance_stock_snapshot(below, 1_200, 2).await.unwrap();
    assert_eq!(
        (step.folded, step.watermark),
        (1_200, OrderId(base + 1_200))
    );
    let rest = store.advance_stock_snapshot(below, 1_200, 2).await.unwrap();
    assert_eq!((rest.folded, rest.watermark), (300, below));
    let snapshot = store.stock_snapshot().await.unwrap();
    assert_eq!(
        snapshot.sold,
        vec![(Sku::new("P00001-M").unwrap(), 2 * count as i64)]
    );
}

async fn carts_are_written_whole_and_deleted_when_empty(f: &Fixture) {
    let store = &f.store;
    let key = |n: u64| format!("u:{}", f.salt * 100 + n);
    let sku = |s: &str| Sku::new(s).unwrap();
    let cart = |n: u64, lines: Vec<(Sku, u32)>| CartRecord {
        key: key(n),
        lines,
        updated_at: UnixMillis(n),
    };
    store
        .put_carts(&[
            cart(1, vec![(sku("A-1"), 2)]),
            cart(2, vec![(sku("B-1"), 1), (sku("C-1"), 9)]),
        ])
        .await
        .unwrap();
    store
        .put_carts(&[cart(1, vec![(sku("A-1"), 5)]), cart(2, Vec::new())])
        .await
        .unwrap();
    let ours: Vec<CartRecord> = store
        .carts()
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.key == key(1) || c.key == key(2))
        .collect();
    assert_eq!(
        ours,
        vec![cart(1, vec![(sku("A-1"), 5)])],
        "replaced whole; the empty one deleted"
    );
    let long_key = CartRecord {
        key: "g:".to_owned() + &"x".repeat(2000),
        ..cart(3, vec![(sku("A-1"), 1)])
    };
    assert!(store.put_carts(&[long_key]).await.is_err());
}

async fn payments_round_trip(f: &Fixture) {
    let payment = PaymentRecord {
        order_id: OrderId(f.salt * 1000 + 50),
        status: PaymentStatus::Captured,
        amount: usd(3998),
        refunded: usd(0),
        attempts: 1,
        last_error: None,
        gateway_reference: Some("ch_123".into()),
        updated_at: UnixMillis(3),
    };
    f.store.put_payment(&payment).await.unwrap();
    assert_eq!(
        f.store.payment(payment.order_id).await.unwrap(),
        Some(payment.clone())
    );

    // A payment's outcome and its order's change, together.
    let id = f.salt * 1000 + 51;
    f.store.insert_order(&order(id, 5, 0)).await.unwrap();
    let mut paid = order(id, 5, 0);
    paid.status = OrderStatus::Paid;
    paid.payment_status = PaymentStatus::Captured;
    let captured = PaymentRecord {
        order_id: OrderId(id),
        ..payment
    };
    f.store
        .settle_payment(&paid, OrderStatus::PendingPayment, &captured)
        .await
        .unwrap();
    assert_eq!(
        f.store.order(OrderId(id)).await.unwrap(),
        Some(paid.clone())
    );
    assert_eq!(
        f.store.payment(OrderId(id)).await.unwrap(),
        Some(captured.clone())
    );
    let mut cancelled = paid.clone();
    cancelled.status = OrderStatus::Cancelled;
    let late = f
        .store
        .settle_payment(&cancelled, OrderStatus::PendingPayment, &captured)
        .await;
    assert!(matches!(late, Err(StorageError::Conflict(_))), "{late:?}");
    assert_eq!(
        f.store.order(OrderId(id)).await.unwrap(),
        Some(paid),
        "a refused change leaves the order"
    );
}

async fn bad_input_is_refused_typed_and_writes_nothing(f: &Fixture) {
    let store = &f.store;
    let mut huge = order(f.salt * 1000 + 900, 1, 0);
    huge.payment_method_token = "x".repeat(souk_storage::limits::RECORD_BYTES_MAX);
    let error = store.insert_order(&huge).await.unwrap_err();
    assert!(matches!(error, StorageError::TooLarge { .. }), "{error:?}");
    assert_eq!(store.order(huge.id).await.unwrap(), None);

    assert!(matches!(
        store.user_by_email("").await,
        Err(StorageError::InvalidKey(_))
    ));
}

async fn concurrent_writers_all_land(f: &Fixture) {
    let base = f.salt * 1000 + 500;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..200 {
        let store = f.store.clone();
        tasks.spawn(async move {
            store
                .insert_order(&order(base + n, 77_000 + n % 7, (n % 4) as u16))
                .await
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    for n in 0..200 {
        assert!(f.store.order(OrderId(base + n)).await.unwrap().is_some());
    }
}

macro_rules! conformance {
    ($backend:ident, $open:expr) => {
        mod $backend {
            use super::*;

            macro_rules! check {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        if let Some(fixture) = $open.await {
                            fixture.run(|f| async move { super::$name(&f).await }).await;
                        }
                    }
                };
            }

            check!(catalog_imports_once_and_loads_whole);
            check!(stock_levels_round_trip);
            check!(users_are_unique_by_id_and_case_insensitive_email);
            check!(addresses_belong_to_their_user);
            check!(refresh_tokens_rotate_once_and_families_revoke);
            check!(sign_outs_keep_the_latest_cutoff);
            check!(orders_insert_once_transition_checked_and_page);
            check!(orders_from_returns_each_order_once_in_its_last_state);
            check!(stock_snapshot_folds_settled_orders_and_guards_its_range);
            check!(a_snapshot_step_folds_up_to_its_limit);
            check!(carts_are_written_whole_and_deleted_when_empty);
            check!(payments_round_trip);
            check!(bad_input_is_refused_typed_and_writes_nothing);
            check!(concurrent_writers_all_land);
        }
    };
}

conformance!(embedded_redb, embedded(EngineKind::Redb));
conformance!(embedded_fjall, embedded(EngineKind::Fjall));
conformance!(scylla_db, scylla());

/// Refresh tokens kept in Redis (`--redis`) obey the same rules, checked
/// against a real `redis-server` started on a free port.
mod redis_tokens {
    use souk_storage::redis::RedisState;
    use souk_storage::testing::RedisServer;

    /// A fresh server and a client of it; none (see `skip_or_fail`) when
    /// `redis-server` is not installed.
    async fn redis() -> Option<(RedisServer, RedisState)> {
        let redis = match RedisServer::start("everysec") {
            Ok(redis) => redis,
            Err(reason) => {
                souk_storage::testing::skip_or_fail(&reason);
                return None;
            }
        };
        let state = RedisState::connect(&redis.url(), 2).await.unwrap();
        Some((redis, state))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refresh_tokens_rotate_once_and_families_revoke() {
        if let Some((_redis, state)) = redis().await {
            super::tokens_rotate_once_and_families_revoke(&state, 3).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sign_outs_keep_the_latest_cutoff() {
        if let Some((_redis, state)) = redis().await {
            super::sign_outs_keep_the_latest_cutoff_of(&state, 3).await;
        }
    }
}
