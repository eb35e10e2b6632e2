//! The seeded simulator: the whole shop in one thread.
//!
//! It runs N shards' real handlers (`domain::flow`) over a simulated
//! store that fails and delays calls, a simulated gateway that approves,
//! declines and times out (sometimes after charging), a simulated clock,
//! and hundreds of seeded shoppers who browse, fill carts, check out
//! (retrying under the same key), cancel, let reservations lapse, sign up,
//! sign in with a guest cart to merge, refresh, and, as admins, restock and
//! change prices. Now and then the process crashes: every task is dropped
//! wherever it is, and each shard's state is rebuilt from the store by
//! `domain::rebuild`, as a restart does.
//!
//! After every step it checks the invariants (`invariants`): no SKU sold
//! past its stock, units received = available + reserved + sold on every
//! SKU, every acknowledged order still stored, one order per idempotency
//! key, every paid order charged exactly once. A failing seed prints
//! itself; `SOUK_SIM_SEED` replays it exactly.

pub mod executor;
pub mod gateway;
mod invariants;
mod shopper;
pub mod store;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use souk_storage::Store;
use souk_storage::store::{CartStore, CatalogStore, SharedLimits, TokenStore};
use souk_wire::api::{IdempotencyKey, Money, OrderId, UnixMillis, UserId};

use crate::domain::accounts::{PasswordCost, TokenKeys};
use crate::domain::catalog::Catalog;
use crate::domain::orders::SimulatedGateway;
use crate::domain::ports::{GatewayError, Ports, Task};
use crate::domain::throttle::{Rate, RateClass};
use crate::domain::{CommerceConfig, ShardAnswer, ShardCall, ShardState, flow, rebuild};
use crate::shard::mesh::CallError;
use crate::shard::{Placement, ShardId};
use executor::{Clock, Executor};
use gateway::SimGateway;
use store::{SimStore, StoreFaults};

/// The simulation's size and how hostile its world is.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub shards: usize,
    pub shoppers: usize,
    /// Executor steps to run before the shop is drained and checked.
    pub steps: u64,
    /// Crashes per 100,000 steps.
    pub crashes_per_100k: u32,
    pub store: StoreFaults,
    /// Cross-shard calls refused with a full inbox, per 10,000.
    pub busy_per_10k: u32,
    /// Units each SKU starts with: few, so that shoppers fight over them.
    pub units_per_sku: i64,
    pub products: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            shards: 3,
            shoppers: 60,
            steps: 6_000,
            crashes_per_100k: 40,
            store: StoreFaults {
                failures_per_10k: 200,
                delay_max: Duration::from_millis(30),
            },
            busy_per_10k: 100,
            units_per_sku: 6,
            products: 12,
        }
    }
}

/// What one seed's run did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub seed: u64,
    pub steps: u64,
    pub crashes: u32,
    pub requests: u64,
    pub orders_acknowledged: usize,
    pub orders_paid: usize,
    /// Charges of unpaid orders that a crash left without their refund.
    pub charges_orphaned: usize,
    pub simulated_ms: u64,
}

/// What outlives a crash: the store, the gateway, and what clients were
/// told (the acknowledged orders, the shoppers' credentials and keys).
struct World {
    settings: Settings,
    clock: Clock,
    rng: Arc<Mutex<StdRng>>,
    store: Arc<SimStore>,
    gateway: SimGateway,
    tokens: Arc<TokenKeys>,
    ledger: RefCell<Ledger>,
    executor: Executor,
    node: RefCell<Option<Rc<Node>>>,
    report: RefCell<Report>,
    /// Set when the run winds down: shoppers stop starting actions.
    closing: std::cell::Cell<bool>,
}

/// What clients were told, kept outside the simulated process.
#[derive(Debug, Default)]
struct Ledger {
    /// Acknowledged orders, with the key their checkout carried.
    acknowledged: HashMap<OrderId, (UserId, IdempotencyKey)>,
    shoppers: Vec<shopper::Shopper>,
    admin: Option<UserId>,
    /// What shoppers saw that must never happen.
    violations: Vec<String>,
    /// Charged orders a crash left cancelled or expired before their
    /// refund was asked: nothing durable carries the refund across a
    /// restart yet (the event log will).
    orphaned_charges: std::collections::HashSet<OrderId>,
}

/// One simulated process: its shards, until the next crash.
struct Node {
    shards: Vec<Rc<SimShard>>,
    catalog: RefCell<Arc<Catalog>>,
}

/// One shard of the simulated process: its state and its `Ports`.
pub struct SimShard {
    id: ShardId,
    state: RefCell<ShardState>,
    world: Weak<World>,
    node: Weak<Node>,
    store: Arc<SimStore>,
}

impl SimShard {
    fn world(&self) -> Rc<World> {
        self.world.upgrade().expect("the world outlives its shards")
    }
}

impl Ports for SimShard {
    fn shard(&self) -> ShardId {
        self.id
    }

    fn state(&self) -> &RefCell<ShardState> {
        &self.state
    }

    fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    fn sessions(&self) -> &dyn TokenStore {
        self.store.as_ref()
    }

    fn shared_limits(&self) -> Option<&dyn SharedLimits> {
        None
    }

    fn now(&self) -> UnixMillis {
        UnixMillis(self.world().clock.now_ms())
    }

    fn fill_random(&self, bytes: &mut [u8]) {
        self.world().rng.lock().expect("not poisoned").fill(bytes);
    }

    async fn sleep(&self, duration: Duration) {
        let sleep = self.world().clock.sleep(duration);
        sleep.await;
    }

    async fn send(&self, owner: ShardId, call: ShardCall) -> Result<ShardAnswer, CallError> {
        let world = self.world();
        let busy = world
            .rng
            .lock()
            .expect("not poisoned")
            .random_range(0..10_000)
            < world.settings.busy_per_10k;
        if busy {
            return Err(CallError::Busy(owner));
        }
        let node = self.node.upgrade().ok_or(CallError::Stopped(owner))?;
        let target = node.shards[owner.index()].clone();
        // The owner runs the call as its own task, as its inbox server
        // does, and the answer comes back over a one-shot slot.
        let (answer_tx, answer_rx) = oneshot();
        world.executor.spawn(Box::pin(async move {
            let answer = flow::serve_call(&target, call).await;
            answer_tx.send(answer);
        }));
        answer_rx.await.ok_or(CallError::Stopped(owner))
    }

    fn spawn(&self, task: Task) {
        self.world().executor.spawn(task);
    }

    async fn offload<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        Some(work())
    }

    async fn charge(
        &self,
        order: OrderId,
        _payment_method_token: &str,
        amount: Money,
    ) -> Result<String, GatewayError> {
        let world = self.world();
        let delay = match world.gateway.latency() {
            Some(latency) => latency,
            None => {
                Duration::from_millis(world.rng.lock().expect("not poisoned").random_range(1..200))
            }
        };
        world.clock.sleep(delay).await;
        let draw = world.rng.lock().expect("not poisoned").random_range(0..100);
        world.gateway.charge(order, amount, draw)
    }

    async fn refund(&self, order: OrderId, _amount: Money) -> Result<(), GatewayError> {
        let world = self.world();
        let delay = world.rng.lock().expect("not poisoned").random_range(1..200);
        world.clock.sleep(Duration::from_millis(delay)).await;
        let draw = world.rng.lock().expect("not poisoned").random_range(0..100);
        world.gateway.refund(order, draw)
    }

    fn latest_catalog(&self) -> Arc<Catalog> {
        let node = self
            .node
            .upgrade()
            .expect("the node outlives its shards' tasks");
        node.catalog.borrow().clone()
    }

    fn publish_catalog(&self, catalog: Arc<Catalog>) {
        let node = self
            .node
            .upgrade()
            .expect("the node outlives its shards' tasks");
        *node.catalog.borrow_mut() = catalog.clone();
        for shard in &node.shards {
            shard.state.borrow_mut().catalog = catalog.clone();
        }
    }

    fn replies_stale(&self) {
        // No reply cache in the simulator.
    }
}

/// A one-shot slot for a cross-shard answer: `None` if the sender was
/// dropped (its task died in a crash).
fn oneshot<T: 'static>() -> (Sender<T>, Receiver<T>) {
    let slot = Rc::new(RefCell::new(Slot {
        value: None,
        waker: None,
        closed: false,
    }));
    (Sender(slot.clone()), Receiver(slot))
}

struct Slot<T> {
    value: Option<T>,
    waker: Option<std::task::Waker>,
    closed: bool,
}

struct Sender<T>(Rc<RefCell<Slot<T>>>);
struct Receiver<T>(Rc<RefCell<Slot<T>>>);

impl<T> Sender<T> {
    fn send(self, value: T) {
        self.0.borrow_mut().value = Some(value);
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut slot = self.0.borrow_mut();
        slot.closed = true;
        if let Some(waker) = slot.waker.take() {
            waker.wake();
        }
    }
}

impl<T> std::future::Future for Receiver<T> {
    type Output = Option<T>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        let mut slot = self.0.borrow_mut();
        if let Some(value) = slot.value.take() {
            return std::task::Poll::Ready(Some(value));
        }
        if slot.closed {
            return std::task::Poll::Ready(None);
        }
        slot.waker = Some(cx.waker().clone());
        std::task::Poll::Pending
    }
}

/// Runs one seed and checks the invariants after every step. `Err` names
/// the violated invariant and the step; the seed replays it exactly.
pub fn run(seed: u64, settings: Settings) -> Result<Report, String> {
    let world = World::new(seed, settings);
    world.start_node();
    shopper::start(&world);
    let result = world.run_steps();
    world.executor.kill_all();
    result
}

const START_MS: u64 = 1_800_000_000_000;

impl World {
    fn new(seed: u64, settings: Settings) -> Rc<World> {
        let clock = Clock::starting_at(START_MS);
        let mut seeds = StdRng::seed_from_u64(seed);
        let rng = Arc::new(Mutex::new(StdRng::seed_from_u64(seeds.random())));
        let mut catalog = souk_storage::demo::generate(seeds.random(), settings.products);
        for (_, units) in &mut catalog.stock {
            *units = settings.units_per_sku;
        }
        let store = Arc::new(SimStore::new(
            catalog,
            clock.clone(),
            rng.clone(),
            settings.store,
        ));
        Rc::new(World {
            settings,
            executor: Executor::new(clock.clone(), seeds.random()),
            clock,
            rng,
            store,
            gateway: SimGateway::default(),
            tokens: Arc::new(TokenKeys::new(&[7; 32])),
            ledger: RefCell::default(),
            node: RefCell::new(None),
            report: RefCell::new(Report {
                seed,
                ..Report::default()
            }),
            closing: std::cell::Cell::new(false),
        })
    }

    fn random(&self, range: std::ops::Range<u64>) -> u64 {
        self.rng.lock().expect("not poisoned").random_range(range)
    }

    fn node(&self) -> Rc<Node> {
        self.node.borrow().clone().expect("a node runs")
    }

    /// Starts the process: every shard's state rebuilt from the store,
    /// and its background work running.
    fn start_node(self: &Rc<World>) {
        let placement = Placement::new(self.settings.shards);
        let settings = rebuild::Settings {
            placement,
            tokens: self.tokens.clone(),
            commerce: CommerceConfig {
                reservation_ttl: Duration::from_secs(30),
                gateway: SimulatedGateway {
                    latency: Duration::ZERO,
                    declines_per_10k: 0,
                },
                password_cost: PasswordCost::CHEAPEST,
                purchase_limit: None,
            },
            rates: vec![(
                RateClass::Checkouts,
                Rate {
                    per_second: 50,
                    burst: 100,
                },
            )],
            server_version: "sim",
            node: 0,
        };
        let data = now(self.store.load_catalog()).expect("loading never fails here");
        let orders = self.store.all_orders();
        let carts = now(self.store.carts()).expect("reading carts never fails here");
        let snapshot = souk_storage::model::StockSnapshot::default();
        let stored = rebuild::Stored {
            catalog: &data,
            snapshot: &snapshot,
            orders: &orders,
            carts,
            pools: Vec::new(),
        };
        let states = rebuild::shard_states(stored, &settings);
        let catalog = states[0].catalog.clone();
        let node = Rc::new_cyclic(|node: &Weak<Node>| Node {
            shards: states
                .into_iter()
                .map(|state| {
                    Rc::new(SimShard {
                        id: state.shard,
                        state: RefCell::new(state),
                        world: Rc::downgrade(self),
                        node: node.clone(),
                        store: self.store.clone(),
                    })
                })
                .collect(),
            catalog: RefCell::new(catalog),
        });
        for shard in &node.shards {
            let pending = shard.state.borrow().pending.ids();
            self.executor
                .spawn(Box::pin(flow::expire_lapsed(shard.clone())));
            self.executor
                .spawn(Box::pin(flow::flush_carts(shard.clone())));
            self.executor
                .spawn(Box::pin(flow::publish_stock_statuses(shard.clone())));
            self.executor
                .spawn(Box::pin(flow::resume_payments(shard.clone(), pending)));
        }
        *self.node.borrow_mut() = Some(node);
    }

    /// The process dies: every task is dropped where it stands (writes in
    /// flight are lost), and a new process starts from the store.
    fn crash(self: &Rc<World>) -> Result<(), String> {
        self.executor.kill_all();
        for order in self.store.all_orders() {
            let settled = matches!(
                order.status,
                souk_wire::api::OrderStatus::Cancelled | souk_wire::api::OrderStatus::Expired
            );
            if settled
                && self.gateway.captured(order.id).is_some()
                && !self.gateway.refunded(order.id)
            {
                self.ledger.borrow_mut().orphaned_charges.insert(order.id);
            }
        }
        *self.node.borrow_mut() = None;
        self.report.borrow_mut().crashes += 1;
        invariants::acknowledged_orders_survive(self)?;
        self.start_node();
        shopper::start(self);
        Ok(())
    }

    fn run_steps(self: &Rc<World>) -> Result<Report, String> {
        let crash_per_100k = u64::from(self.settings.crashes_per_100k);
        for step in 0..self.settings.steps {
            if self.random(0..100_000) < crash_per_100k {
                self.crash()
                    .map_err(|e| format!("after a crash at step {step}: {e}"))?;
            }
            if !self.executor.step() {
                break;
            }
            invariants::after_step(self).map_err(|e| format!("at step {step}: {e}"))?;
            self.report.borrow_mut().steps = step + 1;
        }
        self.drain()?;
        let mut report = self.report.borrow().clone();
        report.orders_acknowledged = self.ledger.borrow().acknowledged.len();
        report.orders_paid = self
            .store
            .all_orders()
            .iter()
            .filter(|o| o.status == souk_wire::api::OrderStatus::Paid)
            .count();
        report.charges_orphaned = self.ledger.borrow().orphaned_charges.len();
        report.simulated_ms = self.clock.now_ms() - START_MS;
        Ok(report)
    }

    /// Winds down: shoppers stop, faults stop, the clock runs past every
    /// reservation, and the background work settles every order; then
    /// the whole shop is checked at rest.
    fn drain(self: &Rc<World>) -> Result<(), String> {
        self.closing.set(true);
        self.store.set_faults(StoreFaults {
            failures_per_10k: 0,
            delay_max: Duration::from_millis(5),
        });
        self.gateway.heal();
        let deadline = self.clock.now_ms() + 10 * 60 * 1000;
        while self.clock.now_ms() < deadline {
            if !self.executor.step() {
                break;
            }
            invariants::after_step(self).map_err(|e| format!("while draining: {e}"))?;
            if invariants::at_rest(self).is_ok() && self.clock.now_ms() > deadline - 9 * 60 * 1000 {
                break;
            }
        }
        invariants::at_rest(self).map_err(|e| format!("at rest: {e}"))
    }
}

/// Polls a future that completes without waiting (the simulated store's
/// start-up reads).
fn now<T>(future: impl std::future::Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    let waker = std::task::Waker::noop();
    match future
        .as_mut()
        .poll(&mut std::task::Context::from_waker(waker))
    {
        std::task::Poll::Ready(value) => value,
        std::task::Poll::Pending => panic!("a start-up read waited"),
    }
}

/// The seed to replay, if `SOUK_SIM_SEED` names one.
pub fn seed_from_env() -> Option<u64> {
    std::env::var("SOUK_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
}

/// A simulated shop that a test drives request by request, without
/// sockets or a runtime: no shoppers, no crashes, and no faults until the
/// test asks for them.
pub struct Shop {
    world: Rc<World>,
}

/// A client's connection to one shard.
#[derive(Clone)]
pub struct Connection {
    shard: usize,
    session: Rc<RefCell<crate::domain::Session>>,
}

impl std::fmt::Debug for Shop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shop").finish_non_exhaustive()
    }
}

impl Shop {
    /// A shop of `shards` shards over a small demo catalog with
    /// `units_per_sku` units of every SKU.
    pub fn new(shards: usize, units_per_sku: i64) -> Shop {
        let settings = Settings {
            shards,
            shoppers: 0,
            crashes_per_100k: 0,
            store: StoreFaults {
                failures_per_10k: 0,
                delay_max: Duration::from_millis(2),
            },
            busy_per_10k: 0,
            units_per_sku,
            ..Settings::default()
        };
        let world = World::new(1, settings);
        world.gateway.set_mode(gateway::GatewayMode::Approve);
        world.start_node();
        Shop { world }
    }

    pub fn connect(&self, shard: usize) -> Connection {
        Connection {
            shard,
            session: Rc::default(),
        }
    }

    /// Sends a request (a mutating one under a fresh idempotency key) and
    /// runs the shop until it is answered.
    pub fn send(
        &self,
        connection: &Connection,
        body: souk_wire::api::RequestBody,
    ) -> souk_wire::api::Response {
        let key = body
            .operation()
            .is_mutating()
            .then(|| IdempotencyKey(u128::from(self.world.random(1..u64::MAX))));
        self.send_with_key(connection, body, key)
    }

    pub fn send_with_key(
        &self,
        connection: &Connection,
        body: souk_wire::api::RequestBody,
        idempotency_key: Option<IdempotencyKey>,
    ) -> souk_wire::api::Response {
        let shard = self.world.node().shards[connection.shard].clone();
        let session = connection.session.clone();
        let request = souk_wire::api::Request {
            idempotency_key,
            body,
        };
        self.world
            .executor
            .block_on(async move { flow::dispatch(&shard, &session, request).await })
            .expect("a request is answered")
    }

    /// Lets `duration` pass on the shop's clock, running whatever is due.
    pub fn wait(&self, duration: Duration) {
        let sleep = self.world.clock.sleep(duration);
        self.world.executor.block_on(sleep);
    }

    pub fn now(&self) -> UnixMillis {
        UnixMillis(self.world.clock.now_ms())
    }

    pub fn store(&self) -> &SimStore {
        &self.world.store
    }

    pub fn gateway(&self) -> &SimGateway {
        &self.world.gateway
    }

    /// Reads a shard's state.
    pub fn state<T>(&self, shard: usize, read: impl FnOnce(&ShardState) -> T) -> T {
        let node = self.world.node();
        read(&node.shards[shard].state.borrow())
    }

    /// Writes (and reads) fail this often from now on, per 10,000.
    pub fn fail_storage(&self, per_10k: u32) {
        self.world.store.set_faults(StoreFaults {
            failures_per_10k: per_10k,
            delay_max: Duration::from_millis(2),
        });
    }

    /// An access token of an admin account.
    pub fn admin_token(&self) -> String {
        let (token, _) =
            self.world
                .tokens
                .issue(UserId(1), souk_wire::api::Role::Admin, self.now(), [0; 16]);
        token
    }

    /// Kills the process and starts a new one from the store, as a crash
    /// and restart do; connections must be made anew.
    pub fn restart(&self) {
        self.world.executor.kill_all();
        *self.world.node.borrow_mut() = None;
        self.world.start_node();
    }
}
