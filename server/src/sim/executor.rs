//! A deterministic single-threaded executor with a simulated clock.
//!
//! Tasks that are ready run one at a time, the next one chosen by the
//! seeded random source, so that a seed picks one interleaving and replays
//! it exactly. When no task is ready, the clock jumps to the earliest
//! timer: a simulated hour passes in no time, and nothing sleeps for real.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

type Task = Pin<Box<dyn Future<Output = ()>>>;

/// The simulated clock and the timers waiting on it. Shared with the
/// simulated store, whose futures must be `Send`, hence the mutex (only
/// the simulator's one thread ever takes it).
#[derive(Debug)]
pub struct Timers {
    now_ms: u64,
    sequence: u64,
    waiting: BTreeMap<(u64, u64), Waker>,
}

/// A handle on the simulated clock.
#[derive(Debug, Clone)]
pub struct Clock(Arc<Mutex<Timers>>);

impl Clock {
    pub fn starting_at(now_ms: u64) -> Clock {
        Clock(Arc::new(Mutex::new(Timers {
            now_ms,
            sequence: 0,
            waiting: BTreeMap::new(),
        })))
    }

    pub fn now_ms(&self) -> u64 {
        self.lock().now_ms
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Timers> {
        self.0
            .lock()
            .expect("the simulator does not panic while holding its clock")
    }

    /// Resolves once `duration` has passed on this clock.
    pub fn sleep(&self, duration: Duration) -> Sleep {
        let deadline = self.now_ms() + duration.as_millis() as u64;
        Sleep {
            clock: self.clone(),
            deadline,
            key: None,
        }
    }

    /// Moves the clock to the earliest timer and wakes every timer due
    /// then; false if no timer waits.
    fn advance(&self) -> bool {
        let mut timers = self.lock();
        let Some((&(deadline, _), _)) = timers.waiting.iter().next() else {
            return false;
        };
        timers.now_ms = timers.now_ms.max(deadline);
        while let Some(entry) = timers.waiting.first_entry() {
            if entry.key().0 > deadline {
                break;
            }
            entry.remove().wake();
        }
        true
    }

    /// Moves the clock forward by `by` without waking anyone early: the
    /// timers due meanwhile fire on the executor's next steps.
    pub fn skip(&self, by: Duration) {
        let mut timers = self.lock();
        timers.now_ms += by.as_millis() as u64;
        let due: Vec<(u64, u64)> = timers
            .waiting
            .range(..=(timers.now_ms, u64::MAX))
            .map(|(key, _)| *key)
            .collect();
        for key in due {
            if let Some(waker) = timers.waiting.remove(&key) {
                waker.wake();
            }
        }
    }

    fn forget_timers(&self) {
        self.lock().waiting.clear();
    }
}

/// A timer on the simulated clock.
#[derive(Debug)]
pub struct Sleep {
    clock: Clock,
    deadline: u64,
    key: Option<(u64, u64)>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut timers = self.clock.lock();
        if timers.now_ms >= self.deadline {
            return Poll::Ready(());
        }
        let key = match self.key {
            Some(key) => key,
            None => {
                timers.sequence += 1;
                (self.deadline, timers.sequence)
            }
        };
        timers.waiting.insert(key, cx.waker().clone());
        drop(timers);
        self.key = Some(key);
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.clock.lock().waiting.remove(&key);
        }
    }
}

struct TaskWaker {
    id: u64,
    ready: Arc<Mutex<Vec<u64>>>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.lock().expect("not poisoned").push(self.id);
    }
}

/// The tasks of one simulated process, and the order they run in.
pub struct Executor {
    clock: Clock,
    rng: std::cell::RefCell<StdRng>,
    tasks: std::cell::RefCell<HashMap<u64, Task>>,
    /// Spawned while another task ran; joins `tasks` before the next step.
    spawned: std::cell::RefCell<Vec<(u64, Task)>>,
    next_id: std::cell::Cell<u64>,
    ready: Arc<Mutex<Vec<u64>>>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("tasks", &self.tasks.borrow().len())
            .finish_non_exhaustive()
    }
}

impl Executor {
    pub fn new(clock: Clock, seed: u64) -> Executor {
        Executor {
            clock,
            rng: std::cell::RefCell::new(StdRng::seed_from_u64(seed)),
            tasks: Default::default(),
            spawned: Default::default(),
            next_id: std::cell::Cell::new(0),
            ready: Default::default(),
        }
    }

    pub fn spawn(&self, task: Task) {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.spawned.borrow_mut().push((id, task));
        self.ready.lock().expect("not poisoned").push(id);
    }

    pub fn tasks(&self) -> usize {
        self.tasks.borrow().len() + self.spawned.borrow().len()
    }

    /// Runs one ready task until it waits, or moves the clock to the next
    /// timer. False when nothing is ready and no timer waits: every task
    /// is blocked for good.
    pub fn step(&self) -> bool {
        self.tasks
            .borrow_mut()
            .extend(self.spawned.borrow_mut().drain(..));
        let id = {
            let mut ready = self.ready.lock().expect("not poisoned");
            if ready.is_empty() {
                drop(ready);
                return self.clock.advance();
            }
            let pick = self.rng.borrow_mut().random_range(0..ready.len());
            ready.swap_remove(pick)
        };
        // Taken out while it runs, so that it may spawn or wake others.
        let Some(mut task) = self.tasks.borrow_mut().remove(&id) else {
            return true;
        };
        let waker = Waker::from(Arc::new(TaskWaker {
            id,
            ready: self.ready.clone(),
        }));
        if task
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
        {
            self.tasks.borrow_mut().insert(id, task);
        }
        true
    }

    /// Drops every task where it stands, as a crash of the process does.
    pub fn kill_all(&self) {
        let tasks = std::mem::take(&mut *self.tasks.borrow_mut());
        let spawned = std::mem::take(&mut *self.spawned.borrow_mut());
        drop(tasks);
        drop(spawned);
        self.ready.lock().expect("not poisoned").clear();
        self.clock.forget_timers();
    }

    /// Runs `future` to completion on this executor, with whatever else is
    /// spawned; `None` if it can never finish.
    pub fn block_on<T: 'static>(&self, future: impl Future<Output = T> + 'static) -> Option<T> {
        let out = std::rc::Rc::new(std::cell::RefCell::new(None));
        let slot = out.clone();
        self.spawn(Box::pin(async move {
            *slot.borrow_mut() = Some(future.await);
        }));
        while out.borrow().is_none() {
            if !self.step() {
                return None;
            }
        }
        out.take()
    }
}
