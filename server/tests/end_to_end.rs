//! A real server (two shards, ephemeral port, its own data directory) called
//! through the real client SDK over QUIC on loopback.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use souk_client::api::{
    BrowseCategory, BrowseSort, CategoryId, ErrorStatus, ProductId, RestockMode, StockStatus,
};
use souk_client::{Client, ClientConfig, ClientError, RetryPolicy, Trust};
use souk_server::{Config, Server};
use souk_storage::demo;
use souk_wire::limits;
use support::{Running, client_config, connect, sign_in_admin, start_with_admin};

mod support;

/// Two shards over `data_dir` with 120 demo products.
fn config(data_dir: &std::path::Path) -> Config {
    support::config(data_dir, 120)
}

/// A server with an admin account on an ephemeral port.
fn start() -> Running {
    Running::start(config)
}

/// Starts a stopped server again over `data`, on the `addr` it had.
fn restart(data: &std::path::Path, addr: SocketAddr) -> Server {
    Server::start(&Config {
        listen: addr,
        ..config(data)
    })
    .unwrap()
}

#[tokio::test]
async fn hello_browse_and_product_detail() {
    let running = start();
    let client = connect(&running.server).await;

    let hello = client.hello().await.unwrap();
    assert_eq!(hello.shard_count, 2);
    assert!(hello.shard < 2);

    let categories = client.list_categories().await.unwrap();
    assert_eq!(categories.len(), 10);
    let shoes = categories
        .iter()
        .find(|c| c.id.as_str() == "shoes")
        .unwrap();

    let page = client
        .browse(BrowseCategory {
            category_id: Some(shoes.id.clone()),
            sort: BrowseSort::PriceAsc,
            limit: 5,
            ..BrowseCategory::default()
        })
        .await
        .unwrap();
    assert_eq!(page.total, shoes.product_count);
    assert_eq!(page.products.len(), 5);
    assert!(page.next_cursor.is_some());
    assert!(
        page.products
            .windows(2)
            .all(|w| w[0].price_from.minor_units <= w[1].price_from.minor_units)
    );

    let product = client.get_product(&page.products[0].id).await.unwrap();
    assert_eq!(product.id, page.products[0].id);
    assert!(product.variants.len() >= 2, "shoes come in sizes");
    for variant in &product.variants {
        assert_ne!(
            variant.stock_status,
            StockStatus::Unknown,
            "detail reads the owners' counters"
        );
    }

    let missing = client
        .get_product(&ProductId::new("NO-SUCH").unwrap())
        .await;
    assert_eq!(missing.unwrap_err().status(), Some(ErrorStatus::NotFound));
    let missing = client
        .browse(BrowseCategory {
            category_id: Some(CategoryId::new("nope").unwrap()),
            limit: 5,
            ..BrowseCategory::default()
        })
        .await;
    assert_eq!(missing.unwrap_err().status(), Some(ErrorStatus::NotFound));

    client.close();
    running.server.shutdown().unwrap();
}

#[tokio::test]
async fn restock_lands_on_the_owner_and_every_shard_sees_it() {
    let running = start();
    let admin = connect(&running.server).await;
    let product_id = demo::product_id(7);
    let product = admin.get_product(&product_id).await.unwrap();
    let sku = product.variants[0].sku.clone();

    let refused = admin.admin_restock(&sku, 3, RestockMode::Set).await;
    assert_eq!(
        refused.unwrap_err().status(),
        Some(ErrorStatus::Unauthenticated)
    );
    sign_in_admin(&admin).await;
    let level = admin
        .admin_restock(&sku, 3, RestockMode::Set)
        .await
        .unwrap();
    assert_eq!((level.on_hand, level.available), (3, 3));

    // Connections land on both shards; whichever shard serves the read asks
    // the owner, so every one of them sees the new level.
    let mut shards_seen = HashSet::new();
    for _ in 0..12 {
        let client = connect(&running.server).await;
        shards_seen.insert(client.hello().await.unwrap().shard);
        let product = client.get_product(&product_id).await.unwrap();
        let variant = product.variants.iter().find(|v| v.sku == sku).unwrap();
        assert_eq!(variant.available, 3);
        assert_eq!(variant.stock_status, StockStatus::LowStock);
        client.close();
    }
    assert_eq!(
        shards_seen.len(),
        2,
        "the kernel spread connections over both shards"
    );
    let served: u64 = running.server.stats().total(|s| &s.cross_shard_served);
    assert!(served > 0, "some reads crossed shards");
    running.server.shutdown().unwrap();
}

#[tokio::test]
async fn many_concurrent_requests_share_one_connection() {
    let running = start();
    let client = connect(&running.server).await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..300 {
        let client = client.clone();
        tasks.spawn(async move { client.get_product(&demo::product_id(n % 120)).await });
    }
    let mut ok = 0;
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
        ok += 1;
    }
    assert_eq!(ok, 300);
    running.server.shutdown().unwrap();
}

/// Opens a bare QUIC connection to send bytes the SDK would never send.
async fn raw_connection(server: &Server) -> quinn::Connection {
    let config = souk_client::quic_config(&client_config(server)).unwrap();
    let mut endpoint = quinn::Endpoint::client("0.0.0.0:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(config);
    endpoint
        .connect(server.local_addr(), "localhost")
        .unwrap()
        .await
        .unwrap()
}

/// Sends `bytes` on a new stream and returns the decoded reply.
async fn raw_exchange(connection: &quinn::Connection, bytes: &[u8]) -> souk_wire::api::Response {
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    // The server may stop reading a refused frame; that is expected.
    let _ = send.write_all(bytes).await;
    let _ = send.finish();
    let reply = recv
        .read_to_end(limits::RESPONSE_BYTES_MAX + 4)
        .await
        .unwrap();
    souk_wire::codec::decode_response(&reply).unwrap()
}

fn list_categories_frame() -> Vec<u8> {
    let request = souk_wire::api::Request {
        idempotency_key: None,
        body: souk_wire::api::RequestBody::ListCategories,
    };
    souk_wire::codec::Encoder::new()
        .request(&request)
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn streams_that_end_with_their_frame_cost_no_stop_sending_either_way() {
    let running = start();
    let connection = raw_connection(&running.server).await;
    let frame = list_categories_frame();
    for _ in 0..20 {
        // Written and finished before this single-threaded test yields to
        // the connection driver, so the FIN travels with the frame.
        raw_exchange(&connection, &frame).await.unwrap();
    }
    // The server drops each stream once the client acknowledged the reply
    // (25 ms at most); a stream dropped before its FIN was seen would tell
    // the client STOP_SENDING, a packet per request for nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = connection.stats();
    assert_eq!(stats.frame_rx.stop_sending, 0, "{stats:?}");
    assert!(stats.frame_rx.stream >= 20, "{stats:?}");

    // The SDK, in turn, sees the end of each reply before it lets go.
    let client = connect(&running.server).await;
    for n in 0..20 {
        client.get_product(&demo::product_id(n)).await.unwrap();
    }
    let stats = client.transport_stats().await.expect("connected");
    assert_eq!(stats.frame_tx.stop_sending, 0, "{stats:?}");
    assert!(stats.frame_tx.stream >= 21, "{stats:?}");
    running.server.shutdown().unwrap();
}

#[tokio::test]
async fn malformed_and_oversized_frames_get_typed_errors_and_the_connection_lives_on() {
    let running = start();
    let connection = raw_connection(&running.server).await;

    // A header announcing more than the limit: refused before any allocation.
    let mut oversized = ((limits::REQUEST_BYTES_MAX + 1) as u32)
        .to_le_bytes()
        .to_vec();
    oversized.extend(std::iter::repeat_n(0xAB, 2048));
    let error = raw_exchange(&connection, &oversized).await.unwrap_err();
    assert_eq!(error.status, ErrorStatus::BadRequest);
    assert!(error.message.contains("exceeds"), "{}", error.message);

    // A correct header over garbage: the verifier refuses it.
    let garbage = [0x11u8; 64];
    let mut framed = (garbage.len() as u32).to_le_bytes().to_vec();
    framed.extend_from_slice(&garbage);
    let error = raw_exchange(&connection, &framed).await.unwrap_err();
    assert_eq!(error.status, ErrorStatus::BadRequest);

    // A zero-length frame.
    let error = raw_exchange(&connection, &0u32.to_le_bytes())
        .await
        .unwrap_err();
    assert_eq!(error.status, ErrorStatus::BadRequest);

    // Streams that end before their frame does: empty, within the
    // header, within the body. Each is told why, not silently closed.
    let mut short = 100u32.to_le_bytes().to_vec();
    short.extend_from_slice(&[0u8; 10]);
    for (bytes, read) in [(&[][..], 0), (&[7u8, 0][..], 2), (&short[..], 10)] {
        let error = raw_exchange(&connection, bytes).await.unwrap_err();
        assert_eq!(error.status, ErrorStatus::BadRequest);
        let ended = format!("ended after {read} bytes");
        assert!(error.message.contains(&ended), "{}", error.message);
    }

    // The same connection still serves a valid request.
    let frame = list_categories_frame();
    let reply = raw_exchange(&connection, &frame).await.unwrap();
    assert!(matches!(
        reply,
        souk_wire::api::ResponseBody::CategoryList(_)
    ));
    assert!(connection.close_reason().is_none());
    assert_eq!(running.server.stats().total(|s| &s.bad_frames), 6);

    // And so does the server, for everyone else.
    connect(&running.server).await.hello().await.unwrap();
    running.server.shutdown().unwrap();
}

#[tokio::test]
async fn a_pinned_client_refuses_a_server_with_another_certificate() {
    let running = start();
    let mut config = client_config(&running.server);
    config.trust = Trust::Fingerprint([7u8; 32]);
    config.retry = RetryPolicy::none();
    let error = Client::connect(config).await.unwrap_err();
    assert!(matches!(error, ClientError::Transport(_)), "{error:?}");
    running.server.shutdown().unwrap();
}

#[tokio::test]
async fn the_client_reconnects_and_rebinds_its_identity_after_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let _keyspace = support::Keyspace::of(data.path());
    let server = start_with_admin(&config(data.path()));
    let addr = server.local_addr();
    let client = connect(&server).await;
    sign_in_admin(&client).await;
    server.shutdown().unwrap();

    // Same address and data directory: same certificate, so the pin holds.
    let server = restart(data.path(), addr);
    let sku = client
        .get_product(&demo::product_id(1))
        .await
        .expect("reconnects by itself")
        .variants[0]
        .sku
        .clone();
    let level = client.admin_restock(&sku, 9, RestockMode::Set).await;
    assert_eq!(level.unwrap().on_hand, 9, "the admin identity was re-bound");
    server.shutdown().unwrap();
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_then_refuses() {
    let running = start();
    let mut config = client_config(&running.server);
    config.retry = RetryPolicy::none();
    config.connect_timeout = Duration::from_secs(1);
    let client = Client::connect(config).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..50 {
        let client = client.clone();
        tasks.spawn(async move { client.get_product(&demo::product_id(n)).await });
    }
    // Stop the server once requests are arriving, while others still are.
    let stats = running.server.stats().clone();
    while stats.total(|s| &s.requests) < 10 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let stopping = tokio::task::spawn_blocking(move || running.server.shutdown());
    let mut outcomes = Vec::new();
    while let Some(result) = tasks.join_next().await {
        outcomes.push(result.unwrap());
    }
    stopping.await.unwrap().unwrap();
    let served = stats.total(|s| &s.requests) as usize;
    let answered = outcomes.iter().filter(|o| o.is_ok()).count();
    for outcome in &outcomes {
        match outcome {
            Ok(_) => {}
            // A request the server had not taken before it stopped
            // accepting fails at once with the connection, never with a
            // wrong answer and never by timing out.
            Err(ClientError::Transport(_)) => {}
            Err(other) => panic!("unexpected failure {other:?}"),
        }
    }
    // Every request the server took was answered before it closed.
    assert!(
        answered >= served - 1,
        "{answered} answered of {served} taken"
    );
}

#[tokio::test]
async fn connections_over_the_shard_limit_are_refused_as_busy() {
    let data = tempfile::tempdir().unwrap();
    let _keyspace = support::Keyspace::of(data.path());
    let mut config = config(data.path());
    config.shards = 1;
    config.max_connections_per_shard = 2;
    let server = Server::start(&config).unwrap();
    let first = connect(&server).await;
    let second = connect(&server).await;
    let mut third = client_config(&server);
    third.retry = RetryPolicy::none();
    let refused = Client::connect(third).await.unwrap_err();
    assert_eq!(refused.status(), Some(ErrorStatus::Busy), "{refused:?}");
    // The admitted connections are unaffected.
    first.hello().await.unwrap();
    second.hello().await.unwrap();
    assert_eq!(server.stats().total(|s| &s.connections_refused), 1);
    server.shutdown().unwrap();
}

#[tokio::test]
async fn a_ca_signed_certificate_from_files_is_trusted_through_the_ca() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let data = tempfile::tempdir().unwrap();
    let _keyspace = support::Keyspace::of(data.path());
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["shop.example".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let cert = data.path().join("server.pem");
    let key = data.path().join("server.key");
    std::fs::write(&cert, server_cert.pem()).unwrap();
    std::fs::write(&key, server_key.serialize_pem()).unwrap();

    let mut config = config(&data.path().join("data"));
    config.tls = souk_server::config::TlsSource::Files { cert, key };
    let server = Server::start(&config).unwrap();
    let mut client = ClientConfig::new(server.local_addr(), Trust::CaPem(ca.pem().into_bytes()));
    client.server_name = "shop.example".into();
    let hello = Client::connect(client.clone())
        .await
        .unwrap()
        .hello()
        .await
        .unwrap();
    assert_eq!(hello.shard_count, 2);

    // The same CA does not vouch for another name.
    client.server_name = "other.example".into();
    client.retry = RetryPolicy::none();
    assert!(Client::connect(client).await.is_err());
    server.shutdown().unwrap();
}

#[tokio::test]
async fn a_connection_survives_address_changes_that_land_on_other_shards() {
    let running = start();
    let config = souk_client::quic_config(&client_config(&running.server)).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(config);
    let connection = endpoint
        .connect(running.server.local_addr(), "localhost")
        .unwrap()
        .await
        .unwrap();
    let request = souk_wire::api::Request {
        idempotency_key: None,
        body: souk_wire::api::RequestBody::GetProduct {
            product_id: demo::product_id(5),
        },
    };
    let frame = souk_wire::codec::Encoder::new()
        .request(&request)
        .unwrap()
        .to_vec();
    // Each rebind is a new source port: a new 4-tuple, which the kernel
    // hashes to either shard's socket. Half the time that is not the shard
    // that owns the connection, and only forwarding keeps it alive.
    for move_number in 0..16 {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        endpoint.rebind(socket).unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), raw_exchange(&connection, &frame))
            .await
            .unwrap_or_else(|_| panic!("no reply after move {move_number}"));
        assert!(
            matches!(reply, Ok(souk_wire::api::ResponseBody::ProductDetail(_))),
            "move {move_number}: {reply:?}"
        );
    }
    assert!(connection.close_reason().is_none());
    let forwarded = running.server.stats().total(|s| &s.datagrams_forwarded);
    assert!(
        forwarded > 0,
        "16 moves never reached the other shard (p = 2^-16)"
    );
    running.server.shutdown().unwrap();
}

#[tokio::test]
async fn the_catalog_is_imported_once_and_restocks_survive_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let _keyspace = support::Keyspace::of(data.path());
    let mut config = config(data.path());
    config.demo_products = 30;
    let server = start_with_admin(&config);
    let admin = connect(&server).await;
    sign_in_admin(&admin).await;
    let product = admin.get_product(&demo::product_id(7)).await.unwrap();
    let sku = product.variants[0].sku.clone();
    admin
        .admin_restock(&sku, 9, RestockMode::Set)
        .await
        .unwrap();
    admin.close();
    server.shutdown().unwrap();

    // A later start finds the catalog imported: a different demo size
    // changes nothing, and the restock was durable.
    config.demo_products = 80;
    let server = Server::start(&config).unwrap();
    let client = connect(&server).await;
    let products: u32 = client
        .list_categories()
        .await
        .unwrap()
        .iter()
        .map(|c| c.product_count)
        .sum();
    assert_eq!(products, 30);
    let product = client.get_product(&demo::product_id(7)).await.unwrap();
    let variant = product.variants.iter().find(|v| v.sku == sku).unwrap();
    assert_eq!(variant.available, 9);
    server.shutdown().unwrap();
}

#[tokio::test]
async fn catalog_replies_are_cached_and_an_admin_change_reaches_every_shard_at_once() {
    let data = tempfile::tempdir().unwrap();
    let _keyspace = support::Keyspace::of(data.path());
    let mut config = config(data.path());
    // Long enough that only the change event can explain a fresh reply.
    config.catalog_cache_ttl = Duration::from_secs(600);
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let server = start_with_admin(&config);
    let admin = connect(&server).await;
    sign_in_admin(&admin).await;
    let id = demo::product_id(3);
    let before = admin.get_product(&id).await.unwrap();
    // Connections on both shards, each reading the product twice.
    let mut clients = Vec::new();
    let mut shards = HashSet::new();
    while shards.len() < 2 {
        let client = connect(&server).await;
        shards.insert(client.hello().await.unwrap().shard);
        assert_eq!(client.get_product(&id).await.unwrap(), before);
        assert_eq!(client.get_product(&id).await.unwrap(), before);
        clients.push(client);
        assert!(clients.len() < 50, "connections never reached both shards");
    }
    let stats = server.stats();
    assert!(stats.total(|s| &s.cache_hits) >= clients.len() as u64);
    assert!(stats.cache_hit_rate() > 0.0);
    let metrics = scrape(server.metrics_addr().unwrap()).await;
    let ratio: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("souk_catalog_cache_hit_ratio "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(ratio > 0.0 && ratio < 1.0, "{metrics}");
    assert!(metrics.contains("souk_catalog_cache_hits_total{shard=\"1\"}"));

    let mut changed = before.clone();
    changed.name = "Renamed by the operator".into();
    changed.variants[0].price.minor_units += 100;
    let stored = admin
        .call(souk_client::api::RequestBody::AdminUpsertProduct(Box::new(
            changed.clone(),
        )))
        .await
        .unwrap();
    assert!(matches!(
        stored,
        souk_client::api::ResponseBody::ProductDetail(_)
    ));
    for client in &clients {
        let seen = client.get_product(&id).await.unwrap();
        assert_eq!(
            seen.name, changed.name,
            "every shard serves the change at once"
        );
        assert_eq!(seen.variants[0].price, changed.variants[0].price);
    }
    // The upsert was a durable write: the embedded store's group commit
    // counts it (a CQL cluster keeps its own metrics).
    if !support::on_cql() {
        let metrics = scrape(server.metrics_addr().unwrap()).await;
        let value = |name: &str| -> f64 {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("{name} missing from\n{metrics}"))
                .parse()
                .unwrap()
        };
        assert!(
            value("souk_store_committed_writes_total") >= 1.0,
            "{metrics}"
        );
        assert!(value("souk_store_fsync_seconds_count") >= 1.0, "{metrics}");
        assert_eq!(value("souk_store_healthy"), 1.0);
    }
    let customer = connect(&server).await;
    let refused = customer
        .call(souk_client::api::RequestBody::AdminUpsertProduct(Box::new(
            changed,
        )))
        .await;
    assert_eq!(
        refused.unwrap_err().status(),
        Some(ErrorStatus::Unauthenticated)
    );
    server.shutdown().unwrap();
}

/// `GET /metrics` over plain HTTP/1.1, as a Prometheus scraper sends it.
async fn scrape(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: souk\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// A stolen phone: the owner signs out everywhere from another device.
/// Every connection signed in as the user (on either shard) loses its
/// identity, the other devices' refresh and access tokens are refused,
/// also after a restart, and signing in again works.
#[tokio::test]
async fn signing_out_everywhere_ends_every_session_of_the_user() {
    const EMAIL: &str = "owner@example.org";
    const PASSWORD: &str = "stolen phone password";
    let data = tempfile::tempdir().unwrap();
    let _keyspace = support::Keyspace::of(data.path());
    let server = start_with_admin(&config(data.path()));
    let addr = server.local_addr();
    let laptop = connect(&server).await;
    laptop.register(EMAIL, PASSWORD, None).await.unwrap();
    let phone = connect(&server).await;
    let stolen = phone.login(EMAIL, PASSWORD, None).await.unwrap();
    // Connections signed in with the phone's access token, on both shards.
    let mut open = Vec::new();
    let mut shards_seen = HashSet::new();
    while shards_seen.len() < 2 && open.len() < 24 {
        let client = connect(&server).await;
        shards_seen.insert(client.hello().await.unwrap().shard);
        client.authenticate(&stolen.access_token).await.unwrap();
        client.profile().await.unwrap();
        open.push(client);
    }
    assert_eq!(shards_seen.len(), 2, "signed-in connections on both shards");
    let bystander = connect(&server).await;
    bystander
        .register("bystander@example.org", PASSWORD, None)
        .await
        .unwrap();

    laptop.logout_everywhere().await.unwrap();

    let refused = laptop.profile().await.unwrap_err();
    assert_eq!(
        refused.status(),
        Some(ErrorStatus::Unauthenticated),
        "the device that signed out is signed out too"
    );
    assert!(refused.to_string().contains("signed out"), "{refused}");
    for client in open.iter().chain([&phone]) {
        let refused = client.profile().await.unwrap_err();
        assert_eq!(refused.status(), Some(ErrorStatus::Unauthenticated));
        assert!(refused.to_string().contains("signed out"), "{refused}");
    }
    let refused = connect(&server).await.refresh(&stolen.refresh_token).await;
    let refused = refused.unwrap_err();
    assert_eq!(refused.status(), Some(ErrorStatus::Unauthenticated));
    assert!(refused.to_string().contains("signed out"), "{refused}");
    let refused = connect(&server)
        .await
        .authenticate(&stolen.access_token)
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(ErrorStatus::Unauthenticated));
    bystander
        .profile()
        .await
        .expect("other users stay signed in");

    // Signing in again starts a session the cutoff does not touch.
    let fresh = phone.login(EMAIL, PASSWORD, None).await.unwrap();
    assert_eq!(phone.profile().await.unwrap().email, EMAIL);
    server.shutdown().unwrap();

    // The cutoff is durable: after a restart the old tokens stay refused.
    let server = restart(data.path(), addr);
    let client = connect(&server).await;
    let refused = client.authenticate(&stolen.access_token).await.unwrap_err();
    assert_eq!(refused.status(), Some(ErrorStatus::Unauthenticated));
    let refused = client.refresh(&stolen.refresh_token).await.unwrap_err();
    assert_eq!(refused.status(), Some(ErrorStatus::Unauthenticated));
    client.authenticate(&fresh.access_token).await.unwrap();
    assert_eq!(client.profile().await.unwrap().email, EMAIL);
    client.refresh(&fresh.refresh_token).await.unwrap();
    server.shutdown().unwrap();
}
