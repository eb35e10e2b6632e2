//! What only the CQL backend can get wrong, against the live cluster named
//! by `SOUK_SCYLLA_NODES` (see `conformance.rs` for when it skips): states
//! a crash or a race leaves in the tables, made here with plain CQL, and
//! the keyspace souk creates.

use std::sync::Arc;

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::value::CqlValue;
use souk_storage::StorageError;
use souk_storage::model::{RefreshTokenRecord, UserRecord};
use souk_storage::scylla::{Lease, Reclaim, ScyllaConfig, ScyllaStore, Server};
use souk_storage::store::Taken;
use souk_storage::store::{TokenStore, UserStore};
use souk_wire::api::{Role, UnixMillis, UserId};

/// A store on a keyspace of its own and a plain session on the cluster;
/// the keyspace is dropped after `check`, passed or not.
async fn with_store<C, F>(check: C)
where
    C: FnOnce(Arc<ScyllaStore>, Arc<Session>, ScyllaConfig) -> F,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let Ok(nodes) = std::env::var("SOUK_SCYLLA_NODES") else {
        souk_storage::testing::skip_or_fail_unless(
            "SOUK_SKIP_CQL",
            "SOUK_SCYLLA_NODES is not set (no ScyllaDB cluster to test against)",
        );
        return;
    };
    let nodes: Vec<String> = nodes.split(',').map(str::to_owned).collect();
    let salt = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let mut config = ScyllaConfig::new(nodes.clone(), format!("souk_cql_{salt}"));
    config.replication_factor = std::env::var("SOUK_SCYLLA_REPLICATION_FACTOR")
        .ok()
        .and_then(|rf| rf.parse().ok())
        .unwrap_or(1);
    let store = Arc::new(ScyllaStore::connect(&config).await.unwrap());
    let session = SessionBuilder::new()
        .known_nodes(&nodes)
        .build()
        .await
        .unwrap();
    let outcome = tokio::spawn(check(store.clone(), Arc::new(session), config)).await;
    store.drop_keyspace().await.unwrap();
    if let Err(failed) = outcome {
        std::panic::resume_unwind(failed.into_panic());
    }
}

fn user(id: u64, email: &str) -> UserRecord {
    UserRecord {
        id: UserId(id),
        email: email.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        name: None,
        role: Role::Customer,
        created_at: UnixMillis(1),
    }
}

/// An earlier souk claimed the e-mail before storing the user; a crash in
/// between left the address claimed by a user that does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_claimed_by_a_user_that_never_landed_can_register() {
    with_store(|store, session, config| async move {
        let ks = &config.keyspace;
        session
            .query_unpaged(
                format!(
                    "INSERT INTO {ks}.users_by_email (email, user_id) VALUES (?, ?) IF NOT EXISTS"
                ),
                ("stranded@example.com", 41_i64),
            )
            .await
            .unwrap();
        assert_eq!(
            store.user_by_email("stranded@example.com").await.unwrap(),
            None
        );

        store
            .create_user(&user(42, "Stranded@example.com"))
            .await
            .unwrap();
        let found = store.user_by_email("stranded@example.com").await.unwrap();
        assert_eq!(found.map(|u| u.id), Some(UserId(42)));

        // A claim whose user exists is still refused.
        let taken = store.create_user(&user(43, "stranded@example.com")).await;
        assert!(
            matches!(taken, Err(souk_storage::StorageError::Conflict(_))),
            "{taken:?}"
        );
        assert_eq!(
            store.user(UserId(43)).await.unwrap(),
            None,
            "the loser's row is removed"
        );
    })
    .await;
}

/// A registration cut off after storing the user leaves a row nothing
/// points to, and the e-mail free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_stored_without_its_email_claim_leaves_the_email_free() {
    with_store(|store, session, config| async move {
        let ks = &config.keyspace;
        session
            .query_unpaged(
                format!(
                    "INSERT INTO {ks}.users (user_id, email, record) VALUES (?, ?, ?) IF NOT EXISTS"
                ),
                (51_i64, "half@example.com", vec![0u8]),
            )
            .await
            .unwrap();
        store
            .create_user(&user(52, "half@example.com"))
            .await
            .unwrap();
        let found = store.user_by_email("half@example.com").await.unwrap();
        assert_eq!(found.map(|u| u.id), Some(UserId(52)));
    })
    .await;
}

fn token(hash: u8, family: u8) -> RefreshTokenRecord {
    RefreshTokenRecord {
        token_hash: [hash; 32],
        user_id: UserId(7),
        family: [family; 16],
        issued_at: UnixMillis(10),
        expires_at: UnixMillis(u64::MAX / 2),
        rotated_at: None,
        revoked: false,
    }
}

/// Reuse detection reads `rotated_at`: revoking a family while one of its
/// tokens rotates must not write back the record it read before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_family_never_undoes_a_rotation() {
    with_store(|store, _session, _config| async move {
        for round in 0..60u8 {
            let (old, new) = (token(round, round), token(round.wrapping_add(100), round));
            store.put_refresh_token(&old).await.unwrap();
            let rotate = {
                let store = store.clone();
                let (old, new) = (old.token_hash, new.clone());
                tokio::spawn(async move { store.rotate_refresh_token(&old, &new).await })
            };
            let revoke = {
                let store = store.clone();
                tokio::spawn(async move { store.revoke_token_family(&[round; 16]).await })
            };
            let rotated = rotate.await.unwrap().is_ok();
            revoke.await.unwrap().unwrap();
            let stored = store.refresh_token(&old.token_hash).await.unwrap().unwrap();
            assert!(stored.revoked, "round {round}: the family was revoked");
            if rotated {
                assert_eq!(
                    stored.rotated_at,
                    Some(new.issued_at),
                    "round {round}: a rotation that succeeded stays recorded"
                );
            }
        }
    })
    .await;
}

/// The keyspace takes the configured replication, and on ScyllaDB the
/// option that keeps lightweight transactions allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keyspace_has_the_configured_replication() {
    with_store(|store, session, config| async move {
        let rows = session
            .query_unpaged(
                "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?",
                (config.keyspace.as_str(),),
            )
            .await
            .unwrap()
            .into_rows_result()
            .unwrap();
        let (replication,): (std::collections::HashMap<String, String>,) =
            rows.single_row().unwrap();
        assert_eq!(
            replication.get("class").map(String::as_str),
            Some("org.apache.cassandra.locator.NetworkTopologyStrategy")
        );
        let factor = config.replication_factor.to_string();
        assert!(
            replication.values().any(|v| *v == factor),
            "{replication:?}"
        );
        let release: String = session
            .query_unpaged("SELECT release_version FROM system.local", &[])
            .await
            .unwrap()
            .into_rows_result()
            .unwrap()
            .single_row::<(String,)>()
            .unwrap()
            .0;
        match store.server() {
            Server::Cassandra => assert!(release.starts_with("5."), "{release}"),
            Server::ScyllaDb { tablets } => {
                if tablets {
                    let rows = session
                        .query_unpaged(
                            "SELECT initial_tablets FROM system_schema.scylla_keyspaces WHERE keyspace_name = ?",
                            (config.keyspace.as_str(),),
                        )
                        .await
                        .unwrap()
                        .into_rows_result()
                        .unwrap();
                    let tablets: Option<(Option<CqlValue>,)> = rows.maybe_first_row().unwrap();
                    assert!(
                        matches!(tablets, None | Some((None,))),
                        "tablets are off: {tablets:?}"
                    );
                }
            }
        }
    })
    .await;
}

/// Another node's store on the same keyspace.
async fn node(config: &ScyllaConfig, name: &str) -> Arc<ScyllaStore> {
    let mut config = config.clone();
    config.node = name.into();
    Arc::new(ScyllaStore::connect(&config).await.unwrap())
}

fn sku(name: &str) -> souk_wire::api::Sku {
    souk_wire::api::Sku::new(name).unwrap()
}

/// Three nodes taking chunks at once, three takers each, until the pool
/// is empty: they take exactly the pool between them, and every unit is
/// in the pool or in the grant of the node that took it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_taking_at_once_take_exactly_the_pool() {
    with_store(|store, _session, config| async move {
        let sku = sku("ESCROW-1");
        assert_eq!(store.add_to_pool(&sku, 600).await.unwrap(), 600);
        assert_eq!(store.add_to_pool(&sku, 400).await.unwrap(), 1_000);
        let mut takers = tokio::task::JoinSet::new();
        for name in ["node-a", "node-b", "node-c"] {
            let node = node(&config, name).await;
            for taker in 0..3_i64 {
                let (node, sku) = (node.clone(), sku.clone());
                takers.spawn(async move {
                    let mut taken = 0;
                    loop {
                        let want = 7 + taker * 13;
                        match node.take_from_pool(&sku, 1, 1, want).await.unwrap() {
                            Taken { units: 0, pool } => {
                                assert_eq!(pool, 0, "stops only when the pool is empty");
                                return (node.node().to_owned(), taken);
                            }
                            Taken { units, .. } => taken += units,
                        }
                    }
                });
            }
        }
        let mut by_node = std::collections::BTreeMap::<String, i64>::new();
        while let Some(result) = takers.join_next().await {
            let (name, taken) = result.unwrap();
            *by_node.entry(name).or_default() += taken;
        }
        assert_eq!(by_node.values().sum::<i64>(), 1_000, "{by_node:?}");
        let escrow = store.escrow(&sku).await.unwrap();
        assert_eq!(escrow.pool, 0);
        for (name, taken) in &by_node {
            assert_eq!(escrow.granted_to(name), *taken, "{escrow:?}");
        }
        assert_eq!(escrow.total(), 1_000);
        let all = store.all_escrow().await.unwrap();
        assert_eq!(all, vec![(sku.clone(), escrow)]);
    })
    .await;
}

/// A pool opens from the SKU's stock record; a take is at most a quarter of
/// the pool beyond what is needed, and nothing when the pool cannot cover
/// the need; a node gives back only what it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_open_from_stock_and_hand_out_small_pieces() {
    use souk_storage::model::StockRecord;
    use souk_storage::store::StockStore;
    with_store(|store, _session, _config| async move {
        let sku = sku("ESCROW-2");
        let record = StockRecord {
            sku: sku.clone(),
            received: 100,
            updated_at: UnixMillis(1),
        };
        store.put_stock(&[record]).await.unwrap();
        let taken = store.take_from_pool(&sku, 1, 1, 80).await.unwrap();
        assert_eq!(
            taken,
            Taken {
                units: 25,
                pool: 75
            },
            "a quarter of the pool"
        );
        let taken = store.take_from_pool(&sku, 1, 40, 80).await.unwrap();
        assert_eq!(
            taken,
            Taken {
                units: 40,
                pool: 35
            },
            "the need first"
        );
        let taken = store.take_from_pool(&sku, 1, 36, 80).await.unwrap();
        assert_eq!(
            taken,
            Taken { units: 0, pool: 35 },
            "none short of the need"
        );
        assert_eq!(store.return_to_pool(&sku, 1, 20).await.unwrap(), 55);
        let escrow = store.escrow(&sku).await.unwrap();
        assert_eq!((escrow.pool, escrow.granted_to(store.node())), (55, 45));
        let over = store.return_to_pool(&sku, 1, 46).await;
        assert!(matches!(over, Err(StorageError::Conflict(_))), "{over:?}");
        let stale = store.return_to_pool(&sku, 2, 1).await;
        assert!(matches!(stale, Err(StorageError::Conflict(_))), "{stale:?}");
        assert_eq!(store.escrow(&sku).await.unwrap(), escrow);
        assert!(matches!(
            store.add_to_pool(&sku, -56).await,
            Err(StorageError::Conflict(_))
        ));
        assert_eq!(store.add_to_pool(&sku, -5).await.unwrap(), 50);
    })
    .await;
}

/// Node numbers: one per name, the same on every ask, different per node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_claims_its_own_number() {
    with_store(|store, _session, config| async move {
        let other = node(&config, "node-other").await;
        let (mine, theirs) = (
            store.node_number().await.unwrap(),
            other.node_number().await.unwrap(),
        );
        assert_ne!(mine, theirs);
        assert_eq!(store.node_number().await.unwrap(), mine);
        assert_eq!(other.node_number().await.unwrap(), theirs);
    })
    .await;
}

/// A node whose lease ran out is fenced, cannot renew, and its grant is
/// reclaimed down to what its orders hold, once; a live lease is left
/// alone. Started again, the node rejoins under a new epoch, after which a
/// reclaim still running on the fence's view cannot move its grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_is_fenced_and_its_grant_reclaimed() {
    with_store(|store, _session, config| async move {
        let sku = sku("ESCROW-3");
        let (dead, live) = (
            node(&config, "node-dead").await,
            node(&config, "node-live").await,
        );
        store.add_to_pool(&sku, 100).await.unwrap();
        let now = UnixMillis(1_000_000);
        let dead_lease = dead.join(UnixMillis(now.0 - 1)).await.unwrap();
        let live_lease = live.join(UnixMillis(now.0 + 5_000)).await.unwrap();
        assert_eq!((dead_lease.epoch, live_lease.epoch), (1, 1));
        assert_eq!(
            dead.take_from_pool(&sku, 1, 40, 40).await.unwrap().units,
            40
        );
        assert_eq!(
            live.take_from_pool(&sku, 1, 10, 10).await.unwrap().units,
            10
        );

        assert_eq!(
            store.fence("node-live", now).await.unwrap(),
            None,
            "a live lease stays"
        );
        assert_eq!(store.fence("node-never", now).await.unwrap(), None);
        assert_eq!(store.fence("node-dead", now).await.unwrap(), Some(2));
        assert_eq!(
            store.fence("node-dead", now).await.unwrap(),
            Some(2),
            "fenced once"
        );
        let renewed = dead
            .renew_lease(dead_lease, UnixMillis(now.0 + 5_000))
            .await;
        assert!(
            matches!(renewed, Err(StorageError::Conflict(_))),
            "{renewed:?}"
        );

        // Its durable orders hold 12 units: those stay with it.
        let fenced = Reclaim::Fenced { epoch: 2 };
        assert_eq!(
            store
                .reclaim(&sku, "node-dead", |_| 12, fenced)
                .await
                .unwrap(),
            28
        );
        assert_eq!(
            store
                .reclaim(&sku, "node-dead", |_| 12, fenced)
                .await
                .unwrap(),
            0,
            "the same count again moves nothing"
        );
        let escrow = store.escrow(&sku).await.unwrap();
        assert_eq!(
            (
                escrow.pool,
                escrow.granted_to("node-dead"),
                escrow.granted_to("node-live")
            ),
            (78, 12, 10)
        );
        assert_eq!(escrow.total(), 100);

        // Dead again before the reclaim, then started while a reclaimer
        // still works from the fence it saw: the rejoin stamps the grant.
        assert_eq!(store.fence("node-dead", now).await.unwrap(), Some(2));
        let rejoined = dead.join(UnixMillis(now.0 + 5_000)).await.unwrap();
        assert_eq!(rejoined.epoch, 3);
        assert_eq!(
            dead.escrow(&sku)
                .await
                .unwrap()
                .grant("node-dead")
                .unwrap()
                .epoch,
            3
        );
        assert_eq!(
            store
                .reclaim(&sku, "node-dead", |_| 0, Reclaim::Fenced { epoch: 2 })
                .await
                .unwrap(),
            0,
            "a stale reclaim moves nothing"
        );
        assert_eq!(dead.take_from_pool(&sku, 3, 8, 8).await.unwrap().units, 8);
        let stale = dead.take_from_pool(&sku, 1, 1, 1).await;
        assert!(matches!(stale, Err(StorageError::Conflict(_))), "{stale:?}");
        let leases: std::collections::BTreeMap<_, _> =
            store.leases().await.unwrap().into_iter().collect();
        assert_eq!(
            leases["node-dead"],
            Lease {
                until: Some(UnixMillis(now.0 + 5_000)),
                epoch: 3
            }
        );
        assert_eq!(leases["node-live"], live_lease);
        // A clean stop gives back all but what its orders hold (none).
        assert_eq!(
            dead.reclaim_node("node-dead", Reclaim::Own { epoch: 3 }, None)
                .await
                .unwrap()
                .0,
            20
        );
        assert_eq!(store.escrow(&sku).await.unwrap().total(), 100);
    })
    .await;
}

/// A node that joins the escrow now, with a minute of lease.
async fn live(
    config: &ScyllaConfig,
    name: &str,
    now: UnixMillis,
) -> souk_storage::scylla::NodeEscrow {
    let lease = std::time::Duration::from_secs(15);
    let until = UnixMillis(now.0 + 60_000);
    let store = node(config, name).await;
    souk_storage::scylla::NodeEscrow::join(store, until, lease)
        .await
        .unwrap()
}

/// A fenced node no longer expires its own orders: the node reclaiming its
/// grants expires those that lapsed unpaid and takes their units back, and
/// reads its grants again only when its next order lapses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_s_orders_that_lapse_unpaid_give_their_units_back() {
    use souk_storage::scylla::Reclaimed;
    use souk_storage::store::OrderStore;
    use souk_wire::api::{OrderStatus, PaymentStatus};
    with_store(|store, _session, config| async move {
        let sku = sku("ESCROW-LAPSE");
        store.add_to_pool(&sku, 100).await.unwrap();
        let now = UnixMillis(1_000_000);
        let gone = node(&config, "node-gone").await;
        gone.join(UnixMillis(now.0 - 1)).await.unwrap();
        assert_eq!(
            gone.take_from_pool(&sku, 1, 30, 30).await.unwrap().units,
            30
        );
        let order = |id: u64, units: u32, status: OrderStatus, expires_at: u64| {
            let mut order = souk_storage::testing::order(id);
            order.lines.truncate(1);
            order.lines[0].sku = sku.clone();
            order.lines[0].quantity = units;
            order.status = status;
            order.expires_at = UnixMillis(expires_at);
            order
        };
        let paid = order(2_000, 5, OrderStatus::Paid, 0);
        let lapsed = order(2_001, 3, OrderStatus::PendingPayment, now.0 - 100_000);
        let later = order(2_002, 4, OrderStatus::PendingPayment, 2_000_000);
        for order in [&paid, &lapsed, &later] {
            gone.insert_order(order).await.unwrap();
        }
        let keeper = live(&config, "node-keeper", now).await;

        let first = keeper.reclaim_dead(now, now).await.unwrap();
        let reclaimed = |units, expired, next_lapse: Option<u64>| Reclaimed {
            units,
            expired,
            next_lapse: next_lapse.map(UnixMillis),
        };
        assert_eq!(
            first,
            reclaimed(21, 1, Some(2_000_000)),
            "30 granted, 9 held"
        );
        let expired = store.order(lapsed.id).await.unwrap().unwrap();
        assert_eq!(
            (expired.status, expired.payment_status, expired.updated_at),
            (OrderStatus::Expired, PaymentStatus::Failed, now)
        );
        assert_eq!(
            store.order(later.id).await.unwrap().unwrap().status,
            OrderStatus::PendingPayment,
            "not lapsed yet"
        );
        assert_eq!(
            keeper.reclaim_dead(now, now).await.unwrap(),
            reclaimed(0, 0, Some(2_000_000)),
            "nothing lapsed since"
        );
        let other = live(&config, "node-other", now).await;
        assert_eq!(
            other.reclaim_dead(now, now).await.unwrap(),
            reclaimed(0, 0, Some(2_000_000)),
            "a second reclaimer reads the same count and moves nothing"
        );

        // Cancelled through another node, then past its deadline: its
        // units go back at the next look.
        let cancelled = souk_storage::model::OrderRecord {
            status: OrderStatus::Cancelled,
            ..later.clone()
        };
        store
            .update_order(&cancelled, OrderStatus::PendingPayment)
            .await
            .unwrap();
        let after = UnixMillis(2_000_001);
        assert_eq!(
            keeper.reclaim_dead(after, after).await.unwrap(),
            reclaimed(4, 0, None)
        );
        assert_eq!(
            keeper.reclaim_dead(after, after).await.unwrap(),
            reclaimed(0, 0, None)
        );
        let escrow = store.escrow(&sku).await.unwrap();
        assert_eq!(
            (escrow.pool, escrow.granted_to("node-gone")),
            (95, 5),
            "what its paid order holds stays with it"
        );
        assert_eq!(escrow.grant("node-gone").unwrap().epoch, 2);
        assert_eq!(escrow.total(), 100);
    })
    .await;
}

/// A checkout key is held by one order at a time across nodes: claimed
/// once, found by the next claimant, handed over only from the order
/// named, released only by its holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_key_is_held_by_one_order_across_nodes() {
    use souk_storage::store::{KeyClaim, OrderStore};
    use souk_wire::api::{IdempotencyKey, OrderId};
    with_store(|store, _session, config| async move {
        let other = node(&config, "node-b").await;
        let (user, key, at) = (UserId(9), IdempotencyKey(0xfeed), UnixMillis(5_000));
        let claim = |store: Arc<ScyllaStore>, order: u64| async move {
            store
                .claim_checkout_key(user, key, OrderId(order), at)
                .await
                .unwrap()
        };
        assert_eq!(claim(store.clone(), 1).await, KeyClaim::Claimed);
        assert_eq!(
            claim(store.clone(), 1).await,
            KeyClaim::Claimed,
            "a retry of the same claim"
        );
        let first = KeyClaim::Taken {
            order: OrderId(1),
            claimed_at: at,
        };
        assert_eq!(claim(other.clone(), 2).await, first);
        let other_user = other
            .claim_checkout_key(UserId(10), key, OrderId(3), at)
            .await;
        assert_eq!(other_user.unwrap(), KeyClaim::Claimed, "keys are per user");

        let later = UnixMillis(90_000);
        assert!(
            !other
                .take_over_checkout_key(user, key, OrderId(7), OrderId(2), later)
                .await
                .unwrap()
        );
        assert!(
            other
                .take_over_checkout_key(user, key, OrderId(1), OrderId(2), later)
                .await
                .unwrap()
        );
        assert_eq!(
            claim(store.clone(), 4).await,
            KeyClaim::Taken {
                order: OrderId(2),
                claimed_at: later
            }
        );
        store
            .release_checkout_key(user, key, OrderId(1))
            .await
            .unwrap();
        assert!(
            matches!(claim(store.clone(), 4).await, KeyClaim::Taken { .. }),
            "not the holder's"
        );
        other
            .release_checkout_key(user, key, OrderId(2))
            .await
            .unwrap();
        assert_eq!(claim(store.clone(), 4).await, KeyClaim::Claimed);
    })
    .await;
}

/// An order's index rows are written before the order: a crash between
/// them leaves index rows whose order never landed (never acknowledged).
/// Replay and the fold skip them, and pages still go on past them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_rows_of_an_order_that_never_landed_are_skipped() {
    use souk_storage::store::{OrderStore, StockStore};
    use souk_wire::api::{OrderId, OrderStatus};
    with_store(|store, session, config| async move {
        let ks = &config.keyspace;
        let mut paid = souk_storage::testing::order(1_000);
        paid.shard = 0;
        paid.status = OrderStatus::Paid;
        store.insert_order(&paid).await.unwrap();
        for id in [1_001_i64, 1_002] {
            session
                .query_unpaged(
                    format!("INSERT INTO {ks}.orders_by_shard (node, shard, order_id, user_id) VALUES (?, 0, ?, 5)"),
                    (config.node.as_str(), id),
                )
                .await
                .unwrap();
        }
        let mut later = souk_storage::testing::order(1_003);
        later.shard = 0;
        store.insert_order(&later).await.unwrap();

        let page = store.orders_of_shard(0, None, 2).await.unwrap();
        assert_eq!(page.items.iter().map(|o| o.id).collect::<Vec<_>>(), [OrderId(1_000)]);
        assert_eq!(page.next, Some(OrderId(1_001)), "the page ends at its last index row");
        let rest = store.orders_of_shard(0, page.next, 10).await.unwrap();
        assert_eq!(rest.items.iter().map(|o| o.id).collect::<Vec<_>>(), [OrderId(1_003)]);
        let all = store.orders_from(OrderId(0), 1).await.unwrap();
        assert_eq!(all.iter().map(|o| o.id).collect::<Vec<_>>(), [OrderId(1_000), OrderId(1_003)]);
        let folded = store.advance_stock_snapshot(OrderId(1_003), 10, 1).await.unwrap();
        assert_eq!((folded.folded, folded.watermark), (1, OrderId(1_001)));

        // Paid later, 1,003 can be folded: the fold passes the index rows
        // without orders before it, even one page of nothing but them.
        let mut paid_later = later.clone();
        paid_later.status = OrderStatus::Paid;
        store.update_order(&paid_later, OrderStatus::PendingPayment).await.unwrap();
        let folded = store.advance_stock_snapshot(OrderId(2_000), 1, 1).await.unwrap();
        assert_eq!((folded.folded, folded.watermark), (1, OrderId(1_004)), "{folded:?}");
        let snapshot = store.stock_snapshot().await.unwrap();
        let mut sold = std::collections::BTreeMap::new();
        for line in paid.lines.iter().chain(&paid_later.lines) {
            *sold.entry(line.sku.clone()).or_insert(0) += i64::from(line.quantity);
        }
        assert_eq!(snapshot.sold, sold.into_iter().collect::<Vec<_>>());
    })
    .await;
}

/// A family revoked while one of its tokens is between its family row and
/// its own insert (a rotation in flight): that token can never land live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_stored_after_its_family_was_revoked_is_refused() {
    with_store(|store, session, config| async move {
        let ks = &config.keyspace;
        let (stored, in_flight) = (token(1, 77), token(2, 77));
        store.put_refresh_token(&stored).await.unwrap();
        session
            .query_unpaged(
                format!("INSERT INTO {ks}.token_families (family, token_hash) VALUES (?, ?)"),
                (in_flight.family.to_vec(), in_flight.token_hash.to_vec()),
            )
            .await
            .unwrap();
        assert_eq!(
            store.revoke_token_family(&[77; 16]).await.unwrap(),
            1,
            "one was stored"
        );
        let late = store.put_refresh_token(&in_flight).await;
        assert!(
            matches!(late, Err(souk_storage::StorageError::Conflict(_))),
            "{late:?}"
        );
        assert_eq!(
            store.refresh_token(&in_flight.token_hash).await.unwrap(),
            None
        );
        assert!(
            store
                .refresh_token(&stored.token_hash)
                .await
                .unwrap()
                .unwrap()
                .revoked
        );
    })
    .await;
}
