//! The state several nodes share through Redis (`--redis`), against a real
//! `redis-server` each test starts on a free port (where none is installed,
//! skipped with the reason printed, or failed under `SOUK_REQUIRE_ALL_TESTS`).

use std::sync::Arc;

use souk_storage::StorageError;
use souk_storage::model::RefreshTokenRecord;
use souk_storage::redis::RedisState;
use souk_storage::store::{SharedLimits, TokenStore};
use souk_storage::testing::RedisServer;
use souk_wire::api::{UnixMillis, UserId};

async fn redis() -> Option<(RedisServer, RedisState)> {
    match RedisServer::start("everysec") {
        Ok(server) => {
            let state = RedisState::connect(&server.url(), 4).await.unwrap();
            Some((server, state))
        }
        Err(reason) => {
            souk_storage::testing::skip_or_fail(&reason);
            None
        }
    }
}

fn token(hash: u8, expires_at: u64) -> RefreshTokenRecord {
    RefreshTokenRecord {
        token_hash: [hash; 32],
        user_id: UserId(42),
        family: [9; 16],
        issued_at: UnixMillis(1_000),
        expires_at: UnixMillis(expires_at),
        rotated_at: None,
        revoked: false,
    }
}

/// Nodes racing to rotate one token (a client retrying on two
/// connections, or a thief and the owner): exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rotations_of_one_token_let_exactly_one_win() {
    let Some((_server, state)) = redis().await else {
        return;
    };
    let state = Arc::new(state);
    let far = 4_000_000_000_000;
    state.put_refresh_token(&token(1, far)).await.unwrap();
    let racers = (0..32u8).map(|n| {
        let state = state.clone();
        tokio::spawn(async move {
            let mut next = token(100 + n, far);
            next.issued_at = UnixMillis(2_000 + u64::from(n));
            state.rotate_refresh_token(&[1; 32], &next).await
        })
    });
    let mut won = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Ok(()) => won += 1,
            Err(StorageError::Conflict(_)) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(won, 1);
    let old = state.refresh_token(&[1; 32]).await.unwrap().unwrap();
    assert!(old.rotated_at.is_some());
    assert_eq!(
        stored_successors(&state).await,
        1,
        "only the winner's token was stored"
    );
}

async fn stored_successors(state: &RedisState) -> usize {
    let mut found = 0;
    for n in 0..32u8 {
        if state.refresh_token(&[100 + n; 32]).await.unwrap().is_some() {
            found += 1;
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_limited_in_a_sliding_window() {
    let Some((_server, state)) = redis().await else {
        return;
    };
    let at = |s: u64| UnixMillis(1_000_000 + s * 1000);
    for n in 0..3 {
        let refused = state
            .attempt_begin("acct:a", n, 3, 60_000, at(n))
            .await
            .unwrap();
        assert_eq!(refused, None);
    }
    assert_eq!(
        state
            .attempt_begin("acct:a", 9, 3, 60_000, at(10))
            .await
            .unwrap(),
        Some(50_000),
        "until the first failure is a minute old"
    );
    assert_eq!(
        state
            .attempt_begin("acct:b", 9, 3, 60_000, at(10))
            .await
            .unwrap(),
        None,
        "keys are counted apart"
    );
    // One attempt succeeded without forgiving: only its own count goes.
    state.attempt_succeeded("acct:a", 2, false).await.unwrap();
    assert_eq!(
        state
            .attempt_begin("acct:a", 3, 3, 60_000, at(11))
            .await
            .unwrap(),
        None
    );
    assert!(
        state
            .attempt_begin("acct:a", 4, 3, 60_000, at(11))
            .await
            .unwrap()
            .is_some()
    );
    // Forgiving clears the key; the oldest failure also ages out alone.
    state.attempt_succeeded("acct:a", 0, true).await.unwrap();
    assert_eq!(
        state
            .attempt_begin("acct:a", 5, 3, 60_000, at(12))
            .await
            .unwrap(),
        None
    );
    for n in 0..3 {
        state
            .attempt_begin("acct:c", n, 3, 60_000, at(n))
            .await
            .unwrap();
    }
    assert_eq!(
        state
            .attempt_begin("acct:c", 7, 3, 60_000, at(60))
            .await
            .unwrap(),
        None,
        "the first failure left the window at 60 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_bucket_allows_its_burst_then_its_rate() {
    let Some((_server, state)) = redis().await else {
        return;
    };
    let t = |ms: u64| UnixMillis(10_000 + ms);
    for _ in 0..3 {
        assert_eq!(state.take_token("u:1", 2, 3, t(0)).await.unwrap(), None);
    }
    assert_eq!(
        state.take_token("u:1", 2, 3, t(0)).await.unwrap(),
        Some(500),
        "one token every 500 ms"
    );
    assert_eq!(state.take_token("u:2", 2, 3, t(0)).await.unwrap(), None);
    assert!(
        state
            .take_token("u:1", 2, 3, t(499))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(state.take_token("u:1", 2, 3, t(500)).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_is_gone_is_a_typed_unavailable() {
    let Some((server, state)) = redis().await else {
        return;
    };
    drop(server);
    let error = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        state.take_token("u:1", 1, 1, UnixMillis(1)),
    )
    .await
    .expect("a dead Redis answers within the timeout")
    .unwrap_err();
    assert!(matches!(error, StorageError::Unavailable(_)), "{error:?}");
}
