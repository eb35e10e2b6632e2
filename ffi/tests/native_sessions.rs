//! The native API's session handling against an in-process server, from
//! Rust: what the Kotlin and Python tests check through their bindings,
//! repeated here many times, since the task that saves sessions races the
//! calls that make them.

use std::sync::{Arc, Mutex};

use souk_ffi::native::{ClientOptions, SessionStore, SoukClient, SoukError};
use souk_server::{Config, Server};
use souk_wire::api::SessionGrant;

/// What an app does with its keychain, in memory.
#[derive(Default)]
struct MemoryStore {
    session: Mutex<Option<SessionGrant>>,
    saves: Mutex<Vec<Option<SessionGrant>>>,
}

impl MemoryStore {
    fn holding(session: SessionGrant) -> Arc<MemoryStore> {
        let store = MemoryStore::default();
        *store.session.lock().unwrap() = Some(session);
        Arc::new(store)
    }

    fn saves(&self) -> Vec<Option<SessionGrant>> {
        self.saves.lock().unwrap().clone()
    }
}

impl SessionStore for MemoryStore {
    fn load(&self) -> Result<Option<SessionGrant>, SoukError> {
        Ok(self.session.lock().unwrap().clone())
    }

    fn save(&self, session: Option<SessionGrant>) -> Result<(), SoukError> {
        *self.session.lock().unwrap() = session.clone();
        self.saves.lock().unwrap().push(session);
        Ok(())
    }
}

fn start_server(work: &std::path::Path) -> Server {
    Server::start(&Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: None,
        shards: 2,
        data_dir: work.join("data"),
        demo_products: 10,
        pin_threads: false,
        ..Config::default()
    })
    .unwrap()
}

fn options(server: &Server) -> ClientOptions {
    ClientOptions {
        server: server.local_addr().to_string(),
        server_name: None,
        pinned_sha256: Some(hex::encode(server.fingerprint())),
        ca_pem: None,
        request_timeout_ms: 5000,
        connect_timeout_ms: 5000,
        retry_attempts: 4,
        client_name: Some("native-sessions-test".into()),
    }
}

#[test]
fn each_renewal_reaches_the_store_before_connect_returns_and_nothing_is_cleared_on_the_way() {
    let work = tempfile::tempdir().unwrap();
    let server = start_server(work.path());
    let options = options(&server);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let first = SoukClient::connect(options.clone(), None).await.unwrap();
        let mut grant = first
            .register(
                "rounds@example.org".into(),
                "a long enough password".into(),
                None,
            )
            .await
            .unwrap();
        for round in 0..20 {
            let expired = SessionGrant {
                access_token: "expired".into(),
                ..grant.clone()
            };
            let store = MemoryStore::holding(expired);
            let client = SoukClient::connect(options.clone(), Some(store.clone()))
                .await
                .unwrap();
            let saves = store.saves();
            assert_eq!(saves.len(), 1, "round {round}: {saves:?}");
            let renewed = saves[0]
                .clone()
                .expect("the renewed session, not a sign-out");
            assert_ne!(renewed.refresh_token, grant.refresh_token, "round {round}");
            assert_eq!(client.session(), Some(renewed.clone()));
            assert_eq!(client.profile().await.unwrap().email, "rounds@example.org");
            grant = renewed;
        }

        // Signing out clears the store before the call returns.
        let store = MemoryStore::holding(grant);
        let client = SoukClient::connect(options.clone(), Some(store.clone()))
            .await
            .unwrap();
        client.logout().await.unwrap();
        assert_eq!(store.saves(), vec![None]);
        assert_eq!(*store.session.lock().unwrap(), None);
    });
}

#[test]
fn a_store_that_cannot_read_fails_connect_with_its_reason() {
    struct Locked;
    impl SessionStore for Locked {
        fn load(&self) -> Result<Option<SessionGrant>, SoukError> {
            Err(SoukError::SessionStorage {
                detail: "keychain locked".into(),
            })
        }
        fn save(&self, _: Option<SessionGrant>) -> Result<(), SoukError> {
            Ok(())
        }
    }
    let work = tempfile::tempdir().unwrap();
    let server = start_server(work.path());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = runtime.block_on(SoukClient::connect(
        options(&server),
        Some(Arc::new(Locked)),
    ));
    assert!(
        matches!(&result, Err(SoukError::SessionStorage { detail }) if detail == "keychain locked"),
        "{result:?}"
    );
}
