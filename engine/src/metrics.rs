//! What the pipeline publishes for a metrics scraper (`--metrics`), and how it
//! crosses threads without costing the packet path a lock, a syscall or an
//! allocation.
//!
//! Each thread keeps its counters and histograms where they already are (plain
//! integers it owns) and copies them into its [`Share`] at a bounded cadence
//! ([`PUBLISH_EVERY`], and once more when it stops). The copy is taken with
//! [`Mutex::try_lock`]: if the scraper holds the lock at that moment the thread
//! does not wait, it keeps its values and publishes them next time. Only the final
//! copy waits for the lock (the thread has stopped working by then), so what a
//! scrape shows after the run equals the run's summary. A scrape is at most one
//! cadence behind while the run is going.
//!
//! Histograms (`hdrhistogram`, fixed bounds, no auto-resize) accumulate in their
//! thread; publishing adds them into the shared copy and resets the thread's
//! own, which allocates nothing since both have the same bounds.
//!
//! Nothing here reads the clock on behalf of the sans-IO engine: the worker loop
//! (crate::pipeline) reads [`Instant`] once per batch, and only when metrics are
//! wanted.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::stats::ReaderStats;
use crate::worker::WorkerStats;

/// How often a thread publishes at most (checked once per batch).
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// Highest value a histogram holds, in ns (60 s); larger values are clamped.
pub const HIST_MAX_NS: u64 = 60_000_000_000;

/// A histogram of nanoseconds, 1 ns to 60 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, HIST_MAX_NS, 3).expect("valid histogram bounds");
    h.auto(false);
    h
}

/// Nanoseconds on the process's monotonic clock, since the first call. Used to
/// stamp a [`crate::verdict::Record`] when it is pushed on its ring; never 0 (0
/// means "not stamped").
pub fn mono_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// A value published by one thread for the scraper.
#[derive(Debug, Default)]
pub struct Share<T> {
    value: Mutex<T>,
}

impl<T> Share<T> {
    pub fn new(value: T) -> Self {
        Share {
            value: Mutex::new(value),
        }
    }
    /// The publishing thread's side: `None` when the scraper holds the lock (try
    /// again later, never wait).
    pub fn try_publish(&self) -> Option<MutexGuard<'_, T>> {
        match self.value.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }
    /// Waits for the lock: the scraper, and a thread's final publication.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.value.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a worker publishes.
#[derive(Debug, Clone)]
pub struct WorkerSnapshot {
    pub stats: WorkerStats,
    /// Sessions held now.
    pub open_sessions: u64,
    /// Times the worker waited for room on its record ring.
    pub record_waits: u64,
    pub notices_lost: u64,
    /// Batches waiting on the worker's dispatch rings (all readers), and their
    /// capacity.
    pub dispatch_ring: u64,
    pub dispatch_ring_capacity: u64,
    /// Records waiting on the worker's record ring, and its capacity.
    pub record_ring: u64,
    pub record_ring_capacity: u64,
    /// Processing time per packet, ns: each batch's wall time divided by its
    /// packets, counted once per packet of the batch.
    pub packet_ns: Histogram<u64>,
    /// The exact sum of the batch times behind `packet_ns`, ns.
    pub packet_ns_sum: u64,
    /// The worker has stopped: these are its final counters.
    pub finished: bool,
}

impl Default for WorkerSnapshot {
    fn default() -> Self {
        WorkerSnapshot {
            stats: WorkerStats::default(),
            open_sessions: 0,
            record_waits: 0,
            notices_lost: 0,
            dispatch_ring: 0,
            dispatch_ring_capacity: 0,
            record_ring: 0,
            record_ring_capacity: 0,
            packet_ns: histogram(),
            packet_ns_sum: 0,
            finished: false,
        }
    }
}

/// What a replay's reader publishes (a live run publishes its own counters).
#[derive(Debug, Clone, Default)]
pub struct ReaderSnapshot {
    /// Per point, in the order the points were given.
    pub points: Vec<ReaderStats>,
}

/// Everything a pipeline publishes: one share per worker and one for the reader.
/// The CLI makes one, hands it to the pipeline, and its scraper reads it.
#[derive(Debug, Default)]
pub struct Telemetry {
    workers: OnceLock<Vec<Arc<Share<WorkerSnapshot>>>>,
    pub reader: Share<ReaderSnapshot>,
}

impl Telemetry {
    /// Makes `n` worker shares (once; later calls return the same).
    pub fn worker_shares(&self, n: usize) -> &[Arc<Share<WorkerSnapshot>>] {
        self.workers
            .get_or_init(|| (0..n).map(|_| Arc::new(Share::default())).collect())
    }
    /// The workers' shares, once the pipeline has made them.
    pub fn workers(&self) -> &[Arc<Share<WorkerSnapshot>>] {
        self.workers.get().map_or(&[], Vec::as_slice)
    }
}

/// The worker loop's side: times batches, publishes at the cadence.
#[derive(Debug)]
pub(crate) struct WorkerProbe {
    pub(crate) share: Arc<Share<WorkerSnapshot>>,
    packet_ns: Histogram<u64>,
    packet_ns_sum: u64,
    last_publish: Instant,
}

impl WorkerProbe {
    pub(crate) fn new(share: Arc<Share<WorkerSnapshot>>) -> Self {
        WorkerProbe {
            share,
            packet_ns: histogram(),
            packet_ns_sum: 0,
            last_publish: Instant::now(),
        }
    }
    /// One batch of `packets` packets took `took`.
    #[inline]
    pub(crate) fn batch(&mut self, took: Duration, packets: u64) {
        if packets == 0 {
            return;
        }
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.packet_ns_sum = self.packet_ns_sum.saturating_add(ns);
        let per = ns / packets;
        self.packet_ns
            .saturating_record_n(per.clamp(1, HIST_MAX_NS), packets);
    }
    /// Whether the cadence says publish now.
    #[inline]
    pub(crate) fn due(&self, now: Instant) -> bool {
        now.duration_since(self.last_publish) >= PUBLISH_EVERY
    }
    /// Publishes with `fill` (which sets the counters); with `last`, waits for the
    /// lock.
    pub(crate) fn publish(
        &mut self,
        now: Instant,
        last: bool,
        fill: impl FnOnce(&mut WorkerSnapshot),
    ) {
        let guard = if last {
            Some(self.share.lock())
        } else {
            self.share.try_publish()
        };
        let Some(mut g) = guard else { return };
        fill(&mut g);
        g.finished = last;
        g.packet_ns_sum = self.packet_ns_sum;
        // Same bounds: cannot fail, allocates nothing.
        let _ = g.packet_ns.add(&self.packet_ns);
        drop(g);
        self.packet_ns.reset();
        self.last_publish = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_probe_publishes_batch_time_per_packet() {
        let share = Arc::new(Share::default());
        let mut p = WorkerProbe::new(Arc::clone(&share));
        p.batch(Duration::from_micros(10), 100);
        p.publish(Instant::now(), false, |s| s.open_sessions = 3);
        let s = share.lock();
        assert_eq!(s.packet_ns.len(), 100);
        assert_eq!(s.packet_ns.value_at_quantile(0.5), 100);
        assert_eq!(s.open_sessions, 3);
        assert!(!s.finished);
    }

    #[test]
    fn test_probe_skips_when_scraper_holds_lock() {
        let share = Arc::new(Share::default());
        let mut p = WorkerProbe::new(Arc::clone(&share));
        p.batch(Duration::from_micros(1), 1);
        let held = share.lock();
        p.publish(Instant::now(), false, |s| s.open_sessions = 1);
        drop(held);
        assert_eq!(share.lock().open_sessions, 0);
        p.publish(Instant::now(), true, |s| s.open_sessions = 2);
        let s = share.lock();
        assert_eq!(
            (s.open_sessions, s.packet_ns.len(), s.finished),
            (2, 1, true)
        );
    }
}
