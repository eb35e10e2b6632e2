//! The threads that make the load. Each has its own single-threaded
//! runtime, its share of the connections (one shopper each) and its own
//! histograms; the coordinator sends them phases to run and merges what
//! they measured.
//!
//! Open loop (`--rate`): each thread sends on a fixed schedule and measures
//! every action from the time it was *meant* to start, so a server that
//! stalls is charged for all the requests that should have gone out while
//! it stalled (no coordinated omission). Closed loop (`--concurrency`):
//! each slot starts its next action when the last one ends.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use souk_client::ClientError;
use souk_client::api::{DeviceId, ErrorStatus, OrderId, OrderStatus, Sku, UnixMillis};

use crate::scenario::{Catalog, Mix, Outcome, Scenario, Shopper, Workload, error_name};
use crate::shop::{Endpoint, Shop};

pub fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// What every thread needs to set itself up.
#[derive(Clone)]
pub struct ThreadSetup {
    /// The nodes; connection `k` of the run goes to node `k % len`.
    pub endpoints: Vec<Endpoint>,
    /// This thread's connections (the run's, until `Engine::start`).
    pub connections: usize,
    pub threads: usize,
    pub scenario: Scenario,
    pub mix: Mix,
    pub zipf: f64,
    pub seed: u64,
    pub catalog: Arc<Catalog>,
    /// Accounts are `{prefix}-{thread}-{n}@loadgen.example`.
    pub account_prefix: String,
    pub sign_in: bool,
    pub max_in_flight: usize,
}

pub const ACCOUNT_PASSWORD: &str = "souk loadgen shopper";

/// Commands waiting for one load thread. The coordinator sends a thread its
/// next command only after it has collected every thread's reply to the
/// last, so one is all that ever waits; were the queue full, the
/// coordinator would wait for the thread to take the one before.
const COMMANDS_QUEUED_MAX: usize = 1;

/// Replies waiting for the coordinator, per load thread. A thread answers
/// each command once and the coordinator reads every answer before it sends
/// the next, so one per thread is all that ever waits. A thread that finds
/// the queue full waits for the coordinator to read: back-pressure, and a
/// phase's measurements are never dropped.
const REPLIES_QUEUED_PER_THREAD_MAX: usize = 1;

/// Counts of due actions waiting for a thread's open loop. Each count is
/// cumulative (every action due so far), so the newest says all that a
/// longer queue would. The queue is full only while the loop is behind
/// (waiting for an in-flight slot); the pacer then waits too, and the count
/// it sends next includes every action that came due meanwhile, each still
/// measured from its intended send time.
const DUE_COUNTS_QUEUED_MAX: usize = 1;

/// One phase of load.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    /// Actions per second for this thread (open loop), or none (closed).
    pub rate: Option<f64>,
    /// In-flight slots for this thread (closed loop).
    pub concurrency: usize,
    pub start: Instant,
    pub warmup: Duration,
    pub duration: Duration,
}

enum Command {
    Run(Phase),
    VerifyOrders { sample: usize },
    FlashUnits { sku: Sku, since: UnixMillis },
}

/// What a thread measured in a phase (or all threads, merged).
#[derive(Debug, Clone)]
pub struct Measured {
    pub overall: Histogram<u64>,
    pub actions: BTreeMap<&'static str, (Histogram<u64>, u64)>,
    pub errors: BTreeMap<String, u64>,
    pub sold_out: u64,
    pub completed: u64,
    /// Per node (its index among the endpoints): latencies and errors.
    pub nodes: BTreeMap<usize, (Histogram<u64>, u64)>,
}

impl Default for Measured {
    fn default() -> Measured {
        Measured {
            overall: histogram(),
            actions: BTreeMap::new(),
            errors: BTreeMap::new(),
            sold_out: 0,
            completed: 0,
            nodes: BTreeMap::new(),
        }
    }
}

impl Measured {
    fn record(&mut self, outcome: &Outcome, micros: u64, node: usize) {
        self.completed += 1;
        let (histogram, errors) = self
            .actions
            .entry(outcome.action)
            .or_insert_with(|| (histogram(), 0));
        let (node_histogram, node_errors) = self
            .nodes
            .entry(node)
            .or_insert_with(|| (self::histogram(), 0));
        match &outcome.error {
            None => {
                histogram.saturating_record(micros.max(1));
                node_histogram.saturating_record(micros.max(1));
                self.overall.saturating_record(micros.max(1));
                self.sold_out += u64::from(outcome.sold_out);
            }
            Some(status) => {
                *errors += 1;
                *node_errors += 1;
                *self.errors.entry(status.clone()).or_default() += 1;
            }
        }
    }

    pub fn merge(&mut self, other: Measured) {
        self.overall.add(&other.overall).expect("same bounds");
        merge_counted(&mut self.actions, other.actions);
        merge_counted(&mut self.nodes, other.nodes);
        for (status, count) in other.errors {
            *self.errors.entry(status).or_default() += count;
        }
        self.sold_out += other.sold_out;
        self.completed += other.completed;
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Adds `other`'s latencies and error counts into `into`, key by key.
fn merge_counted<K: Ord>(
    into: &mut BTreeMap<K, (Histogram<u64>, u64)>,
    other: BTreeMap<K, (Histogram<u64>, u64)>,
) {
    for (key, (latencies, errors)) in other {
        let entry = into.entry(key).or_insert_with(|| (histogram(), 0));
        entry.0.add(&latencies).expect("same bounds");
        entry.1 += errors;
    }
}

/// What the progress line reads: the current second, from every thread.
#[derive(Default)]
pub struct Live {
    pub second: Mutex<Measured>,
}

/// Orders a thread's shoppers hold, for the end-of-run checks.
#[derive(Debug, Default, Clone, Copy)]
pub struct OrderCheck {
    pub checked: u64,
    pub missing: u64,
    pub unreadable: u64,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct FlashUnits {
    /// Units of the SKU in the shoppers' orders that were not cancelled.
    pub units: i64,
    pub paid_units: i64,
    pub orders: u64,
}

enum Reply {
    Ready(anyhow::Result<()>),
    Ran(Measured),
    Orders(OrderCheck),
    Flash(anyhow::Result<FlashUnits>),
}

/// The running threads.
pub struct Engine {
    commands: Vec<mpsc::SyncSender<Command>>,
    replies: mpsc::Receiver<Reply>,
    threads: Vec<std::thread::JoinHandle<()>>,
    pub live: Arc<Live>,
}

impl Engine {
    /// Starts `threads` threads; each connects its shoppers (and signs them
    /// in) before this returns.
    pub fn start(threads: usize, setup: &ThreadSetup) -> anyhow::Result<Engine> {
        let live = Arc::new(Live::default());
        let (reply_tx, replies) = mpsc::sync_channel(threads * REPLIES_QUEUED_PER_THREAD_MAX);
        let mut commands = Vec::new();
        let mut handles = Vec::new();
        for index in 0..threads {
            let (tx, rx) = mpsc::sync_channel(COMMANDS_QUEUED_MAX);
            commands.push(tx);
            let mut setup = setup.clone();
            setup.connections =
                setup.connections / threads + usize::from(index < setup.connections % threads);
            let (reply_tx, live) = (reply_tx.clone(), live.clone());
            handles.push(
                std::thread::Builder::new()
                    .name(format!("loadgen-{index}"))
                    .spawn(move || thread_main(index, setup, rx, reply_tx, live))?,
            );
        }
        let engine = Engine {
            commands,
            replies,
            threads: handles,
            live,
        };
        for _ in 0..threads {
            match engine.replies.recv() {
                Ok(Reply::Ready(result)) => result?,
                _ => anyhow::bail!("a load thread stopped during setup"),
            }
        }
        Ok(engine)
    }

    fn broadcast(&self, command: impl Fn() -> Command) {
        for tx in &self.commands {
            let _ = tx.send(command());
        }
    }

    /// Starts a phase on every thread; `collect` gathers it.
    pub fn run(&self, phase: Phase) {
        self.broadcast(|| Command::Run(phase));
    }

    pub fn collect(&self) -> anyhow::Result<Measured> {
        let mut merged = Measured::default();
        for _ in 0..self.commands.len() {
            match self.replies.recv() {
                Ok(Reply::Ran(measured)) => merged.merge(measured),
                _ => anyhow::bail!("a load thread stopped during a phase"),
            }
        }
        Ok(merged)
    }

    /// Reads back up to `sample` acknowledged orders, spread over threads.
    pub fn verify_orders(&self, sample: usize) -> anyhow::Result<OrderCheck> {
        let per_thread = sample.div_ceil(self.commands.len());
        self.broadcast(|| Command::VerifyOrders { sample: per_thread });
        let mut total = OrderCheck::default();
        for _ in 0..self.commands.len() {
            match self.replies.recv() {
                Ok(Reply::Orders(check)) => {
                    total.checked += check.checked;
                    total.missing += check.missing;
                    total.unreadable += check.unreadable;
                }
                _ => anyhow::bail!("a load thread stopped while checking orders"),
            }
        }
        Ok(total)
    }

    /// Units of `sku` in every shopper's orders placed since `since`.
    pub fn flash_units(&self, sku: &Sku, since: UnixMillis) -> anyhow::Result<FlashUnits> {
        self.broadcast(|| Command::FlashUnits {
            sku: sku.clone(),
            since,
        });
        let mut total = FlashUnits::default();
        for _ in 0..self.commands.len() {
            match self.replies.recv() {
                Ok(Reply::Flash(units)) => {
                    let units = units?;
                    total.units += units.units;
                    total.paid_units += units.paid_units;
                    total.orders += units.orders;
                }
                _ => anyhow::bail!("a load thread stopped while reading orders"),
            }
        }
        Ok(total)
    }

    pub fn stop(self) {
        // Closed replies as well as commands: a thread that still had an
        // answer to give stops instead of waiting for room to give it.
        drop(self.replies);
        drop(self.commands);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

struct ThreadState {
    shoppers: Vec<Rc<Shopper>>,
    workload: RefCell<Workload>,
    /// Every order acknowledged to this thread's shoppers: (shopper, id).
    orders: RefCell<Vec<(usize, OrderId)>>,
    live: Arc<Live>,
    max_in_flight: usize,
}

fn thread_main(
    index: usize,
    setup: ThreadSetup,
    commands: mpsc::Receiver<Command>,
    replies: mpsc::SyncSender<Reply>,
    live: Arc<Live>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = replies.send(Reply::Ready(Err(error.into())));
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let state = match prepare(index, &setup, live).await {
            Ok(state) => {
                let _ = replies.send(Reply::Ready(Ok(())));
                Rc::new(state)
            }
            Err(error) => {
                let _ = replies.send(Reply::Ready(Err(error)));
                return;
            }
        };
        // Commands come over a std channel; wait for them off the runtime's
        // thread so that in-flight work (keep-alives) keeps running.
        let (tx, mut rx) = tokio::sync::mpsc::channel(COMMANDS_QUEUED_MAX);
        std::thread::spawn(move || {
            while let Ok(command) = commands.recv() {
                if tx.blocking_send(command).is_err() {
                    break;
                }
            }
        });
        while let Some(command) = rx.recv().await {
            let reply = match command {
                Command::Run(phase) => Reply::Ran(run_phase(&state, phase).await),
                Command::VerifyOrders { sample } => {
                    Reply::Orders(verify_orders(&state, sample).await)
                }
                Command::FlashUnits { sku, since } => {
                    Reply::Flash(flash_units(&state, &sku, since).await)
                }
            };
            if replies.send(reply).is_err() {
                break;
            }
        }
        for shopper in &state.shoppers {
            shopper.client.close();
        }
    });
}

async fn prepare(
    index: usize,
    setup: &ThreadSetup,
    live: Arc<Live>,
) -> anyhow::Result<ThreadState> {
    let mut shoppers = Vec::with_capacity(setup.connections);
    for n in 0..setup.connections {
        // Round robin over the nodes by the run's connection number.
        let node = (index + n * setup.threads) % setup.endpoints.len();
        let endpoint = &setup.endpoints[node];
        let client = Shop::connect(endpoint)
            .await
            .with_context(|| format!("connecting to {}", endpoint.address()))?;
        if setup.sign_in {
            let email = format!("{}-{index}-{n}@loadgen.example", setup.account_prefix);
            sign_in(&client, &email).await?;
        }
        let device =
            DeviceId::new(format!("lg-{}-{index}-{n}", setup.seed)).expect("a valid device id");
        shoppers.push(Rc::new(Shopper::new(client, device, node)));
    }
    let rng = ChaCha8Rng::seed_from_u64(setup.seed ^ ((index as u64) << 32));
    let workload = Workload::new(
        setup.scenario,
        &setup.mix,
        setup.zipf,
        setup.catalog.clone(),
        rng,
    );
    Ok(ThreadState {
        shoppers,
        workload: RefCell::new(workload),
        orders: RefCell::default(),
        live,
        max_in_flight: setup.max_in_flight,
    })
}

/// Registers the account, or signs in if an earlier run registered it.
async fn sign_in(client: &Shop, email: &str) -> anyhow::Result<()> {
    match client.register(email, ACCOUNT_PASSWORD).await {
        Ok(()) => Ok(()),
        Err(error) if error.status() == Some(ErrorStatus::Conflict) => client
            .login(email, ACCOUNT_PASSWORD)
            .await
            .with_context(|| format!("signing in as {email}")),
        Err(error) => Err(error).with_context(|| format!("registering {email}")),
    }
}

impl ThreadState {
    /// A workload of its own for one action or slot, drawn from the
    /// thread's seeded stream so that a run repeats exactly.
    fn fork(&self) -> Workload {
        let mut workload = self.workload.borrow_mut();
        let seed = workload.rng.random();
        workload.fork(ChaCha8Rng::seed_from_u64(seed))
    }

    fn finish(
        &self,
        measured: &RefCell<Measured>,
        shopper: usize,
        outcome: Outcome,
        from: Instant,
        counted: bool,
    ) {
        let micros = from.elapsed().as_micros() as u64;
        if let Some(order) = outcome.order {
            self.orders.borrow_mut().push((shopper, order));
        }
        let node = self.shoppers[shopper].node;
        self.live
            .second
            .lock()
            .expect("not poisoned")
            .record(&outcome, micros, node);
        if counted {
            measured.borrow_mut().record(&outcome, micros, node);
        }
    }
}

async fn run_phase(state: &Rc<ThreadState>, phase: Phase) -> Measured {
    let measure_from = phase.start + phase.warmup;
    let end = measure_from + phase.duration;
    let measured = Rc::new(RefCell::new(Measured::default()));
    let shoppers = state.shoppers.len();
    match phase.rate {
        Some(rate) => {
            let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3));
            let in_flight = Arc::new(tokio::sync::Semaphore::new(state.max_in_flight.max(1)));
            let mut tasks = tokio::task::JoinSet::new();
            let schedule = Schedule {
                start: phase.start,
                interval,
                end,
            };
            let mut due = pace(schedule);
            let mut n: u32 = 0;
            while let Some(up_to) = due.recv().await {
                while n < up_to {
                    let intended = schedule.at(n);
                    // Waiting for a slot delays this action, and its latency
                    // still counts from `intended`.
                    let permit = in_flight
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("never closed");
                    let (state, measured) = (state.clone(), measured.clone());
                    let shopper = n as usize % shoppers;
                    let mut workload = state.fork();
                    tasks.spawn_local(async move {
                        let outcome = workload.act(&state.shoppers[shopper]).await;
                        state.finish(
                            &measured,
                            shopper,
                            outcome,
                            intended,
                            intended >= measure_from,
                        );
                        drop(permit);
                    });
                    n += 1;
                    while tasks.try_join_next().is_some() {}
                }
            }
            while tasks.join_next().await.is_some() {}
        }
        None => {
            tokio::time::sleep_until(phase.start.into()).await;
            let mut tasks = tokio::task::JoinSet::new();
            for slot in 0..phase.concurrency {
                let (state, measured) = (state.clone(), measured.clone());
                let mut workload = state.fork();
                let shopper = slot % shoppers;
                tasks.spawn_local(async move {
                    loop {
                        let started = Instant::now();
                        if started >= end {
                            break;
                        }
                        let outcome = workload.act(&state.shoppers[shopper]).await;
                        state.finish(
                            &measured,
                            shopper,
                            outcome,
                            started,
                            started >= measure_from,
                        );
                    }
                });
            }
            while tasks.join_next().await.is_some() {}
        }
    }
    Rc::try_unwrap(measured)
        .map(RefCell::into_inner)
        .unwrap_or_else(|shared| shared.borrow().clone())
}

/// An open loop's send times: `start + n * interval`, before `end`.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    start: Instant,
    interval: Duration,
    end: Instant,
}

impl Schedule {
    fn at(&self, n: u32) -> Instant {
        self.start + self.interval * n
    }
}

/// Says, as each send time comes, how many actions are due in all. A
/// thread of its own keeps the time: tokio's timer wakes on millisecond
/// ticks, which would add up to a millisecond to every open-loop latency
/// (measured from the send time), while a thread's sleep wakes within tens
/// of microseconds and spins no core.
fn pace(schedule: Schedule) -> tokio::sync::mpsc::Receiver<u32> {
    let (tx, rx) = tokio::sync::mpsc::channel(DUE_COUNTS_QUEUED_MAX);
    std::thread::spawn(move || {
        let mut due = 0u32;
        loop {
            let next = schedule.at(due);
            if next >= schedule.end {
                break;
            }
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
            let now = Instant::now();
            while schedule.at(due) <= now && schedule.at(due) < schedule.end {
                due += 1;
            }
            if tx.blocking_send(due).is_err() {
                break;
            }
        }
    });
    rx
}

async fn verify_orders(state: &ThreadState, sample: usize) -> OrderCheck {
    let orders = state.orders.borrow().clone();
    let mut rng = ChaCha8Rng::seed_from_u64(orders.len() as u64);
    let mut check = OrderCheck::default();
    for _ in 0..sample.min(orders.len()) {
        let (shopper, id) = orders[rng.random_range(0..orders.len())];
        check.checked += 1;
        match state.shoppers[shopper].client.order(id).await {
            Ok(read) if read == id => {}
            Ok(_) => check.missing += 1,
            Err(error) if error.status() == Some(ErrorStatus::NotFound) => check.missing += 1,
            Err(error) => {
                tracing_error(&error);
                check.unreadable += 1;
            }
        }
    }
    check
}

fn tracing_error(error: &ClientError) {
    eprintln!(
        "an acknowledged order could not be read back: {}",
        error_name(error)
    );
}

async fn flash_units(
    state: &ThreadState,
    sku: &Sku,
    since: UnixMillis,
) -> anyhow::Result<FlashUnits> {
    let mut units = FlashUnits::default();
    for shopper in &state.shoppers {
        let mut cursor = None;
        loop {
            let (orders, next_cursor) = shopper.client.orders(cursor, 100).await?;
            let older = orders.iter().any(|o| o.created_at < since);
            for order in orders.iter().filter(|o| o.created_at >= since) {
                if order.status == OrderStatus::Cancelled {
                    continue;
                }
                let held: i64 = order
                    .lines
                    .iter()
                    .filter(|(line, _)| line == sku)
                    .map(|(_, quantity)| i64::from(*quantity))
                    .sum();
                units.units += held;
                if order.status == OrderStatus::Paid {
                    units.paid_units += held;
                }
                units.orders += u64::from(held > 0);
            }
            // Newest first: past the sale's start, the rest is older.
            match next_cursor {
                Some(next) if !older => cursor = Some(next),
                _ => break,
            }
        }
    }
    Ok(units)
}
