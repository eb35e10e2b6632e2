//! A flash sale across three souk processes sharing one CQL cluster (the
//! one `SOUK_SCYLLA_NODES` names), one Redis, and the stock in escrow: 1,000 units,
//! 200 buyers spread over the nodes, one node SIGKILLed mid-sale, fenced
//! and reclaimed by the others once its lease ran out, then restarted.
//! The units in durable orders never exceed 1,000, every acknowledged
//! order is readable from every node, and once every node has stopped
//! cleanly the pool and the sold units make 1,000.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use souk_client::api::{OrderId, OrderStatus, RestockMode, Sku};
use souk_client::{Client, RetryPolicy, new_idempotency_key};
use souk_storage::demo;
use souk_storage::scylla::{ScyllaConfig, ScyllaStore};
use support::{ADMIN_EMAIL, ADMIN_PASSWORD, PASSWORD, Souk, checkout, sign_in_admin};

mod support;

const UNITS: i64 = 1_000;
const BUYERS: usize = 200;
const NAMES: [&str; 3] = ["node-a", "node-b", "node-c"];
/// The node killed mid-sale.
const KILLED: usize = 2;

struct Node {
    config: ScyllaConfig,
    data: tempfile::TempDir,
    /// Where the nodes share refresh tokens and limits, if they do.
    redis: Option<String>,
}

impl Node {
    fn spawn(&self) -> Souk {
        let args = [
            "--shards",
            "2",
            "--demo-products",
            "20",
            "--payment-latency-ms",
            "20",
            "--purchase-limit",
            "0",
            "--rate-checkouts",
            "0",
            "--rate-cart-writes",
            "0",
            "--log",
            "warn",
        ];
        let mut storage = support::scylla_args(&self.config);
        if let Some(url) = &self.redis {
            storage.extend(["--redis".to_owned(), url.clone()]);
        }
        Souk::spawn_on(&args, self.data.path(), Stdio::inherit(), &storage)
    }
}

/// A client of `node`. Connecting is tried a few times: hundreds of
/// clients connect one after another to nodes busy selling, and what the
/// tests check is what the nodes sell, not how fast they admit.
async fn connect(running: &[Option<Souk>], node: usize) -> Client {
    let souk = running[node].as_ref().expect("the node runs");
    let mut config = souk.client_config();
    config.request_timeout = support::REQUEST_TIMEOUT;
    config.retry = RetryPolicy::none();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match Client::connect(config.clone()).await {
            Ok(client) => return client,
            Err(error) if attempt < 5 => {
                eprintln!("connecting to node {node} failed (attempt {attempt}): {error}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => panic!("cannot connect to node {node}: {error}"),
        }
    }
}

/// Stops a node as an operator does (SIGTERM), so it gives back what it
/// did not sell.
fn stop(mut souk: Souk) {
    let term = std::process::Command::new("kill")
        .args(["-TERM", &souk.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = souk.child.wait().unwrap();
    assert!(status.success(), "a clean stop: {status:?}");
}

/// What every buyer did: orders acknowledged (buyer, order, units).
#[derive(Default)]
struct Sale {
    acknowledged: Mutex<Vec<(usize, OrderId, i64)>>,
    units: AtomicI64,
    stop: AtomicBool,
}

/// One buyer on one node: a few units a time until told to stop; gone
/// with its node's process.
async fn buy(client: Client, n: usize, sku: Sku, sale: Arc<Sale>) {
    for round in 0.. {
        if sale.stop.load(Ordering::SeqCst) {
            return;
        }
        let units = 1 + (n + round) % 3;
        match client.update_cart_line(None, &sku, units as u32).await {
            Ok(_) => {}
            // Shown sold out here for now: later.
            Err(error) if error.status().is_some() => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(_) => return,
        }
        match client
            .checkout(checkout("pm_tok_visa"), new_idempotency_key())
            .await
        {
            Ok(order) => {
                sale.acknowledged
                    .lock()
                    .unwrap()
                    .push((n, order.id, units as i64));
                sale.units.fetch_add(units as i64, Ordering::SeqCst);
            }
            Err(error) => match error.status() {
                // Sold out here for now, or the node cannot sell: later.
                Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                None => return,
            },
        }
    }
}

/// Registers `count` buyers, buyer `n` on node `node_of(n)`, then sets
/// them all buying at once; their access tokens, by buyer.
async fn start_buyers(
    running: &[Option<Souk>],
    count: usize,
    node_of: impl Fn(usize) -> usize,
    prefix: &str,
    sku: &Sku,
    sale: &Arc<Sale>,
) -> Vec<String> {
    let (mut tokens, mut buyers) = (Vec::new(), Vec::new());
    for n in 0..count {
        let client = connect(running, node_of(n)).await;
        let grant = client
            .register(&format!("{prefix}{n}@example.org"), PASSWORD, None)
            .await
            .unwrap();
        tokens.push(grant.access_token);
        buyers.push(client);
    }
    for (n, client) in buyers.into_iter().enumerate() {
        tokio::spawn(buy(client, n, sku.clone(), sale.clone()));
    }
    tokens
}

/// Units of `sku` in `orders` that hold stock (sold or awaiting payment).
fn held(orders: &[souk_client::api::Order], sku: &Sku) -> i64 {
    orders
        .iter()
        .filter(|o| !matches!(o.status, OrderStatus::Cancelled | OrderStatus::Expired))
        .flat_map(|o| o.lines.iter())
        .filter(|l| &l.sku == sku)
        .map(|l| i64::from(l.quantity))
        .sum()
}

async fn all_orders(client: &Client) -> Vec<souk_client::api::Order> {
    let mut orders = Vec::new();
    let mut cursor = None;
    loop {
        let page = client.list_orders(cursor, 100).await.unwrap();
        orders.extend(page.orders);
        cursor = page.next_cursor;
        if cursor.is_none() {
            return orders;
        }
    }
}

#[test]
fn a_flash_sale_across_three_nodes_never_oversells() {
    let cluster = tempfile::tempdir().unwrap();
    let Some(configs) = NAMES
        .iter()
        .map(|name| support::cluster_node(cluster.path(), name))
        .collect::<Option<Vec<_>>>()
    else {
        return;
    };
    let _keyspace = support::Keyspace::named(&configs[0]);
    let redis = match souk_storage::testing::RedisServer::start("everysec") {
        Ok(redis) => redis,
        Err(reason) => {
            souk_storage::testing::skip_or_fail(&reason);
            return;
        }
    };
    let nodes: Vec<Node> = configs
        .into_iter()
        .map(|config| Node {
            config,
            data: tempfile::tempdir().unwrap(),
            redis: Some(redis.url()),
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let storage = support::scylla_args(&nodes[0].config);
    let created =
        Souk::create_admin_on(nodes[0].data.path(), ADMIN_EMAIL, ADMIN_PASSWORD, &storage);
    assert!(created.status.success(), "{created:?}");
    let first = nodes[0].spawn();
    let key = souk_server::server::TOKEN_KEY_FILE;
    for node in &nodes[1..] {
        std::fs::copy(nodes[0].data.path().join(key), node.data.path().join(key)).unwrap();
    }
    let mut running: Vec<Option<Souk>> = vec![Some(first)];
    running.extend(nodes[1..].iter().map(|node| Some(node.spawn())));

    let sale = Arc::new(Sale::default());
    let (sku, tokens) = runtime.block_on(async {
        let admin = connect(&running, 0).await;
        sign_in_admin(&admin).await;
        let product = admin.get_product(&demo::product_id(2)).await.unwrap();
        let sku = product.variants[0].sku.clone();
        let level = admin
            .admin_restock(&sku, UNITS, RestockMode::Set)
            .await
            .unwrap();
        assert_eq!(level.available, UNITS);
        let tokens = start_buyers(&running, BUYERS, |n| n % 3, "sale", &sku, &sale).await;
        (sku, tokens)
    });
    let started = Instant::now();

    // Mid-sale, the third node dies.
    while sale.units.load(Ordering::SeqCst) < UNITS / 3 {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the sale stalled at {} units",
            sale.units.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    running[KILLED].take().unwrap().kill();
    let killed_at = Instant::now();
    eprintln!(
        "{} units acknowledged when {} was killed, {} ms into the sale",
        sale.units.load(Ordering::SeqCst),
        NAMES[KILLED],
        started.elapsed().as_millis()
    );

    // The others fence it once its lease has run out, and take back what
    // its durable orders do not hold.
    let observer = {
        let mut config = nodes[0].config.clone();
        config.node = "observer".into();
        runtime.block_on(ScyllaStore::connect(&config)).unwrap()
    };
    let fenced_epoch = loop {
        assert!(
            killed_at.elapsed() < Duration::from_secs(90),
            "never fenced"
        );
        let lease = runtime.block_on(observer.lease(NAMES[KILLED])).unwrap();
        if let Some(lease) = lease.filter(|l| l.until.is_none()) {
            break lease.epoch;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    loop {
        assert!(
            killed_at.elapsed() < Duration::from_secs(120),
            "never reclaimed"
        );
        let escrow = runtime.block_on(observer.escrow(&sku)).unwrap();
        let grant = escrow.grant(NAMES[KILLED]).unwrap();
        if grant.epoch >= fenced_epoch {
            eprintln!(
                "{} fenced and reclaimed {} ms after the kill: it keeps {} units, the pool has {}",
                NAMES[KILLED],
                killed_at.elapsed().as_millis(),
                grant.units,
                escrow.pool
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // Restarted, it rejoins under a new epoch and its buyers come back.
    running[KILLED] = Some(nodes[KILLED].spawn());
    runtime.block_on(async {
        for n in (KILLED..BUYERS).step_by(3) {
            let client = connect(&running, KILLED).await;
            client.authenticate(&tokens[n]).await.unwrap();
            tokio::spawn(buy(client, n, sku.clone(), sale.clone()));
        }
    });
    // The sale goes on until sold out, or nothing sells for a while.
    let (mut last, mut quiet_since) = (sale.units.load(Ordering::SeqCst), Instant::now());
    while sale.units.load(Ordering::SeqCst) < UNITS
        && quiet_since.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(200));
        let now = sale.units.load(Ordering::SeqCst);
        if now != last {
            (last, quiet_since) = (now, Instant::now());
        }
    }
    sale.stop.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(500));
    let acknowledged = std::mem::take(&mut *sale.acknowledged.lock().unwrap());
    let acknowledged_units: i64 = acknowledged.iter().map(|(_, _, units)| units).sum();
    eprintln!(
        "{} orders ({acknowledged_units} units) acknowledged in {} ms",
        acknowledged.len(),
        started.elapsed().as_millis()
    );
    assert!(
        acknowledged_units <= UNITS,
        "{acknowledged_units} units sold of {UNITS}"
    );
    assert!(
        acknowledged_units >= UNITS / 2,
        "the sale sold most units: {acknowledged_units}"
    );

    runtime.block_on(async {
        // Every acknowledged order, from every node.
        let mut by_buyer: HashMap<usize, Vec<OrderId>> = HashMap::new();
        for (n, id, _) in &acknowledged {
            by_buyer.entry(*n).or_default().push(*id);
        }
        for (node, name) in NAMES.iter().enumerate() {
            for (n, ids) in &by_buyer {
                let client = connect(&running, node).await;
                client.authenticate(&tokens[*n]).await.unwrap();
                for id in ids {
                    let order = client.get_order(*id).await;
                    assert!(
                        order.is_ok(),
                        "order {} unreadable on {}: {order:?}",
                        id.0,
                        name
                    );
                }
            }
        }
        // Payments the kill interrupted resume on the restarted node.
        let mut durable = 0;
        for _ in 0..100 {
            let mut orders = Vec::new();
            for (n, token) in tokens.iter().enumerate() {
                let client = connect(&running, n % 3).await;
                client.authenticate(token).await.unwrap();
                orders.extend(all_orders(&client).await);
            }
            durable = held(&orders, &sku);
            assert!(
                durable <= UNITS,
                "{durable} units in durable orders of {UNITS}"
            );
            if orders
                .iter()
                .all(|o| o.status != OrderStatus::PendingPayment)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            durable >= acknowledged_units,
            "{durable} < {acknowledged_units}"
        );

        // Stopped cleanly, every node gives back what it did not sell:
        // the pool and the sold units are the units received.
        for souk in running.iter_mut() {
            stop(souk.take().unwrap());
        }
        let escrow = observer.escrow(&sku).await.unwrap();
        eprintln!("after the sale: {escrow:?}, {durable} units sold");
        assert_eq!(escrow.total(), UNITS, "units conserved: {escrow:?}");
        assert_eq!(
            escrow.pool + durable,
            UNITS,
            "available + sold = received: {escrow:?}"
        );
    });
}

/// A TCP forwarder to the cluster's first node that the test can cut:
/// a node connected through it is cut off from the cluster, alone.
struct Cable {
    addr: std::net::SocketAddr,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<tokio::task::JoinSet<()>>>,
}

impl Cable {
    async fn lay(upstream: String) -> Cable {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<tokio::task::JoinSet<()>>> = Arc::default();
        let (cut_, links_) = (cut.clone(), links.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if cut_.load(Ordering::SeqCst) {
                    continue;
                }
                let upstream = upstream.clone();
                links_.lock().unwrap().spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Cable { addr, cut, links }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.links.lock().unwrap().abort_all();
    }

    fn mend(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// A node cut off from the cluster refuses sales it cannot make durable:
/// every order it acknowledges is stored. Its lease runs out, the others
/// fence it and sell what it held, and once the cable is mended it sells
/// nothing more until restarted. Units are never oversold.
#[test]
fn a_node_cut_off_from_the_cluster_stops_selling_and_never_oversells() {
    const STOCK: i64 = 300;
    let cluster = tempfile::tempdir().unwrap();
    let Some(configs) = NAMES[..2]
        .iter()
        .map(|name| support::cluster_node(cluster.path(), name))
        .collect::<Option<Vec<_>>>()
    else {
        return;
    };
    let _keyspace = support::Keyspace::named(&configs[0]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cable = runtime.block_on(Cable::lay(configs[0].nodes[0].clone()));
    let mut nodes: Vec<Node> = configs
        .into_iter()
        .map(|config| Node {
            config,
            data: tempfile::tempdir().unwrap(),
            redis: None,
        })
        .collect();
    // Node B reaches the cluster only through the cable.
    nodes[1].config.nodes = vec![cable.addr.to_string()];

    let storage = support::scylla_args(&nodes[0].config);
    let created =
        Souk::create_admin_on(nodes[0].data.path(), ADMIN_EMAIL, ADMIN_PASSWORD, &storage);
    assert!(created.status.success(), "{created:?}");
    let mut running = vec![Some(nodes[0].spawn())];
    let key = souk_server::server::TOKEN_KEY_FILE;
    std::fs::copy(
        nodes[0].data.path().join(key),
        nodes[1].data.path().join(key),
    )
    .unwrap();
    running.push(Some(nodes[1].spawn()));

    let sale = Arc::new(Sale::default());
    let (sku, tokens) = runtime.block_on(async {
        let admin = connect(&running, 0).await;
        sign_in_admin(&admin).await;
        let product = admin.get_product(&demo::product_id(3)).await.unwrap();
        let sku = product.variants[0].sku.clone();
        admin
            .admin_restock(&sku, STOCK, RestockMode::Set)
            .await
            .unwrap();
        // Buyers on node B only, until it is cut off.
        let tokens = start_buyers(&running, 20, |_| 1, "cut", &sku, &sale).await;
        (sku, tokens)
    });
    while sale.units.load(Ordering::SeqCst) < STOCK / 3 {
        std::thread::sleep(Duration::from_millis(20));
    }
    cable.cut();
    let cut_at = Instant::now();
    let before_cut = sale.units.load(Ordering::SeqCst);

    // The others fence it once its lease has run out, and take back what
    // its durable orders do not hold; node A then sells those units.
    let observer = {
        let mut config = nodes[0].config.clone();
        config.node = "observer".into();
        runtime.block_on(ScyllaStore::connect(&config)).unwrap()
    };
    loop {
        assert!(cut_at.elapsed() < Duration::from_secs(90), "never fenced");
        let escrow = runtime.block_on(observer.escrow(&sku)).unwrap();
        let lease = runtime.block_on(observer.lease(NAMES[1])).unwrap().unwrap();
        if lease.until.is_none() && escrow.grant(NAMES[1]).unwrap().epoch >= lease.epoch {
            let held = runtime.block_on(observer.held_by(NAMES[1], None)).unwrap();
            eprintln!(
                "{} units acknowledged before the cut; {:?} held",
                before_cut, held.units
            );
            eprintln!(
                "{} fenced and reclaimed {} ms after the cut: {escrow:?}",
                NAMES[1],
                cut_at.elapsed().as_millis()
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let during_cut = sale.units.load(Ordering::SeqCst) - before_cut;
    cable.mend();
    runtime.block_on(async {
        let on_a = connect(&running, 0).await;
        on_a.authenticate(&tokens[0]).await.unwrap();
        on_a.update_cart_line(None, &sku, 1).await.unwrap();
        let bought = on_a
            .checkout(checkout("pm_tok_visa"), new_idempotency_key())
            .await;
        assert!(bought.is_ok(), "node A sells what node B held: {bought:?}");
        sale.acknowledged
            .lock()
            .unwrap()
            .push((0, bought.unwrap().id, 1));

        // Mended, node B renews no more: it was fenced. Until its driver
        // has reconnected it cannot even read a session; it sells nothing
        // either way.
        let mended_at = Instant::now();
        let refused = loop {
            assert!(
                mended_at.elapsed() < Duration::from_secs(60),
                "node B never answered"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
            let on_b = connect(&running, 1).await;
            if on_b.authenticate(&tokens[1]).await.is_err()
                || on_b.update_cart_line(None, &sku, 1).await.is_err()
            {
                continue;
            }
            break on_b
                .checkout(checkout("pm_tok_visa"), new_idempotency_key())
                .await;
        };
        assert_eq!(
            refused.as_ref().err().and_then(|e| e.status()),
            Some(souk_client::api::ErrorStatus::Unavailable),
            "a fenced node sells nothing: {refused:?}"
        );
        sale.stop.store(true, Ordering::SeqCst);

        let acknowledged = std::mem::take(&mut *sale.acknowledged.lock().unwrap());
        let mut orders = Vec::new();
        for (n, token) in tokens.iter().enumerate() {
            let client = connect(&running, 0).await;
            client.authenticate(token).await.unwrap();
            let mine = all_orders(&client).await;
            for (buyer, id, _) in &acknowledged {
                if *buyer == n {
                    assert!(
                        mine.iter().any(|o| o.id == *id),
                        "acknowledged order {} is not stored",
                        id.0
                    );
                }
            }
            orders.extend(mine);
        }
        let durable = held(&orders, &sku);
        let escrow = observer.escrow(&sku).await.unwrap();
        eprintln!(
            "{} units sold before the cut, {during_cut} acknowledged while cut off; {durable} in durable orders; {escrow:?}",
            before_cut
        );
        assert!(durable <= STOCK, "{durable} units in durable orders of {STOCK}");
        assert_eq!(escrow.total(), STOCK, "units conserved: {escrow:?}");
    });
    for souk in running.iter_mut() {
        stop(souk.take().unwrap());
    }
}
