//! The accounts the tests sign in with, and the requests and errors several
//! of them build or read, whichever server answers.

use souk_client::api::{Checkout, ErrorStatus};
use souk_client::{Client, ClientError};

/// The admin account the tests' servers are created with.
pub const ADMIN_EMAIL: &str = "admin@example.org";
pub const ADMIN_PASSWORD: &str = "integration test admin password";

/// The password of the customers the tests register.
pub const PASSWORD: &str = "correct horse battery";

/// Signs `client` in as the admin ([`ADMIN_EMAIL`]).
pub async fn sign_in_admin(client: &Client) {
    client
        .login(ADMIN_EMAIL, ADMIN_PASSWORD, None)
        .await
        .unwrap();
}

/// A checkout of the whole cart, paid with the payment method `token`.
pub fn checkout(token: &str) -> Checkout {
    Checkout {
        device_id: None,
        payment_method_token: token.into(),
        shipping_address_id: None,
        expected_total: None,
        lines: Vec::new(),
    }
}

/// The API status of a call expected to fail; panics when it succeeded or
/// failed without one (a transport error).
pub fn status(result: Result<impl std::fmt::Debug, ClientError>) -> ErrorStatus {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(error) => error
            .status()
            .unwrap_or_else(|| panic!("not an API error: {error}")),
    }
}
