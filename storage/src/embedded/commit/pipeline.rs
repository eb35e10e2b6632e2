//! The bookkeeping of group commit's second stage, apart from the threads
//! that run it: which applied groups an fsync covers, whose writers it may
//! tell when it returns, and when the commit thread must wait. It runs no
//! fsync, takes no lock and reads no clock; it answers what its caller is
//! to do (wait, wake a sync thread, wake the commit thread), and
//! `commit.rs` keeps it under one mutex and does that. So a seeded test
//! (below) drives it through interleavings of the commit thread and the
//! sync threads that real threads reach once in many runs, and replays any
//! failure from its seed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Applied, SYNC_THREADS};
use crate::limits::SYNC_PIPELINE_MAX;

/// Groups whose writers wait to be told, at most. Past `SYNC_PIPELINE_MAX`
/// a group is handed over only when every waiting group is covered and
/// fewer than `SYNC_THREADS` fsyncs run (`has_room`). The group just before
/// it is then the last one an fsync covers, and that fsync is still running
/// (else the group would have been told). So k groups past the bound have k
/// fsyncs running, one ending at the group before each, all begun before
/// the k-th was handed over, when fewer than `SYNC_THREADS` ran: k is at
/// most `SYNC_THREADS - 1`. The model below reaches this bound.
pub(super) const WAITING_MAX: usize = SYNC_PIPELINE_MAX + SYNC_THREADS - 1;

#[derive(Default)]
pub(super) struct Pipeline {
    /// Applied groups whose writers have not been told, oldest first.
    waiting: VecDeque<Applied>,
    /// The newest group handed over.
    handed: u64,
    /// The newest group an fsync began after: every group up to it is
    /// covered by an fsync under way or done.
    covered: u64,
    /// fsyncs under way.
    running: usize,
    /// The commit thread waits for room, and whoever makes it must wake it.
    commit_waits: bool,
    /// The commit thread has stopped.
    closed: bool,
}

/// What the commit thread does once it has handed a group over.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum HandedOver {
    /// There is nothing to overlap (no fsync under way, no write queued):
    /// it runs the round itself, which saves a lone write a thread wake-up.
    SyncHere,
    /// Wake a sync thread to run the round.
    WakeSyncThread,
}

/// One fsync's share of the bookkeeping.
#[derive(Debug)]
pub(super) struct Round {
    /// It covers every group through this one.
    pub(super) through: u64,
    /// Whether a group it is the first to cover wrote something; if none
    /// did (each failed to apply), there is nothing to fsync.
    pub(super) needs_sync: bool,
    /// How long the groups it is the first to cover waited for it, summed.
    pub(super) handover: Duration,
    /// Its start made room the commit thread waits for: wake it.
    pub(super) wake_commit: bool,
}

/// What an fsync's return leaves its caller to do.
pub(super) struct Ended {
    /// The groups whose writers are to be told the outcome.
    pub(super) told: Vec<Applied>,
    /// Room the commit thread waits for was made: wake it.
    pub(super) wake_commit: bool,
}

impl Pipeline {
    /// Hands `group`, just applied, over to be made durable, or gives it
    /// back when there is no room: the caller then waits until a round's
    /// `wake_commit` and tries again. `more_queued`: writes wait to be
    /// applied after it.
    pub(super) fn hand_over(
        &mut self,
        group: Applied,
        more_queued: bool,
    ) -> Result<HandedOver, Applied> {
        assert_eq!(group.number, self.handed + 1, "groups come in order");
        if !self.has_room() {
            self.commit_waits = true;
            return Err(group);
        }
        self.commit_waits = false;
        self.handed = group.number;
        self.waiting.push_back(group);
        assert!(self.waiting.len() <= WAITING_MAX, "{}", self.waiting.len());
        if !more_queued && self.running == 0 && self.waiting.len() == 1 {
            Ok(HandedOver::SyncHere)
        } else {
            Ok(HandedOver::WakeSyncThread)
        }
    }

    /// Whether a group may be handed over now. Past `SYNC_PIPELINE_MAX`
    /// waiting groups, only when all of them are covered and a sync thread
    /// is idle: the commit thread would otherwise wait, with the group it
    /// applied in hand, for fsyncs that began before it was applied. Those
    /// may hang (a disk's stall), and then every later write would wait
    /// for them too while sync threads idle.
    fn has_room(&self) -> bool {
        self.waiting.len() < SYNC_PIPELINE_MAX
            || (self.handed == self.covered && self.running < SYNC_THREADS)
    }

    /// Whether a group waits that no fsync covers: a sync thread is to
    /// begin a round.
    pub(super) fn uncovered(&self) -> bool {
        self.handed > self.covered
    }

    pub(super) fn close(&mut self) {
        self.closed = true;
    }

    pub(super) fn closed(&self) -> bool {
        self.closed
    }

    /// Begins a round: an fsync begun `now` covers every group handed over
    /// so far.
    pub(super) fn begin_round(&mut self, now: Instant) -> Round {
        assert!(self.uncovered(), "a round begins with a group to cover");
        // One per sync thread; the commit thread runs one only when none runs.
        assert!(self.running < SYNC_THREADS, "{}", self.running);
        let after = self.covered;
        self.covered = self.handed;
        self.running += 1;
        // Groups up to `after` are covered by an fsync begun earlier; a
        // group that failed to apply wrote nothing and needs no sync.
        let (mut needs_sync, mut handover) = (false, Duration::ZERO);
        for group in &self.waiting {
            if group.number > after && group.outcome.is_ok() {
                needs_sync = true;
                handover += now.saturating_duration_since(group.at);
            }
        }
        Round {
            through: self.covered,
            needs_sync,
            handover,
            wake_commit: self.room_made(),
        }
    }

    /// Ends `round`. When its fsync succeeded (`synced`), the writers of
    /// every group it covers that a later fsync has not told already are
    /// told; when it failed, those of every waiting group (the journal's
    /// state is unknown, so none of them can be made durable).
    pub(super) fn end_round(&mut self, round: &Round, synced: bool) -> Ended {
        assert!(self.running > 0 && round.through <= self.covered);
        self.running -= 1;
        let told = if synced {
            let covered = self
                .waiting
                .iter()
                .take_while(|g| g.number <= round.through)
                .count();
            self.waiting.drain(..covered).collect()
        } else {
            self.waiting.drain(..).collect()
        };
        Ended {
            told,
            wake_commit: self.room_made(),
        }
    }

    /// Whether the commit thread waits for room that is there now.
    fn room_made(&mut self) -> bool {
        let wake = self.commit_waits && self.has_room();
        if wake {
            self.commit_waits = false;
        }
        wake
    }
}

/// A seeded model of the commit thread and the sync threads around
/// `Pipeline`, as `commit.rs` drives it: each step is one thread's turn
/// under the lock, or an fsync returning; a condvar wakes only a thread
/// waiting on it; and one fsync on a sync thread may hang for ever, as
/// `fault::SyncFaults::hold_next` holds one. Each seed also draws how much
/// faster the commit thread runs than the sync threads wake, so the rare
/// interleavings are common here. Replay a seed with
/// `SOUK_PIPELINE_SEED=<seed>`, which also prints its steps.
#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Instant;

    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::error::StorageError;

    /// Groups the commit thread applies in one run.
    const GROUPS: u64 = 40;
    const SEEDS: u64 = 20_000;

    enum Commit {
        /// Applies the next group, or closes once all are applied.
        Apply,
        HandOver(Applied),
        /// Waits on the `room` condvar.
        WaitsForRoom(Applied),
        /// Runs a round itself (an index into `Model::rounds`).
        Syncs(Round, usize),
        Done,
    }

    enum Sync {
        /// Takes the lock: begins a round, stops, or waits for work.
        Check,
        /// Waits on the `work` condvar.
        WaitsForWork,
        Syncs(Round, usize),
        Done,
    }

    /// A round begun: at which step, and the last group it covers.
    struct Begun {
        step: usize,
        through: u64,
    }

    struct Model {
        rng: ChaCha8Rng,
        /// How much likelier the commit thread is to take the next step
        /// than a sync thread.
        commit_weight: u32,
        /// In percent: writes are queued behind a group when it is handed over.
        more_queued_percent: u32,
        /// Which fsync on a sync thread hangs (0: the first), if any.
        hang_at: Option<usize>,
        pipeline: Pipeline,
        commit: Commit,
        syncs: Vec<Sync>,
        applied: u64,
        /// The step at which each group was handed over.
        handed_at: BTreeMap<u64, usize>,
        rounds: Vec<Begun>,
        sync_thread_fsyncs: usize,
        hung: Option<usize>,
        told: BTreeMap<u64, usize>,
        step: usize,
        trace: Option<Vec<String>>,
        /// Hand-overs past `SYNC_PIPELINE_MAX` waiting groups.
        past_bound: usize,
    }

    impl Model {
        fn new(seed: u64, trace: bool) -> Model {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let commit_weight = [1, 4, 60][rng.random_range(0..3)];
            let more_queued_percent = [10, 50, 90][rng.random_range(0..3)];
            let hang_at = match rng.random_range(0..4) {
                0 => None,
                _ => Some(rng.random_range(0..3)),
            };
            Model {
                rng,
                commit_weight,
                more_queued_percent,
                hang_at,
                pipeline: Pipeline::default(),
                commit: Commit::Apply,
                syncs: (0..SYNC_THREADS).map(|_| Sync::Check).collect(),
                applied: 0,
                handed_at: BTreeMap::new(),
                rounds: Vec::new(),
                sync_thread_fsyncs: 0,
                hung: None,
                told: BTreeMap::new(),
                step: 0,
                trace: trace.then(Vec::new),
                past_bound: 0,
            }
        }

        fn note(&mut self, what: impl FnOnce() -> String) {
            if let Some(trace) = &mut self.trace {
                let what = what();
                let p = &self.pipeline;
                trace.push(format!(
                    "{:4} {what:<44} waiting {:2}, handed {:2}, covered {:2}, running {}",
                    self.step,
                    p.waiting.len(),
                    p.handed,
                    p.covered,
                    p.running
                ));
            }
        }

        /// Runs until no thread can take a step; returns why it is wrong.
        fn run(&mut self, now: Instant) -> Result<(), String> {
            loop {
                // 0 is the commit thread, 1.. the sync threads.
                let mut runnable = Vec::with_capacity(1 + SYNC_THREADS);
                if matches!(
                    self.commit,
                    Commit::Apply | Commit::HandOver(_) | Commit::Syncs(..)
                ) {
                    runnable.push((0, self.commit_weight));
                }
                for (i, sync) in self.syncs.iter().enumerate() {
                    let runs = match sync {
                        Sync::Check => true,
                        Sync::Syncs(_, round) => self.hung != Some(*round),
                        Sync::WaitsForWork | Sync::Done => false,
                    };
                    if runs {
                        runnable.push((1 + i, 1));
                    }
                }
                let total: u32 = runnable.iter().map(|(_, weight)| weight).sum();
                if total == 0 {
                    return self.check_quiet();
                }
                let mut pick = self.rng.random_range(0..total);
                let (actor, _) = *runnable
                    .iter()
                    .find(|(_, weight)| {
                        let found = pick < *weight;
                        pick = pick.saturating_sub(*weight);
                        found
                    })
                    .expect("a pick below the total");
                self.step += 1;
                if actor == 0 {
                    self.commit_step(now)?;
                } else {
                    self.sync_step(actor - 1, now)?;
                }
            }
        }

        fn commit_step(&mut self, now: Instant) -> Result<(), String> {
            match std::mem::replace(&mut self.commit, Commit::Done) {
                Commit::Apply if self.applied < GROUPS => {
                    self.applied += 1;
                    // Some groups fail to apply: they need no fsync.
                    let outcome = match self.rng.random_range(0..10) {
                        0 => Err(StorageError::Io("injected".into())),
                        _ => Ok(()),
                    };
                    let number = self.applied;
                    self.commit = Commit::HandOver(Applied {
                        number,
                        at: now,
                        outcome,
                        completions: Vec::new(),
                    });
                    self.note(|| format!("commit: applies {number}"));
                }
                Commit::Apply => {
                    self.pipeline.close();
                    for sync in &mut self.syncs {
                        if matches!(sync, Sync::WaitsForWork) {
                            *sync = Sync::Check;
                        }
                    }
                    self.note(|| "commit: closes".into());
                }
                Commit::HandOver(group) | Commit::WaitsForRoom(group) => {
                    let number = group.number;
                    let more_queued = self.applied < GROUPS
                        && self.rng.random_range(0..100) < self.more_queued_percent;
                    match self.pipeline.hand_over(group, more_queued) {
                        Ok(handed) => {
                            self.handed_at.insert(number, self.step);
                            if self.pipeline.waiting.len() > SYNC_PIPELINE_MAX {
                                self.past_bound += 1;
                            }
                            self.note(|| format!("commit: hands {number} over: {handed:?}"));
                            if handed == HandedOver::SyncHere {
                                let (round, index) = self.begin_round(now);
                                if round.wake_commit {
                                    return Err("the commit thread wakes itself".into());
                                }
                                self.commit = Commit::Syncs(round, index);
                            } else {
                                self.wake_a_sync_thread();
                                self.commit = Commit::Apply;
                            }
                        }
                        Err(group) => {
                            self.note(|| format!("commit: waits for room with {number}"));
                            self.commit = Commit::WaitsForRoom(group);
                        }
                    }
                }
                Commit::Syncs(round, index) => {
                    if self.end_round(round, index)? {
                        return Err("the commit thread wakes itself".into());
                    }
                    self.commit = Commit::Apply;
                }
                Commit::Done => unreachable!("not runnable"),
            }
            Ok(())
        }

        fn sync_step(&mut self, i: usize, now: Instant) -> Result<(), String> {
            match std::mem::replace(&mut self.syncs[i], Sync::Done) {
                Sync::Check if self.pipeline.uncovered() => {
                    let (round, index) = self.begin_round(now);
                    if round.needs_sync {
                        if self.hang_at == Some(self.sync_thread_fsyncs) {
                            self.hung = Some(index);
                        }
                        self.sync_thread_fsyncs += 1;
                    }
                    let wake = round.wake_commit;
                    let hung = self.hung == Some(index);
                    self.note(|| format!("sync {i}: runs round {index}, hung: {hung}"));
                    self.syncs[i] = Sync::Syncs(round, index);
                    if wake {
                        self.wake_commit()?;
                    }
                }
                Sync::Check if self.pipeline.closed() => {
                    self.note(|| format!("sync {i}: stops"));
                }
                Sync::Check => {
                    self.note(|| format!("sync {i}: waits for work"));
                    self.syncs[i] = Sync::WaitsForWork;
                }
                Sync::Syncs(round, index) => {
                    self.syncs[i] = Sync::Check;
                    if self.end_round(round, index)? {
                        self.wake_commit()?;
                    }
                }
                Sync::WaitsForWork | Sync::Done => unreachable!("not runnable"),
            }
            Ok(())
        }

        fn begin_round(&mut self, now: Instant) -> (Round, usize) {
            let round = self.pipeline.begin_round(now);
            self.rounds.push(Begun {
                step: self.step,
                through: round.through,
            });
            let index = self.rounds.len() - 1;
            self.note(|| format!("round {index} begins"));
            (round, index)
        }

        /// Ends a round whose fsync succeeded and checks whom it told;
        /// returns whether to wake the commit thread.
        fn end_round(&mut self, round: Round, index: usize) -> Result<bool, String> {
            let ended = self.pipeline.end_round(&round, true);
            let begun = &self.rounds[index];
            for group in &ended.told {
                let number = group.number;
                if let Some(earlier) = self.told.insert(number, index) {
                    return Err(format!(
                        "group {number} told twice: rounds {earlier}, {index}"
                    ));
                }
                // Handed over in the step the round began: before it, under the lock.
                if number > begun.through || self.handed_at[&number] > begun.step {
                    return Err(format!(
                        "round {index} told group {number}, which was handed over after it began"
                    ));
                }
            }
            let told = ended.told.len();
            self.note(|| format!("round {index} ends: tells {told}"));
            Ok(ended.wake_commit)
        }

        fn wake_a_sync_thread(&mut self) {
            let waiting: Vec<usize> = (0..self.syncs.len())
                .filter(|&i| matches!(self.syncs[i], Sync::WaitsForWork))
                .collect();
            if !waiting.is_empty() {
                let i = waiting[self.rng.random_range(0..waiting.len())];
                self.syncs[i] = Sync::Check;
            }
        }

        fn wake_commit(&mut self) -> Result<(), String> {
            match std::mem::replace(&mut self.commit, Commit::Done) {
                Commit::WaitsForRoom(group) => {
                    self.commit = Commit::HandOver(group);
                    Ok(())
                }
                _ => Err("woke the commit thread, which was not waiting".into()),
            }
        }

        /// Nothing can take a step: every group was handed over and told,
        /// but for those only the hung fsync covers when no later group
        /// came to be covered by another.
        fn check_quiet(&self) -> Result<(), String> {
            if let Commit::WaitsForRoom(group) = &self.commit {
                return Err(format!(
                    "the commit thread waits for room with group {} in hand, for ever",
                    group.number
                ));
            }
            if !matches!(self.commit, Commit::Done) {
                return Err("the commit thread stopped part-way".into());
            }
            let hung_through = self.hung.map(|round| self.rounds[round].through);
            for number in 1..=GROUPS {
                let may_wait = hung_through == Some(GROUPS);
                if !may_wait && !self.told.contains_key(&number) {
                    return Err(format!(
                        "group {number} never told (the hung fsync covers through {hung_through:?})"
                    ));
                }
            }
            Ok(())
        }
    }

    struct NamesSeedOnPanic(u64);

    impl Drop for NamesSeedOnPanic {
        fn drop(&mut self) {
            if std::thread::panicking() {
                eprintln!("seed {0} (replay with SOUK_PIPELINE_SEED={0})", self.0);
            }
        }
    }

    fn replay(seed: u64) -> (Result<(), String>, Model) {
        let mut model = Model::new(seed, true);
        let outcome = model.run(Instant::now());
        (outcome, model)
    }

    /// Every group is told once, by an fsync begun after it was handed
    /// over; no group waits for a hung fsync that began before it was
    /// applied; and the commit thread never waits for room that only a
    /// hung fsync could make.
    #[test]
    fn every_group_is_told_once_and_none_waits_for_an_earlier_hung_fsync() {
        if let Some(seed) = std::env::var("SOUK_PIPELINE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            let (outcome, model) = replay(seed);
            for line in model.trace.unwrap_or_default() {
                eprintln!("{line}");
            }
            outcome.unwrap();
            return;
        }
        let now = Instant::now();
        let (mut past_bound, mut hung) = (0, 0);
        for seed in 0..SEEDS {
            // A bookkeeping assertion panics inside the run: name the seed.
            let _seed = NamesSeedOnPanic(seed);
            let mut model = Model::new(seed, false);
            if let Err(wrong) = model.run(now) {
                let (_, model) = replay(seed);
                let trace = model.trace.unwrap_or_default();
                let tail = &trace[trace.len().saturating_sub(60)..];
                panic!(
                    "seed {seed}: {wrong} (replay with SOUK_PIPELINE_SEED={seed})\n{}",
                    tail.join("\n")
                );
            }
            past_bound += model.past_bound;
            hung += usize::from(model.hung.is_some());
        }
        // The interleavings that matter were reached.
        assert!(
            past_bound > 0 && hung > SEEDS as usize / 2,
            "{past_bound} {hung}"
        );
    }
}
