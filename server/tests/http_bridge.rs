//! The HTTP bridge as a browser and a script use it: the same shop as over
//! QUIC, with cookies, CSRF and CORS, problem+json errors and ETags.

mod support;

use std::time::Duration;

use hyper::{Method, StatusCode};
use serde_json::json;
use souk_server::Config;
use support::{ADMIN_EMAIL, ADMIN_PASSWORD, Http, Reply, Running};

fn start(tune: impl FnOnce(&mut Config)) -> Running {
    Running::start(|data| {
        let mut config = support::config(data, 40);
        config.http_allow_origins = vec!["https://shop.example".into()];
        tune(&mut config);
        config
    })
}

fn http_addr(running: &Running) -> std::net::SocketAddr {
    running.server.http_addr().expect("the bridge is on")
}

/// The first variant of a product that has stock, with its product id.
async fn some_sku(http: &mut Http, nth: usize) -> (String, String) {
    let page = http.get("/v1/products?limit=20").await.json();
    let product = page["products"][nth]["id"].as_str().unwrap().to_owned();
    let detail = http.get(&format!("/v1/products/{product}")).await.json();
    let sku = detail["variants"][0]["sku"].as_str().unwrap().to_owned();
    (product, sku)
}

async fn register(http: &mut Http, email: &str) -> Reply {
    http.post(
        "/v1/account/register",
        json!({"email": email, "password": support::PASSWORD}),
    )
    .await
}

async fn checkout(http: &mut Http, key: &str) -> Reply {
    http.send(
        Method::POST,
        "/v1/checkout",
        &[("idempotency-key", key)],
        Some(json!({"payment_method_token": "pm_card_visa"})),
    )
    .await
}

async fn wait_for_status(http: &mut Http, order: &str, status: &str) -> serde_json::Value {
    for _ in 0..200 {
        let reply = http.get(&format!("/v1/orders/{order}")).await;
        assert_eq!(reply.status, StatusCode::OK);
        let order = reply.json();
        if order["status"] == status {
            return order;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("order {order} never became {status}");
}

#[tokio::test]
async fn a_guest_fills_a_cart_registers_and_checks_out() {
    let running = start(|_| {});
    let mut browser = Http::browser(http_addr(&running));
    let (_, first) = some_sku(&mut browser, 0).await;
    let (_, second) = some_sku(&mut browser, 1).await;

    let added = browser
        .post("/v1/cart/lines", json!({"sku": first, "quantity": 2}))
        .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.json());
    assert!(browser.cookies.contains_key("souk_device"));
    assert_eq!(added.header("cache-control"), Some("private, no-store"));
    browser
        .post("/v1/cart/lines", json!({"sku": second, "quantity": 1}))
        .await;

    let session = register(&mut browser, "guest@shop.example").await;
    assert_eq!(session.status, StatusCode::CREATED, "{}", session.json());
    let cookies: Vec<_> = session.headers.get_all("set-cookie").iter().collect();
    let refresh = cookies
        .iter()
        .find(|c| c.to_str().unwrap().starts_with("souk_refresh="))
        .unwrap()
        .to_str()
        .unwrap();
    assert!(refresh.contains("Path=/v1/account/session"), "{refresh}");
    assert!(refresh.contains("HttpOnly") && refresh.contains("SameSite=Strict"));
    assert!(
        session.json().get("refresh_token").is_none(),
        "the refresh token is only a cookie"
    );

    let cart = browser.get("/v1/cart").await.json();
    assert_eq!(cart["item_count"], 3, "the guest cart moved in: {cart}");

    let missing_key = browser
        .post(
            "/v1/checkout",
            json!({"payment_method_token": "pm_card_visa"}),
        )
        .await;
    assert_eq!(missing_key.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing_key.code(), "BadRequest");

    let placed = checkout(&mut browser, "9a1c7e04-first").await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.json());
    let order = placed.json()["id"].as_str().unwrap().to_owned();
    let retried = checkout(&mut browser, "9a1c7e04-first").await;
    assert_eq!(
        retried.json()["id"],
        order,
        "a retry with the same key returns the first order"
    );

    let paid = wait_for_status(&mut browser, &order, "paid").await;
    assert_eq!(paid["payment_status"], "captured");
    let payment = browser.get(&format!("/v1/orders/{order}/payment")).await;
    assert_eq!(payment.json()["status"], "captured");
    let orders = browser.get("/v1/orders").await.json();
    assert_eq!(orders["orders"][0]["id"], order);
    assert_eq!(browser.get("/v1/cart").await.json()["item_count"], 0);
    running.server.shutdown().unwrap();
}

#[tokio::test]
async fn catalog_reads_carry_etags_and_revalidate_with_304() {
    let running = start(|_| {});
    let mut script = Http::script(http_addr(&running));
    let first = script.get("/v1/products?limit=5&sort=price_asc").await;
    assert_eq!(first.status, StatusCode::OK);
    let etag = first.header("etag").unwrap().to_owned();
    let cache_control = first.header("cache-control").unwrap();
    assert!(
        cache_control.starts_with("public, max-age="),
        "{cache_control}"
    );
    assert!(cache_control.contains("stale-while-revalidate"));
    let prices: Vec<i64> = first.json()["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["price_from"]["minor_units"].as_i64().unwrap())
        .collect();
    assert!(prices.windows(2).all(|w| w[0] <= w[1]), "{prices:?}");

    let again = script
        .send(
            Method::GET,
            "/v1/products?limit=5&sort=price_asc",
            &[("if-none-match", &etag)],
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), Some(etag.as_str()));

    let stale = script
        .send(
            Method::GET,
            "/v1/products?limit=5&sort=price_asc",
            &[("if-none-match", "\"0000\"")],
            None,
        )
        .await;
    assert_eq!(stale.status, StatusCode::OK);

    // Pages follow the cursor to the end.
    let mut seen = 0;
    let mut path = "/v1/products?limit=15".to_owned();
    loop {
        let page = script.get(&path).await.json();
        seen += page["products"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/products?limit=15&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, 40);
    running.server.shutdown().unwrap();
}

#[tokio::test]
async fn bad_requests_get_typed_problems() {
    let running = start(|_| {});
    let addr = http_addr(&running);
    let mut script = Http::script(addr);
    let (_, sku) = some_sku(&mut script, 0).await;

    let malformed = script
        .post("/v1/cart/lines", json!({"sku": sku, "quantity": "two"}))
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.code(), "BadRequest");
    let detail = malformed.json()["detail"].as_str().unwrap().to_owned();
    assert!(detail.starts_with("quantity:"), "{detail}");

    let zero = script
        .post("/v1/cart/lines", json!({"sku": sku, "quantity": 0}))
        .await;
    assert_eq!(zero.code(), "BadRequest", "the wire decoder's bound holds");

    let unknown = script.get("/v1/products/NO-SUCH-PRODUCT").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.code(), "NotFound");
    assert_eq!(
        script.get("/v1/nothing-here").await.status,
        StatusCode::NOT_FOUND
    );
    // The cart write above gave this script a device cookie, which would
    // make a change without an Origin a CSRF refusal.
    script.cookies.clear();
    let wrong_method = script
        .send(Method::DELETE, "/v1/categories", &[], None)
        .await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);

    let huge = json!({"sku": sku, "quantity": 1, "pad": "x".repeat(70 * 1024)});
    let too_large = script.post("/v1/cart/lines", huge).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);

    let form = script
        .send(
            Method::POST,
            "/v1/account/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            None,
        )
        .await;
    assert_eq!(form.status, StatusCode::BAD_REQUEST, "an empty body");
    let bad_limit = script.get("/v1/products?limit=0").await;
    assert_eq!(bad_limit.status, StatusCode::BAD_REQUEST);

    let anonymous = script.get("/v1/orders").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.code(), "Unauthenticated");
    script.bearer = Some("not-a-token".into());
    assert_eq!(
        script.get("/v1/cart").await.status,
        StatusCode::UNAUTHORIZED,
        "a token that does not verify is refused, not ignored"
    );
    running.server.shutdown().unwrap();
}

#[tokio::test]
async fn stock_runs_out_as_409_and_limits_as_429() {
    let running = start(|config| config.rate_cart_writes = 3);
    let addr = http_addr(&running);
    let mut admin = Http::script(addr);
    let signed_in = admin
        .post(
            "/v1/account/login",
            json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}),
        )
        .await;
    admin.bearer = Some(
        signed_in.json()["access_token"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    admin.cookies.clear();
    let (product, sku) = some_sku(&mut admin, 2).await;
    let restocked = admin
        .post(
            &format!("/v1/admin/stock/{sku}"),
            json!({"quantity": 1, "mode": "set"}),
        )
        .await;
    assert_eq!(restocked.status, StatusCode::OK, "{}", restocked.json());
    assert_eq!(restocked.json()["available"], 1);

    let mut buyer = Http::browser(addr);
    register(&mut buyer, "buyer@shop.example").await;
    let too_many = buyer
        .post("/v1/cart/lines", json!({"sku": sku, "quantity": 2}))
        .await;
    assert_eq!(too_many.status, StatusCode::OK, "carts do not reserve");
    let refused = checkout(&mut buyer, "sold-out-1").await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.code(), "InsufficientStock");

    // A customer (not an admin) may not restock.
    let forbidden = buyer
        .post(
            &format!("/v1/admin/stock/{sku}"),
            json!({"quantity": 5, "mode": "add"}),
        )
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);

    let detail = buyer.get(&format!("/v1/products/{product}")).await.json();
    assert!(
        detail["variants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["sku"] == sku)
    );

    // Three cart writes a second, in bursts of six; beyond, the guest is
    // told when to come back.
    let mut guest = Http::browser(addr);
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..12 {
        let reply = guest
            .post("/v1/cart/lines", json!({"sku": sku, "quantity": 1}))
            .await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(reply.code(), "LimitExceeded");
            retry_after = reply.header("retry-after").map(str::to_owned);
        }
        statuses.push(reply.status.as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    let seconds: u32 = retry_after.unwrap().parse().unwrap();
    assert!(seconds >= 1);
    running.server.shutdown().unwrap();
}

#[tokio::test]
async fn cookies_cannot_be_ridden_from_another_origin() {
    let running = start(|_| {});
    let addr = http_addr(&running);
    let mut browser = Http::browser(addr);
    register(&mut browser, "victim@shop.example").await;
    let (_, sku) = some_sku(&mut browser, 0).await;

    browser.origin = Some("https://evil.example".into());
    let forged = browser
        .post("/v1/cart/lines", json!({"sku": sku, "quantity": 1}))
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(forged.code(), "Forbidden");
    browser.origin = None;
    let no_origin = browser
        .post("/v1/cart/lines", json!({"sku": sku, "quantity": 1}))
        .await;
    assert_eq!(no_origin.status, StatusCode::FORBIDDEN);
    // Reads are not changes.
    assert_eq!(browser.get("/v1/cart").await.status, StatusCode::OK);
    // The configured shop origin may, with CORS.
    browser.origin = Some("https://shop.example".into());
    let allowed = browser
        .post("/v1/cart/lines", json!({"sku": sku, "quantity": 1}))
        .await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    assert_eq!(
        allowed.header("access-control-allow-credentials"),
        Some("true")
    );

    let preflight = browser
        .send(
            Method::OPTIONS,
            "/v1/cart/lines",
            &[("access-control-request-method", "POST")],
            None,
        )
        .await;
    assert_eq!(preflight.status, StatusCode::NO_CONTENT);
    assert!(
        preflight
            .header("access-control-allow-headers")
            .unwrap()
            .contains("idempotency-key")
    );
    browser.origin = Some("https://evil.example".into());
    let refused = browser
        .send(Method::OPTIONS, "/v1/cart/lines", &[], None)
        .await;
    assert_eq!(refused.header("access-control-allow-origin"), None);

    for header in [
        "x-content-type-options",
        "content-security-policy",
        "x-frame-options",
    ] {
        assert!(refused.header(header).is_some(), "{header} missing");
    }
    running.server.shutdown().unwrap();
}

#[tokio::test]
async fn sessions_refresh_and_sign_out() {
    let running = start(|_| {});
    let addr = http_addr(&running);
    let mut browser = Http::browser(addr);
    register(&mut browser, "sessions@shop.example").await;
    let first_refresh = browser.cookies["souk_refresh"].clone();
    let refreshed = browser
        .send(Method::POST, "/v1/account/session/refresh", &[], None)
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.json());
    assert_ne!(browser.cookies["souk_refresh"], first_refresh, "rotated");
    let profile = browser.get("/v1/account/profile").await.json();
    assert_eq!(profile["email"], "sessions@shop.example");

    let changed = browser
        .send(
            Method::PATCH,
            "/v1/account/profile",
            &[],
            Some(json!({"name": "Ada"})),
        )
        .await;
    assert_eq!(changed.json()["name"], "Ada");
    let address = browser
        .post(
            "/v1/account/addresses",
            json!({"name": "Ada", "line1": "1 Main St", "city": "Springfield", "country": "US"}),
        )
        .await;
    assert_eq!(address.status, StatusCode::CREATED, "{}", address.json());
    let id = address.json()["id"].as_str().unwrap().to_owned();
    let listed = browser.get("/v1/account/addresses").await.json();
    assert_eq!(listed["addresses"][0]["id"], id.as_str());
    let deleted = browser
        .send(
            Method::DELETE,
            &format!("/v1/account/addresses/{id}"),
            &[],
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);

    let kept_refresh = browser.cookies["souk_refresh"].clone();
    let out = browser
        .send(Method::POST, "/v1/account/session/logout", &[], None)
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(!browser.cookies.contains_key("souk_access"));
    // The refresh token the browser held is revoked, not just forgotten.
    browser.cookies.insert("souk_refresh".into(), kept_refresh);
    let revoked = browser
        .send(Method::POST, "/v1/account/session/refresh", &[], None)
        .await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED);
    running.server.shutdown().unwrap();
}

#[tokio::test]
async fn operations_endpoints_and_the_document() {
    let running = start(|_| {});
    let mut script = Http::script(http_addr(&running));
    assert_eq!(script.get("/healthz").await.json()["status"], "ok");
    assert_eq!(script.get("/readyz").await.status, StatusCode::OK);
    let document = script.get("/v1/openapi.json").await.json();
    assert_eq!(document["openapi"], "3.1.0");
    let page = script.get("/").await;
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = String::from_utf8(page.body.to_vec()).unwrap();
    let asset = html
        .split('"')
        .find(|s| s.starts_with("/assets/app."))
        .unwrap()
        .to_owned();
    let script_file = script.get(&asset).await;
    assert_eq!(script_file.status, StatusCode::OK);
    assert!(
        script_file
            .header("cache-control")
            .unwrap()
            .contains("immutable")
    );
    assert_eq!(
        script.get("/assets/app.00000000.js").await.status,
        StatusCode::NOT_FOUND
    );
    running.server.shutdown().unwrap();
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let running = start(|_| {});
    let mut stream = tokio::net::TcpStream::connect(http_addr(&running))
        .await
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buffer = Vec::new();
    let closed = tokio::time::timeout(
        souk_server::limits::HTTP_HEADER_TIMEOUT + Duration::from_secs(5),
        stream.read_to_end(&mut buffer),
    )
    .await;
    assert!(
        closed.is_ok(),
        "a request that never ends its headers is cut"
    );
    running.server.shutdown().unwrap();
}

#[test]
fn orders_acknowledged_over_http_survive_sigkill() {
    let data = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let souk = support::Souk::spawn(&["--shards", "2"], data.path(), std::process::Stdio::null());
    let (token, orders) = runtime.block_on(async {
        let mut buyer = Http::browser(souk.http);
        let session = register(&mut buyer, "durable@shop.example").await.json();
        let mut orders = Vec::new();
        for n in 0..5 {
            let (_, sku) = some_sku(&mut buyer, n).await;
            buyer
                .post("/v1/cart/lines", json!({"sku": sku, "quantity": 1}))
                .await;
            let placed = checkout(&mut buyer, &format!("durable-{n}")).await;
            assert_eq!(placed.status, StatusCode::CREATED);
            orders.push(placed.json()["id"].as_str().unwrap().to_owned());
        }
        (session["access_token"].as_str().unwrap().to_owned(), orders)
    });
    // No drain, no flush: the acknowledgement was the durability promise.
    souk.kill();
    let souk = support::Souk::spawn(&["--shards", "2"], data.path(), std::process::Stdio::null());
    runtime.block_on(async {
        let mut buyer = Http::script(souk.http);
        buyer.bearer = Some(token);
        for order in &orders {
            let reply = buyer.get(&format!("/v1/orders/{order}")).await;
            assert_eq!(reply.status, StatusCode::OK, "order {order} was lost");
        }
        let listed = buyer.get("/v1/orders?limit=10").await.json();
        assert_eq!(listed["orders"].as_array().unwrap().len(), orders.len());
    });
    souk.kill();
}

#[test]
fn tls_offers_http2_by_alpn() {
    let Some(curl) = tool("curl") else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let souk = support::Souk::spawn(
        &["--shards", "1", "--http-tls"],
        data.path(),
        std::process::Stdio::null(),
    );
    let url = format!("https://{}/v1/categories", souk.http);
    let output = std::process::Command::new(curl)
        .args(["-sk", "--http2", "-D", "-", "-o", "/dev/null", &url])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&output.stdout).to_lowercase();
    assert!(head.starts_with("http/2 200"), "{head}");
    assert!(head.contains("strict-transport-security"), "{head}");
    let output = std::process::Command::new(curl)
        .args([
            "-sk",
            "--http1.1",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}",
            &url,
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "1.1");
    souk.kill();
}

/// `curl`, or a skip (a failure under `SOUK_REQUIRE_ALL_TESTS`).
fn tool(name: &str) -> Option<&str> {
    let found = std::process::Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(name);
    }
    souk_storage::testing::skip_or_fail(&format!("{name} is not installed"));
    None
}

#[tokio::test]
async fn a_stop_lets_the_request_in_flight_finish() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let running = start(|_| {});
    let addr = http_addr(&running);
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = br#"{"email":"late@shop.example","password":"a long enough password"}"#;
    let head = format!(
        "POST /v1/account/register HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..10]).await.unwrap();
    // The request is in flight (its body half sent) when the stop begins.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let server = running.server;
    let stopping = tokio::task::spawn_blocking(move || server.shutdown());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections while draining"
    );
    stream.write_all(&body[10..]).await.unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
    stopping.await.unwrap().unwrap();
}

/// Failed logins count per client address; behind a trusted proxy the
/// address is the one the proxy forwards, and a client cannot pick its
/// own by writing the header.
#[tokio::test]
async fn failed_logins_count_by_the_forwarded_address_of_a_trusted_proxy() {
    let running = start(|config| {
        config.http_trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    });
    let addr = http_addr(&running);
    let limit = souk_server::limits::LOGIN_FAILURES_PER_ADDRESS;
    let mut proxy = Http::script(addr);
    let attempt = |n: usize| {
        // A new account name each time: the per-account limit stays out.
        json!({"email": format!("nobody{n}@shop.example"), "password": "wrong password"})
    };
    for n in 0..limit {
        let reply = proxy
            .send(
                Method::POST,
                "/v1/account/login",
                &[("x-forwarded-for", "203.0.113.9")],
                Some(attempt(n)),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "attempt {n}");
    }
    let locked = proxy
        .send(
            Method::POST,
            "/v1/account/login",
            &[("x-forwarded-for", "203.0.113.9")],
            Some(attempt(limit)),
        )
        .await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(locked.code(), "LimitExceeded");
    assert!(locked.header("retry-after").is_some());
    // Another client behind the same proxy is not locked out.
    let other = proxy
        .send(
            Method::POST,
            "/v1/account/login",
            &[("x-forwarded-for", "198.51.100.4")],
            Some(attempt(limit + 1)),
        )
        .await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);
    // A client cannot escape by naming an address left of the proxy's.
    let spoofed = proxy
        .send(
            Method::POST,
            "/v1/account/login",
            &[("x-forwarded-for", "192.0.2.77, 203.0.113.9")],
            Some(attempt(limit + 2)),
        )
        .await;
    assert_eq!(spoofed.status, StatusCode::TOO_MANY_REQUESTS);
    running.server.shutdown().unwrap();
}
