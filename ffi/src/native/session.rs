//! The signed-in session, handed to the app's own `SessionStore`.
//!
//! One task per client watches the Rust SDK's session and offers each new
//! one to the store, in order, off the runtime's workers (a keychain can be
//! slow). Calls that sign in or out wait until the store has been offered
//! the session they made, so that the app's store is current when they
//! return. The task ends by itself once the client is gone, after offering
//! the last change: a renewal made a moment before the app dropped the
//! client, or before it cancelled `connect`, still reaches the store.

use std::sync::Arc;
use std::time::Duration;

use souk_client::Client;
use souk_wire::api::SessionGrant;
use tokio::sync::watch;

use super::{RUNTIME, SoukError};

/// How long a call that signs in or out waits for the store to take the
/// new session. Only a `save` that never returns makes it wait this long,
/// such as one that calls back into the client and waits for it.
const SESSION_SAVE_WAIT: Duration = Duration::from_secs(10);

/// Where the app keeps the signed-in session between runs: the platform's
/// keychain or keystore. souk never stores tokens itself.
///
/// `load` is called once, when the client connects; an error fails
/// `connect`, so a store that cannot read (a keychain locked before the
/// first unlock) should answer `None`. `save` is called whenever the
/// session changes: sign-in, each renewal (which rotates the refresh token:
/// the old one stops working) and sign-out, as `None`. Both run on an SDK
/// thread and must not call the client. A failed `save` is the app's to
/// report; the next change is saved again.
#[uniffi::export(with_foreign)]
pub trait SessionStore: Send + Sync {
    fn load(&self) -> Result<Option<SessionGrant>, SoukError>;
    fn save(&self, session: Option<SessionGrant>) -> Result<(), SoukError>;
}

/// The refresh token that tells one session from another; `None` when
/// signed out.
fn refresh_token(session: &Option<SessionGrant>) -> Option<String> {
    session.as_ref().map(|grant| grant.refresh_token.clone())
}

/// Runs the app's code off the runtime's workers.
async fn off_runtime<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, SoukError> + Send + 'static,
) -> Result<T, SoukError> {
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or_else(|join| {
            Err(SoukError::SessionStorage {
                detail: format!("the session store failed: {join}"),
            })
        })
}

/// A client's link to the app's store.
pub(super) struct Sessions {
    client: Client,
    /// The refresh token of the session last offered to the store.
    offered: Arc<watch::Sender<Option<String>>>,
}

impl Sessions {
    /// Loads the saved session and resumes it, and from then on offers the
    /// store every change. A saved session the server refuses is cleared
    /// from the store; one that cannot be resumed for another reason (the
    /// network) stays with the SDK, which renews it at the first call that
    /// needs it.
    pub(super) async fn start(
        client: &Client,
        store: Arc<dyn SessionStore>,
    ) -> Result<Sessions, SoukError> {
        let loaded = {
            let store = Arc::clone(&store);
            off_runtime(move || store.load()).await?
        };
        let sessions = Sessions {
            client: client.clone(),
            offered: Arc::new(watch::Sender::new(refresh_token(&loaded))),
        };
        watch_session(client, store, Arc::clone(&sessions.offered));
        if let Some(grant) = loaded {
            let _ = client.resume(grant).await;
        }
        sessions.settled().await;
        Ok(sessions)
    }

    /// Waits until the store has been offered the session held now.
    pub(super) async fn settled(&self) {
        let mut offered = self.offered.subscribe();
        let current = || refresh_token(&self.client.session_updates().borrow());
        let wait = offered.wait_for(|offered| *offered == current());
        let _ = tokio::time::timeout(SESSION_SAVE_WAIT, wait).await;
    }
}

/// Offers the store each change of the client's session until the client
/// is gone. Subscribed before it is spawned, so no change can slip past;
/// the session held when it subscribes (none yet, before the saved one is
/// resumed) is not a change, so the store is never cleared in between.
fn watch_session(
    client: &Client,
    store: Arc<dyn SessionStore>,
    offered: Arc<watch::Sender<Option<String>>>,
) {
    let mut updates = client.session_updates();
    RUNTIME.spawn(async move {
        // Delivers a change made before the client went, then ends.
        while updates.changed().await.is_ok() {
            let session = updates.borrow_and_update().clone();
            let token = refresh_token(&session);
            if *offered.borrow() != token {
                let store = Arc::clone(&store);
                let _ = off_runtime(move || store.save(session)).await;
                offered.send_replace(token);
            }
        }
    });
}
