//! What only the CQL backend can get wrong, against the live cluster named
//! by `SOUK_SCYLLA_NODES` (see `conformance.rs` for when it skips): states
//! a crash or a race leaves in the tables, made here with plain CQL, and
//! the keyspace souk creates.

use std::sync::Arc;

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::value::CqlValue;
use souk_storage::model::{RefreshTokenRecord, UserRecord};
use souk_storage::scylla::{ScyllaConfig, ScyllaStore, Server};
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
                        match node.take_from_pool(&sku, 7 + taker * 13).await.unwrap() {
                            0 => return (node.node().to_owned(), taken),
                            units => taken += units,
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

/// What a node did not sell goes back; it cannot give back more than it
/// holds, and a refused return changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_gives_back_only_what_it_holds() {
    with_store(|store, _session, _config| async move {
        let sku = sku("ESCROW-2");
        store.add_to_pool(&sku, 50).await.unwrap();
        assert_eq!(
            store.take_from_pool(&sku, 80).await.unwrap(),
            50,
            "no more than the pool"
        );
        assert_eq!(store.take_from_pool(&sku, 1).await.unwrap(), 0);
        store.return_to_pool(&sku, 20).await.unwrap();
        let escrow = store.escrow(&sku).await.unwrap();
        assert_eq!((escrow.pool, escrow.granted_to(store.node())), (20, 30));
        let over = store.return_to_pool(&sku, 31).await;
        assert!(
            matches!(over, Err(souk_storage::StorageError::Conflict(_))),
            "{over:?}"
        );
        assert_eq!(store.escrow(&sku).await.unwrap(), escrow);
        assert!(matches!(
            store.add_to_pool(&sku, -1).await,
            Err(souk_storage::StorageError::Conflict(_))
        ));
    })
    .await;
}

/// A node whose lease ran out is fenced, cannot renew, and its grant is
/// reclaimed down to what its orders hold; a live lease is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_is_fenced_and_its_grant_reclaimed() {
    use souk_storage::scylla::Lease;
    with_store(|store, _session, config| async move {
        let sku = sku("ESCROW-3");
        let (dead, live) = (
            node(&config, "node-dead").await,
            node(&config, "node-live").await,
        );
        store.add_to_pool(&sku, 100).await.unwrap();
        assert_eq!(dead.take_from_pool(&sku, 40).await.unwrap(), 40);
        assert_eq!(live.take_from_pool(&sku, 10).await.unwrap(), 10);
        let now = UnixMillis(1_000_000);
        dead.renew_lease(None, UnixMillis(now.0 - 1)).await.unwrap();
        live.renew_lease(None, UnixMillis(now.0 + 5_000))
            .await
            .unwrap();

        assert!(
            !store.fence("node-live", now).await.unwrap(),
            "a live lease stays"
        );
        assert!(
            !store.fence("node-never", now).await.unwrap(),
            "no lease, nothing to fence"
        );
        assert!(store.fence("node-dead", now).await.unwrap());
        assert_eq!(store.lease("node-dead").await.unwrap(), Some(Lease::Fenced));
        let renewed = dead
            .renew_lease(
                Some(Lease::Until(UnixMillis(now.0 - 1))),
                UnixMillis(now.0 + 5_000),
            )
            .await;
        assert!(
            matches!(renewed, Err(souk_storage::StorageError::Conflict(_))),
            "{renewed:?}"
        );

        // Its durable orders hold 12 units: those stay with it.
        assert_eq!(store.reclaim(&sku, "node-dead", |_| 12).await.unwrap(), 28);
        assert_eq!(
            store.reclaim(&sku, "node-dead", |_| 12).await.unwrap(),
            0,
            "once"
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
        // Started again, it takes its lease back from the fence.
        dead.renew_lease(None, UnixMillis(now.0 + 5_000))
            .await
            .unwrap();
        assert_eq!(
            store
                .leases()
                .await
                .unwrap()
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>(),
            [
                (
                    "node-dead".to_owned(),
                    Lease::Until(UnixMillis(now.0 + 5_000))
                ),
                (
                    "node-live".to_owned(),
                    Lease::Until(UnixMillis(now.0 + 5_000))
                ),
            ]
            .into_iter()
            .collect()
        );
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
