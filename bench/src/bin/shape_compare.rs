//! Checkout in the two sans-IO shapes the design allowed, on one shard,
//! over the simulator's in-memory store with no delay or fault, so that
//! only the handler's shape differs:
//!
//! - **ports** (shipped): the async handler written against `Ports`,
//!   `domain::flow::dispatch`, polled to completion;
//! - **effects** (prototype, here only): the same checkout as a state
//!   machine that returns one explicit effect at a time and is resumed
//!   with its result.
//!
//!     cargo run --release -p souk-bench --bin shape-compare
//!
//! Both buy one unit of one SKU ("buy now") under a fresh idempotency key
//! and check the key's earlier orders, reserve, write the order and book
//! it; neither runs the payment.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use souk_server::domain::catalog::Catalog;
use souk_server::domain::orders::{self, NewOrder, SimulatedGateway};
use souk_server::domain::ports::{GatewayError, Ports, Task};
use souk_server::domain::rebuild;
use souk_server::domain::{
    CheckoutCall, CommerceConfig, Session, ShardAnswer, ShardCall, ShardState,
};
use souk_server::domain::{accounts, flow};
use souk_server::shard::mesh::CallError;
use souk_server::shard::{Placement, ShardId};
use souk_server::sim::executor::Clock;
use souk_server::sim::store::{SimStore, StoreFaults};
use souk_storage::Store;
use souk_storage::model::OrderRecord;
use souk_storage::store::{OrderStore, SharedLimits, TokenStore};
use souk_wire::api::{
    ApiError, Checkout, CheckoutLine, ErrorStatus, IdempotencyKey, Identity, Money, Order, OrderId,
    Request, RequestBody, ResponseBody, Role, Sku, UnixMillis, UserId,
};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CHECKOUTS: u64 = 200_000;
const NOW_MS: u64 = 1_800_000_000_000;

struct OneShard {
    state: RefCell<ShardState>,
    store: Arc<SimStore>,
    clock: Clock,
}

impl Ports for OneShard {
    fn shard(&self) -> ShardId {
        ShardId(0)
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
        UnixMillis(self.clock.now_ms())
    }
    fn fill_random(&self, bytes: &mut [u8]) {
        bytes.fill(7);
    }
    async fn sleep(&self, duration: Duration) {
        self.clock.sleep(duration).await;
    }
    async fn send(&self, owner: ShardId, _call: ShardCall) -> Result<ShardAnswer, CallError> {
        unreachable!("one shard owns everything; nothing is sent to {owner}")
    }
    fn spawn(&self, _task: Task) {
        // The payment is not measured in either shape.
    }
    async fn offload<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        Some(work())
    }
    async fn charge(&self, _: OrderId, _: &str, _: Money) -> Result<String, GatewayError> {
        Ok("unused".into())
    }
    async fn refund(&self, _: OrderId, _: Money) -> Result<(), GatewayError> {
        Ok(())
    }
    fn latest_catalog(&self) -> Arc<Catalog> {
        self.state.borrow().catalog.clone()
    }
    fn publish_catalog(&self, catalog: Arc<Catalog>) {
        self.state.borrow_mut().catalog = catalog;
    }
    fn replies_stale(&self) {}
}

fn shard() -> (Rc<OneShard>, Sku) {
    let clock = Clock::starting_at(NOW_MS);
    let mut data = souk_storage::demo::generate(1, 20);
    for (_, units) in &mut data.stock {
        *units = 1_000_000_000;
    }
    let rng = Arc::new(Mutex::new(rand::rngs::StdRng::seed_from_u64(1)));
    let faults = StoreFaults {
        failures_per_10k: 0,
        delay_max: Duration::ZERO,
    };
    let store = Arc::new(SimStore::new(data.clone(), clock.clone(), rng, faults));
    let settings = rebuild::Settings {
        placement: Placement::new(1),
        tokens: Arc::new(accounts::TokenKeys::new(&[1; 32])),
        commerce: CommerceConfig {
            reservation_ttl: Duration::from_secs(600),
            gateway: SimulatedGateway {
                latency: Duration::ZERO,
                declines_per_10k: 0,
            },
            password_cost: accounts::PasswordCost::CHEAPEST,
            purchase_limit: None,
        },
        rates: Vec::new(),
        server_version: "bench",
        node: 0,
    };
    let snapshot = souk_storage::model::StockSnapshot::default();
    let stored = rebuild::Stored {
        catalog: &data,
        snapshot: &snapshot,
        orders: &[],
        carts: Vec::new(),
        pools: Vec::new(),
    };
    let state = rebuild::shard_states(stored, &settings).remove(0);
    let sku = state.catalog.skus().next().expect("a SKU").clone();
    let shard = OneShard {
        state: RefCell::new(state),
        store,
        clock,
    };
    (Rc::new(shard), sku)
}

fn buy_now(sku: &Sku) -> Checkout {
    Checkout {
        device_id: None,
        payment_method_token: "pm_card".into(),
        shipping_address_id: None,
        expected_total: None,
        lines: vec![CheckoutLine {
            sku: sku.clone(),
            quantity: 1,
        }],
    }
}

/// Polls a future whose every wait is already over.
fn ready<T>(future: impl std::future::Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(value) => value,
        std::task::Poll::Pending => panic!("a call waited"),
    }
}

fn with_ports(shard: &Rc<OneShard>, sku: &Sku, key: u128) -> Order {
    let session = RefCell::new(Session {
        identity: Some(Identity {
            user_id: UserId(42),
            role: Role::Customer,
            access_expires_at: UnixMillis(u64::MAX),
        }),
        ..Session::default()
    });
    let request = Request {
        idempotency_key: Some(IdempotencyKey(key)),
        body: RequestBody::Checkout(buy_now(sku)),
    };
    match ready(flow::dispatch(shard, &session, request)) {
        Ok(ResponseBody::OrderView(order)) => *order,
        other => panic!("checkout: {other:?}"),
    }
}

/// The prototype: checkout as explicit effects and continuations.
mod effects {
    use super::*;

    pub enum Effect {
        ReadOrder(OrderId),
        Reserve(OrderId, UserId, Vec<(Sku, i64)>),
        WriteOrder(Box<OrderRecord>),
        Release(OrderId),
    }

    pub enum Resumed {
        Order(Result<Option<Box<OrderRecord>>, ApiError>),
        Reserved(Result<(), ApiError>),
        Written(Result<(), ApiError>),
        Released,
    }

    pub enum Step {
        Reply(Result<Box<Order>, ApiError>),
        Do(Effect),
    }

    /// Where a checkout waits, holding what it needs to go on.
    enum Waiting {
        Start,
        ForEarlier,
        ForReservation(Box<OrderRecord>),
        ForWrite(Box<OrderRecord>),
        ForRelease(ApiError),
    }

    pub struct Checkout {
        call: CheckoutCall,
        waiting: Waiting,
    }

    impl Checkout {
        pub fn new(call: CheckoutCall) -> Checkout {
            Checkout {
                call,
                waiting: Waiting::Start,
            }
        }

        pub fn step(
            &mut self,
            state: &mut ShardState,
            now: UnixMillis,
            resumed: Option<Resumed>,
        ) -> Step {
            let waiting = std::mem::replace(&mut self.waiting, Waiting::Start);
            match (waiting, resumed) {
                (Waiting::Start, None) => {
                    let guard = (self.call.user, self.call.key);
                    if !state.checkouts.insert(guard) {
                        return Step::Reply(Err(ApiError::new(ErrorStatus::Busy, "in progress")));
                    }
                    match state.placed.get(self.call.user, self.call.key) {
                        Some(id) => {
                            self.waiting = Waiting::ForEarlier;
                            Step::Do(Effect::ReadOrder(id))
                        }
                        None => self.price_and_reserve(state, now),
                    }
                }
                (Waiting::ForEarlier, Some(Resumed::Order(found))) => match found {
                    Err(error) => self.reply(state, Err(error)),
                    Ok(Some(order)) => self.reply(state, Ok(Box::new(orders::view(&order)))),
                    Ok(None) => self.price_and_reserve(state, now),
                },
                (Waiting::ForReservation(record), Some(Resumed::Reserved(reserved))) => {
                    match reserved {
                        Ok(()) => {
                            self.waiting = Waiting::ForWrite(record.clone());
                            Step::Do(Effect::WriteOrder(record))
                        }
                        Err(error) => {
                            self.waiting = Waiting::ForRelease(error);
                            Step::Do(Effect::Release(record.id))
                        }
                    }
                }
                (Waiting::ForWrite(record), Some(Resumed::Written(written))) => match written {
                    Ok(()) => {
                        state.pending.insert(record.id, record.expires_at);
                        state
                            .placed
                            .insert(self.call.user, self.call.key, record.id, now);
                        self.reply(state, Ok(Box::new(orders::view(&record))))
                    }
                    Err(error) => {
                        self.waiting = Waiting::ForRelease(error);
                        Step::Do(Effect::Release(record.id))
                    }
                },
                (Waiting::ForRelease(error), Some(Resumed::Released)) => {
                    self.reply(state, Err(error))
                }
                _ => unreachable!("resumed with what it did not ask for"),
            }
        }

        fn price_and_reserve(&mut self, state: &mut ShardState, now: UnixMillis) -> Step {
            let priced = orders::buy_now_lines(&state.catalog, &self.call.checkout.lines).and_then(
                |lines| {
                    let order = NewOrder {
                        id: OrderId(state.ids.next(now)),
                        user: self.call.user,
                        shard: state.shard,
                        key: self.call.key,
                        placed_at: now,
                        expires_at: UnixMillis(
                            now.0 + state.commerce.reservation_ttl.as_millis() as u64,
                        ),
                    };
                    orders::price(&state.catalog, &order, &lines, &self.call.checkout)
                },
            );
            match priced {
                Err(error) => self.reply(state, Err(error)),
                Ok(record) => {
                    let lines = record
                        .lines
                        .iter()
                        .map(|l| (l.sku.clone(), i64::from(l.quantity)))
                        .collect();
                    let effect = Effect::Reserve(record.id, record.user_id, lines);
                    self.waiting = Waiting::ForReservation(Box::new(record));
                    Step::Do(effect)
                }
            }
        }

        fn reply(&mut self, state: &mut ShardState, reply: Result<Box<Order>, ApiError>) -> Step {
            state.checkouts.remove(&(self.call.user, self.call.key));
            Step::Reply(reply)
        }
    }
}

fn with_effects(shard: &OneShard, sku: &Sku, key: u128) -> Order {
    use effects::{Effect, Resumed, Step};
    let call = CheckoutCall {
        user: UserId(42),
        key: IdempotencyKey(key),
        checkout: buy_now(sku),
    };
    let mut checkout = effects::Checkout::new(call);
    let mut resumed = None;
    loop {
        let now = UnixMillis(shard.clock.now_ms());
        let step = checkout.step(&mut shard.state.borrow_mut(), now, resumed.take());
        let effect = match step {
            Step::Reply(reply) => return *reply.expect("placed"),
            Step::Do(effect) => effect,
        };
        resumed = Some(match effect {
            Effect::ReadOrder(id) => Resumed::Order(
                ready(shard.store.order(id))
                    .map(|order| order.map(Box::new))
                    .map_err(souk_server::domain::storage_failure),
            ),
            Effect::Reserve(order, user, lines) => {
                let mut state = shard.state.borrow_mut();
                Resumed::Reserved(souk_server::domain::reserve(
                    &mut state, order, user, &lines,
                ))
            }
            Effect::WriteOrder(record) => Resumed::Written(
                ready(shard.store.insert_order(&record))
                    .map_err(souk_server::domain::storage_failure),
            ),
            Effect::Release(order) => {
                shard.state.borrow_mut().inventory.release(order);
                Resumed::Released
            }
        });
    }
}

fn measure(name: &str, run: impl Fn(u128) -> Order) -> f64 {
    for key in 0..10_000 {
        run(u128::MAX - key);
    }
    let started = Instant::now();
    for key in 0..u128::from(CHECKOUTS) {
        let order = run(key + 1);
        assert_eq!(order.lines.len(), 1);
    }
    let ns = started.elapsed().as_nanos() as f64 / CHECKOUTS as f64;
    println!("{name:<8} {ns:>8.0} ns per checkout");
    ns
}

fn main() {
    let mut ratios = Vec::new();
    for round in 1..=3 {
        let (ports_shard, sku) = shard();
        let (effects_shard, _) = shard();
        println!("round {round} ({CHECKOUTS} checkouts each)");
        let ports = measure("ports", |key| with_ports(&ports_shard, &sku, key));
        let effects = measure("effects", |key| with_effects(&effects_shard, &sku, key));
        ratios.push(ports / effects);
    }
    ratios.sort_by(f64::total_cmp);
    println!("ports / effects, median of 3 rounds: {:.2}x", ratios[1]);
}
