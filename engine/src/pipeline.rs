//! Threads and rings: the only module of the engine that starts threads.
//!
//! ```text
//!  reader 0..R --batches--> worker 0..N --records--> exporter --> sink
//!         <--empty batches---         (one SPSC ring each way per reader and worker)
//! ```
//!
//! A reader (the replay's merge, or one live capture thread per receive queue)
//! decodes and hashes each packet and appends it to the current batch of the worker
//! that owns its flow; a full batch goes over that reader's bounded
//! single-producer/single-consumer ring (rtrb) to that worker. Emptied batches come
//! back on a return ring, so after start-up nothing is allocated. Workers push one
//! record per ended session on their own record ring; one exporter thread drains all
//! of them.
//!
//! Packet bytes: a replay's workers read payloads from the mapped captures, which
//! live for the run ([`PacketMeta::frame`] is an offset in them). A live capture
//! must give its frames back to the kernel at once, so its readers copy each TCP
//! payload into the batch ([`Dispatcher::push_copy`], bounded by
//! [`PipelineConfig::batch_bytes`]).
//! With pairing on, each worker also tells the exporter's pairer of sessions still
//! open, on a small notice ring of its own (see [`crate::pairing::Notice`]).
//!
//! Backpressure: [`Overflow::Wait`] (replay: a file can wait, and nothing may be
//! lost) or [`Overflow::Drop`] (live capture: the wire cannot wait; every drop is
//! counted). Waiting spins briefly, then yields, then sleeps in short steps: a 2-core
//! machine running more threads than cores must not burn the core the producer needs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_utils::Backoff;

use crate::capture::{CaptureError, CaptureReader, Frame};
use crate::clock;
use crate::flow::worker_for;
use crate::metrics::{Share, Telemetry, WorkerProbe, WorkerSnapshot};
use crate::outbox::RingOutput;
use crate::pairing::{Notice, PairConfig, PairStats, Pairer};
use crate::session::PointId;
use crate::stats::ReaderStats;
use crate::time::{Nanos, Timestamp};
use crate::verdict::{EndReason, Record};
use crate::wire;
use crate::worker::{PacketMeta, Worker, WorkerConfig, WorkerStats};

/// What to do when a worker's ring is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Wait for the worker (replay).
    Wait,
    /// Drop the packet and count it (live capture).
    Drop,
}

/// Sizes and policies of the pipeline.
#[derive(Clone, Copy, Debug)]
pub struct PipelineConfig {
    pub workers: usize,
    /// Per-worker settings; `max_sessions` here is the total, split evenly.
    pub worker: WorkerConfig,
    /// Packets per batch.
    pub batch: usize,
    /// Batches in flight per worker (the depth of its ring).
    pub batches_in_flight: usize,
    /// Records a worker can queue for the exporter. A record is about 8 KB (it
    /// carries each point's TLS facts): 1024 of them are 8 MiB per worker.
    pub record_ring: usize,
    /// Pairing notices a worker can queue for the exporter (64 bytes each).
    pub notice_ring: usize,
    /// Every this much capture time, every worker is told the time, so that idle
    /// workers expire their sessions too.
    pub tick: Nanos,
    pub overflow: Overflow,
    /// Joining the legs of proxied sessions on the exporter; its `points` and
    /// `correlate` are taken from `worker`.
    pub pairing: PairConfig,
    /// Readers feeding the workers, each with its own [`Dispatcher`]; a worker
    /// finishes once every reader has finished.
    pub readers: usize,
    /// Payload bytes one batch can carry for [`Dispatcher::push_copy`] (at least
    /// [`MIN_BATCH_BYTES`] when not 0); 0: payloads stay in the capture (replay).
    pub batch_bytes: usize,
    /// How sessions still open when the input ends are reported: `EndOfInput` for
    /// a capture file, `Shutdown` for a live capture that was stopped.
    pub open_at_end: EndReason,
}

impl PipelineConfig {
    /// The exporter's pairing settings: `pairing`, with the points and the
    /// comparison of `worker`.
    pub fn pair_config(&self) -> PairConfig {
        PairConfig {
            points: self.worker.points,
            correlate: self.worker.correlate,
            // A leg that went quiet has ended by then.
            max_wait: Nanos(
                self.worker
                    .idle_timeout
                    .0
                    .saturating_add(self.worker.linger.0),
            ),
            ..self.pairing
        }
    }
}

/// The smallest non-zero [`PipelineConfig::batch_bytes`]: room for any frame.
pub const MIN_BATCH_BYTES: usize = 65_536;

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            workers: 1,
            worker: WorkerConfig::default(),
            batch: 256,
            batches_in_flight: 64,
            record_ring: 1024,
            notice_ring: 1024,
            tick: Nanos::from_secs(1),
            overflow: Overflow::Wait,
            pairing: PairConfig::default(),
            readers: 1,
            batch_bytes: 0,
            open_at_end: EndReason::EndOfInput,
        }
    }
}

/// One batch of packets for one worker.
#[derive(Debug)]
pub struct Batch {
    pub packets: Vec<PacketMeta>,
    /// Payloads copied by [`Dispatcher::push_copy`]: each such packet's `frame` is
    /// an offset in here.
    pub bytes: Vec<u8>,
    /// Capture time the worker may advance its clock to after this batch.
    pub now: Timestamp,
    /// No batch follows: judge every session and stop.
    pub last: bool,
}

/// Sleeps progressively while a ring is empty or full.
#[derive(Debug, Default)]
pub(crate) struct Waiter {
    backoff: Backoff,
}

impl Waiter {
    pub(crate) fn wait(&mut self) {
        if self.backoff.is_completed() {
            thread::sleep(Duration::from_micros(50));
        } else {
            self.backoff.snooze();
        }
    }
    pub(crate) fn reset(&mut self) {
        self.backoff.reset();
    }
}

struct Lane {
    tx: rtrb::Producer<Box<Batch>>,
    returned: rtrb::Consumer<Box<Batch>>,
    current: Box<Batch>,
}

/// The reader's side of the rings: routes each packet to its worker, in batches.
pub struct Dispatcher {
    lanes: Vec<Lane>,
    batch: usize,
    batch_bytes: usize,
    overflow: Overflow,
    tick: Nanos,
    next_tick: Timestamp,
    now: Timestamp,
    waiter: Waiter,
    /// Packets dropped on full rings ([`Overflow::Drop`]).
    pub drops: u64,
    /// The same, by worker.
    drops_by_worker: Vec<u64>,
    /// Times the reader waited on a full ring ([`Overflow::Wait`]).
    pub waits: u64,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("workers", &self.lanes.len())
            .field("drops", &self.drops)
            .finish()
    }
}

impl Dispatcher {
    /// Hands `m` to its worker; its payload stays where `m.frame` says (replay).
    /// Never blocks with [`Overflow::Drop`].
    #[inline]
    pub fn push(&mut self, m: PacketMeta) {
        let w = worker_for(m.hash, self.lanes.len());
        self.push_to(w, m);
    }

    /// Hands `m` to its worker with a copy of its TCP payload `payload` (live
    /// capture: the frame goes back to the kernel right after this). A batch whose
    /// byte area is full is sent first. Needs [`PipelineConfig::batch_bytes`].
    #[inline]
    pub fn push_copy(&mut self, mut m: PacketMeta, payload: &[u8]) {
        let w = worker_for(m.hash, self.lanes.len());
        // Longer than any frame; cut rather than overrun (cannot happen with a
        // batch area of at least MIN_BATCH_BYTES).
        let payload = &payload[..payload.len().min(self.batch_bytes)];
        if self.lanes[w].current.bytes.len() + payload.len() > self.batch_bytes {
            self.send(w, false);
        }
        let bytes = &mut self.lanes[w].current.bytes;
        m.frame = bytes.len() as u64;
        m.pkt.payload_offset = 0;
        m.pkt.payload_captured = payload.len() as u32;
        bytes.extend_from_slice(payload);
        self.push_to(w, m);
    }

    #[inline]
    fn push_to(&mut self, w: usize, m: PacketMeta) {
        self.now = self.now.max(m.ts);
        let lane = &mut self.lanes[w];
        lane.current.packets.push(m);
        if lane.current.packets.len() >= self.batch {
            self.send(w, false);
        }
        if m.ts >= self.next_tick {
            self.tick_all(m.ts);
        }
    }

    fn tick_all(&mut self, now: Timestamp) {
        self.next_tick = now.saturating_add(self.tick);
        for w in 0..self.lanes.len() {
            self.send(w, false);
        }
    }

    /// Sends every batch that holds packets, without waiting for it to fill: a
    /// live reader calls this when its receive ring ran dry, so that packets do
    /// not sit in a half-full batch while traffic is light.
    pub fn flush(&mut self) {
        for w in 0..self.lanes.len() {
            if !self.lanes[w].current.packets.is_empty() {
                self.send(w, false);
            }
        }
    }

    /// The time is `now` though no packet came (a live reader with nothing to
    /// read): once a tick has passed, every worker is told, so that sessions
    /// expire on a quiet link too.
    pub fn idle(&mut self, now: Timestamp) {
        self.now = self.now.max(now);
        if self.now >= self.next_tick {
            self.tick_all(self.now);
        }
    }

    /// Packets dropped on full rings so far ([`Overflow::Drop`]).
    pub fn drops(&self) -> u64 {
        self.drops
    }

    /// [`Dispatcher::drops`] by worker: whose ring was full.
    pub fn drops_by_worker(&self) -> &[u64] {
        &self.drops_by_worker
    }

    /// Sends worker `w`'s current batch (even empty, to carry the time).
    fn send(&mut self, w: usize, last: bool) {
        let now = self.now;
        loop {
            let lane = &mut self.lanes[w];
            if let Ok(mut fresh) = lane.returned.pop() {
                fresh.packets.clear();
                fresh.bytes.clear();
                fresh.last = false;
                let mut full = std::mem::replace(&mut lane.current, fresh);
                full.now = now;
                full.last = last;
                // The ring holds every batch in circulation, so it always has room.
                if lane.tx.push(full).is_err() {
                    unreachable!("the forward ring is as large as the batch pool");
                }
                self.waiter.reset();
                return;
            }
            match (self.overflow, last) {
                (Overflow::Drop, false) => {
                    self.drops += lane.current.packets.len() as u64;
                    self.drops_by_worker[w] += lane.current.packets.len() as u64;
                    lane.current.packets.clear();
                    lane.current.bytes.clear();
                    return;
                }
                _ => {
                    self.waits += 1;
                    self.waiter.wait();
                }
            }
        }
    }

    /// Sends every pending packet and tells the workers to finish.
    pub fn finish(mut self) {
        for w in 0..self.lanes.len() {
            self.send(w, true);
        }
    }
}

/// Builds the rings and worker loops for `cfg.readers` readers and `cfg.workers`
/// workers. Returns one dispatcher per reader and the worker loops (to run on
/// threads), each with its record ring.
pub fn build(cfg: &PipelineConfig) -> (Vec<Dispatcher>, Vec<WorkerLoop>) {
    let n = cfg.workers.max(1);
    let per_worker = WorkerConfig {
        max_sessions: cfg.worker.max_sessions.div_ceil(n),
        // Turned off again in a worker whose notices nobody takes.
        pair_notices: cfg.worker.points >= 2 && cfg.pairing.window > Nanos(0),
        ..cfg.worker
    };
    let in_flight = cfg.batches_in_flight.max(2);
    let batch_bytes = match cfg.batch_bytes {
        0 => 0,
        b => b.max(MIN_BATCH_BYTES),
    };
    let new_batch = || {
        Box::new(Batch {
            packets: Vec::with_capacity(cfg.batch),
            bytes: Vec::with_capacity(batch_bytes),
            now: Timestamp::ZERO,
            last: false,
        })
    };
    let mut loops: Vec<WorkerLoop> = (0..n)
        .map(|_| {
            let (rec_tx, rec_rx) = rtrb::RingBuffer::<Record>::new(cfg.record_ring.max(1));
            let (note_tx, note_rx) = rtrb::RingBuffer::<Notice>::new(cfg.notice_ring.max(1));
            WorkerLoop {
                worker: Worker::new(per_worker),
                inputs: Vec::with_capacity(cfg.readers.max(1)),
                records: rec_tx,
                records_rx: Some(rec_rx),
                notices: note_tx,
                notices_rx: Some(note_rx),
                progress: Arc::new(AtomicU64::new(0)),
                open_at_end: cfg.open_at_end,
                copied: batch_bytes > 0,
                record_waits: 0,
                notices_lost: 0,
                probe: None,
                record_ring_capacity: cfg.record_ring.max(1) as u64,
                dispatch_ring_capacity: 0,
            }
        })
        .collect();
    let dispatchers = (0..cfg.readers.max(1))
        .map(|_| {
            let lanes = loops
                .iter_mut()
                .map(|l| {
                    l.dispatch_ring_capacity += (in_flight + 1) as u64;
                    let (tx, rx) = rtrb::RingBuffer::<Box<Batch>>::new(in_flight + 1);
                    let (mut ret_tx, ret_rx) = rtrb::RingBuffer::<Box<Batch>>::new(in_flight + 1);
                    for _ in 0..in_flight {
                        if ret_tx.push(new_batch()).is_err() {
                            unreachable!("the return ring was sized for the pool");
                        }
                    }
                    l.inputs.push(Input {
                        rx,
                        ret: ret_tx,
                        cur: None,
                        pos: 0,
                        clock: Timestamp::ZERO,
                        done: false,
                    });
                    Lane {
                        tx,
                        returned: ret_rx,
                        current: new_batch(),
                    }
                })
                .collect();
            Dispatcher {
                lanes,
                batch: cfg.batch.max(1),
                batch_bytes,
                overflow: cfg.overflow,
                tick: cfg.tick,
                next_tick: Timestamp::ZERO,
                now: Timestamp::ZERO,
                waiter: Waiter::default(),
                drops: 0,
                drops_by_worker: vec![0; n],
                waits: 0,
            }
        })
        .collect();
    (dispatchers, loops)
}

/// A worker's end of one reader's rings.
struct Input {
    rx: rtrb::Consumer<Box<Batch>>,
    ret: rtrb::Producer<Box<Batch>>,
    /// The batch being read, and the next packet in it.
    cur: Option<Box<Batch>>,
    pos: usize,
    /// The reader's clock when it sent its last batch: nothing it sends later is
    /// older (a reader's timestamps do not go back).
    clock: Timestamp,
    /// The reader sent its last batch (or is gone).
    done: bool,
}

impl Input {
    /// Makes `cur` a batch with packets left, if the reader has one; gives used-up
    /// batches back.
    fn refill(&mut self) {
        loop {
            if let Some(b) = &self.cur {
                if self.pos < b.packets.len() {
                    return;
                }
            }
            if let Some(b) = self.cur.take() {
                self.done |= b.last;
                // The return ring has room for every batch in circulation.
                let _ = self.ret.push(b);
            }
            if self.done {
                return;
            }
            match self.rx.pop() {
                Ok(b) => {
                    self.clock = self.clock.max(b.now);
                    self.cur = Some(b);
                    self.pos = 0;
                }
                Err(_) => {
                    // Gone without its last batch (the reader panicked): judge
                    // what we have rather than wait forever.
                    self.done = self.rx.is_abandoned() && self.rx.is_empty();
                    return;
                }
            }
        }
    }

    /// The time of its next packet, if one is here.
    fn head(&self) -> Option<Timestamp> {
        let b = self.cur.as_ref()?;
        b.packets.get(self.pos).map(|m| m.ts)
    }

    /// The oldest packet time this reader may still deliver (None: finished).
    fn floor(&self) -> Option<Timestamp> {
        if self.done {
            return None;
        }
        Some(self.head().unwrap_or(self.clock))
    }
}

/// One worker and its rings.
pub struct WorkerLoop {
    worker: Worker,
    inputs: Vec<Input>,
    records: rtrb::Producer<Record>,
    records_rx: Option<rtrb::Consumer<Record>>,
    notices: rtrb::Producer<Notice>,
    /// Taken by [`WorkerLoop::take_notices`]; if not, the worker sends none.
    notices_rx: Option<rtrb::Consumer<Notice>>,
    /// The worker's clock after each batch (`u64::MAX` once it has finished): every
    /// record it judged up to that time is already on its record ring. The exporter
    /// takes the minimum over workers as how far all of them have got.
    progress: Arc<AtomicU64>,
    open_at_end: EndReason,
    /// Payloads come in the batches ([`Dispatcher::push_copy`]), not in `frames`.
    copied: bool,
    record_waits: u64,
    notices_lost: u64,
    /// With `--metrics`: times batches and publishes the counters.
    probe: Option<WorkerProbe>,
    record_ring_capacity: u64,
    dispatch_ring_capacity: u64,
}

impl std::fmt::Debug for WorkerLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerLoop")
            .field("sessions", &self.worker.sessions())
            .finish()
    }
}

/// What a worker reports when it stops.
#[derive(Clone, Copy, Debug, Default)]
pub struct WorkerReport {
    pub stats: WorkerStats,
    /// Times the worker waited for the exporter.
    pub record_waits: u64,
    /// Pairing notices that found the notice ring full.
    pub notices_lost: u64,
}

impl WorkerLoop {
    /// The consumer end of this worker's record ring (take it before running).
    pub fn take_records(&mut self) -> rtrb::Consumer<Record> {
        self.records_rx.take().expect("records taken once")
    }

    /// The consumer end of this worker's notice ring (take it before running, and
    /// give it to [`run_exporter_with`]; if it is not taken, the worker sends no
    /// notices).
    pub fn take_notices(&mut self) -> rtrb::Consumer<Notice> {
        self.notices_rx.take().expect("notices taken once")
    }

    /// Publish counters, ring occupancy and batch times into `share` (see
    /// [`crate::metrics`]), and stamp records with their push time. Without this
    /// call the loop reads no clock at all.
    pub fn publish_to(&mut self, share: Arc<Share<WorkerSnapshot>>) {
        self.probe = Some(WorkerProbe::new(share));
    }

    /// The worker's published clock (see [`run_exporter`]).
    pub fn progress(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.progress)
    }

    /// Runs until the last batch; returns the worker's counters. `frames[i]` holds
    /// the frames of point `i` (a replay's mapped capture), where each packet's
    /// [`PacketMeta::frame`] locates its bytes; packets of a point beyond `frames`
    /// are followed without payload.
    pub fn run(mut self, frames: &[&[u8]]) -> WorkerReport {
        let mut waiter = Waiter::default();
        let taken = self.notices_rx.is_none();
        self.worker
            .set_pair_notices(taken && self.worker.pair_notices());
        let Self {
            worker,
            inputs,
            records,
            notices,
            open_at_end,
            copied,
            record_waits,
            notices_lost,
            progress,
            probe,
            record_ring_capacity,
            dispatch_ring_capacity,
            ..
        } = &mut self;
        let (record_ring_capacity, dispatch_ring_capacity) =
            (*record_ring_capacity, *dispatch_ring_capacity);
        let (open_at_end, copied) = (*open_at_end, *copied);
        // A verdict is never dropped, whatever the overflow policy: a worker whose
        // record ring is full waits for the exporter (with `Overflow::Drop` its
        // readers then drop packets, and count them).
        let mut out = RingOutput {
            records,
            notices: taken.then_some(notices),
            record_waits,
            notices_lost,
            lost: None,
            stamp: probe.is_some(),
        };
        // Packets of several readers are merged by time: a packet goes to the worker
        // only once no other reader can still send an older one (its next packet,
        // or its clock if it has none waiting, is not older). One reader: batch
        // by batch, as sent.
        loop {
            for input in inputs.iter_mut() {
                input.refill();
            }
            let Some(watermark) = inputs.iter().filter_map(Input::floor).min() else {
                // Every reader has finished: the time is where the last one left it.
                let end = inputs.iter().map(|i| i.clock).max();
                worker.advance_to(end.unwrap_or(Timestamp::ZERO), &mut out);
                break;
            };
            let next = inputs
                .iter()
                .enumerate()
                .filter_map(|(k, i)| i.head().map(|h| (h, k)))
                .min();
            let mut moved = false;
            let mut processed = 0u64;
            // One clock read per batch (with --metrics only), never per packet.
            let started = probe.as_ref().map(|_| Instant::now());
            if let Some((_, k)) = next {
                let bound = inputs
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != k)
                    .filter_map(|(_, i)| i.floor())
                    .min()
                    .unwrap_or(Timestamp(u64::MAX));
                let input = &mut inputs[k];
                if let Some(batch) = input.cur.as_deref() {
                    let bytes_of = |m: &PacketMeta| {
                        if copied {
                            &batch.bytes[..]
                        } else {
                            frames.get(usize::from(m.point.0)).copied().unwrap_or(&[])
                        }
                    };
                    while let Some(m) = batch.packets.get(input.pos) {
                        if m.ts > bound {
                            break;
                        }
                        worker.process_to(m, m.payload(bytes_of(m)), &mut out);
                        input.pos += 1;
                        processed += 1;
                        moved = true;
                    }
                }
            }
            worker.advance_to(
                inputs
                    .iter()
                    .filter_map(Input::floor)
                    .min()
                    .unwrap_or(watermark),
                &mut out,
            );
            // After the records and notices judged so far are on the rings. While
            // lost notices are not announced, no further than the first of them
            // started: the pairer must not decide past it without knowing.
            out.flush_lost();
            let now = match out.lost {
                Some((since, _)) => worker.now().min(since),
                None => worker.now(),
            };
            progress.store(now.0, Ordering::Release);
            if let (Some(p), Some(t0)) = (probe.as_mut(), started) {
                let t1 = Instant::now();
                p.batch(t1.duration_since(t0), processed);
                if p.due(t1) {
                    let dispatch_ring = inputs.iter().map(|i| i.rx.slots() as u64).sum();
                    let record_ring = record_ring_capacity - out.records.slots() as u64;
                    let (stats, open) = (worker.stats(), worker.sessions() as u64);
                    let (rw, nl) = (*out.record_waits, *out.notices_lost);
                    p.publish(t1, false, |s| {
                        s.stats = stats;
                        s.open_sessions = open;
                        s.record_waits = rw;
                        s.notices_lost = nl;
                        s.dispatch_ring = dispatch_ring;
                        s.dispatch_ring_capacity = dispatch_ring_capacity;
                        s.record_ring = record_ring;
                        s.record_ring_capacity = record_ring_capacity;
                    });
                }
            }
            if moved {
                waiter.reset();
            } else {
                waiter.wait();
            }
        }
        worker.finish_to_with(open_at_end, &mut out);
        out.flush_lost();
        progress.store(u64::MAX, Ordering::Release);
        if let Some(p) = probe.as_mut() {
            let record_ring = record_ring_capacity - out.records.slots() as u64;
            let (stats, open) = (worker.stats(), worker.sessions() as u64);
            let (rw, nl) = (*out.record_waits, *out.notices_lost);
            p.publish(Instant::now(), true, |s| {
                s.stats = stats;
                s.open_sessions = open;
                s.record_waits = rw;
                s.notices_lost = nl;
                s.dispatch_ring = 0;
                s.dispatch_ring_capacity = dispatch_ring_capacity;
                s.record_ring = record_ring;
                s.record_ring_capacity = record_ring_capacity;
            });
        }
        WorkerReport {
            stats: self.worker.stats(),
            record_waits: self.record_waits,
            notices_lost: self.notices_lost,
        }
    }
}

/// Drains the record rings of all workers into `sink`, until every worker has
/// stopped and its ring is empty. A sink error stops writing (the rest is counted
/// as unwritten) but not draining, so workers never block on a dead sink.
pub fn run_exporter<E>(
    rings: Vec<rtrb::Consumer<Record>>,
    progress: &[Arc<AtomicU64>],
    pairing: PairConfig,
    sink: impl FnMut(&Record) -> Result<(), E>,
) -> ExportReport<E> {
    run_exporter_with(rings, Vec::new(), progress, pairing, sink)
}

/// [`run_exporter`], with each worker's notice ring (`notices[i]` from worker
/// `i`, as [`WorkerLoop::take_notices`] gives them) for the pairer.
pub fn run_exporter_with<E>(
    rings: Vec<rtrb::Consumer<Record>>,
    notices: Vec<rtrb::Consumer<Notice>>,
    progress: &[Arc<AtomicU64>],
    pairing: PairConfig,
    sink: impl FnMut(&Record) -> Result<(), E>,
) -> ExportReport<E> {
    run_exporter_idle(rings, notices, progress, pairing, sink, || Ok(()))
}

/// [`run_exporter_with`], calling `idle` whenever the rings are drained and the
/// exporter is about to wait (a live sink flushes its buffer there: a verdict is
/// delivered as soon as nothing follows it, without a write per verdict). An
/// `idle` error counts as a sink error.
pub fn run_exporter_idle<E>(
    mut rings: Vec<rtrb::Consumer<Record>>,
    mut notices: Vec<rtrb::Consumer<Notice>>,
    progress: &[Arc<AtomicU64>],
    pairing: PairConfig,
    mut sink: impl FnMut(&Record) -> Result<(), E>,
    mut idle: impl FnMut() -> Result<(), E>,
) -> ExportReport<E> {
    let mut report = ExportReport {
        written: 0,
        unwritten: 0,
        error: None,
        pairing: PairStats::default(),
    };
    let mut pairer = Pairer::new(pairing);
    let mut write = |r: &Record, report: &mut ExportReport<E>| {
        if report.error.is_none() {
            match sink(r) {
                Ok(()) => report.written += 1,
                Err(e) => {
                    report.error = Some(e);
                    report.unwritten += 1;
                }
            }
        } else {
            report.unwritten += 1;
        }
    };
    let mut waiter = Waiter::default();
    let mut wrote_since_idle = false;
    loop {
        let mut any = false;
        let mut all_done = true;
        // How far every worker has got, read before draining: all the records they
        // judged up to then are on the rings (no progress given: no holding back).
        let watermark = progress
            .iter()
            .map(|p| p.load(Ordering::Acquire))
            .min()
            .unwrap_or(u64::MAX);
        for (w, ring) in rings.iter_mut().enumerate() {
            // Check abandonment before draining: a worker that stopped after the
            // check still gets its last records drained on the next round.
            let abandoned = ring.is_abandoned();
            // A worker sends a session's notices before its record: the records
            // counted now have all their notices on the notice ring already (the
            // acquire load in `slots` pairs with the release store of the record's
            // push, which follows the notice's), so they are taken first.
            let ready = ring.slots();
            if let Some(n) = notices.get_mut(w) {
                while let Ok(x) = n.pop() {
                    any = true;
                    pairer.notice(&x);
                }
            }
            for _ in 0..ready {
                // Read in place, not popped: a record is 7.4 KB, and popping copied
                // it twice (20M of the exporter's 179M instructions, callgrind on
                // the 200k synth replay). The slot is freed once it is written.
                let Ok(chunk) = ring.read_chunk(1) else { break };
                any = true;
                if let Some(r) = chunk.as_slices().0.first() {
                    pairer.push(r, &mut |r| write(r, &mut report));
                }
                chunk.commit_all();
            }
            all_done &= abandoned && ring.is_empty();
        }
        pairer.advance(Timestamp(watermark), &mut |r| write(r, &mut report));
        if all_done && !any {
            pairer.finish(&mut |r| write(r, &mut report));
            report.pairing = pairer.stats;
            return report;
        }
        if any {
            waiter.reset();
            wrote_since_idle = true;
        } else {
            if wrote_since_idle && report.error.is_none() {
                if let Err(e) = idle() {
                    report.error = Some(e);
                }
                wrote_since_idle = false;
            }
            waiter.wait();
        }
    }
}

/// What the exporter did.
#[derive(Debug)]
pub struct ExportReport<E> {
    pub written: u64,
    /// Records not written because the sink had failed.
    pub unwritten: u64,
    pub error: Option<E>,
    /// How the legs of proxied sessions were joined.
    pub pairing: PairStats,
}

/// Starts one thread per worker loop (`tw-worker-N`) in `scope`; `frames` as for
/// [`WorkerLoop::run`].
pub fn spawn_workers<'scope>(
    scope: &'scope thread::Scope<'scope, '_>,
    loops: Vec<WorkerLoop>,
    frames: &'scope [&'scope [u8]],
) -> Vec<thread::ScopedJoinHandle<'scope, WorkerReport>> {
    loops
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            thread::Builder::new()
                .name(format!("tw-worker-{i}"))
                .spawn_scoped(scope, move || l.run(frames))
                .expect("spawn worker thread")
        })
        .collect()
}

/// A capture point fed from a capture held in memory.
#[derive(Debug)]
pub struct ReplaySource<'a> {
    pub name: String,
    pub data: &'a [u8],
    /// Nanoseconds this point's clock is ahead of the reference point's (see
    /// [`crate::clock`]); every timestamp of the point is read as `ts - clock_offset`,
    /// for the merge order and for everything downstream. 0: as captured.
    pub clock_offset: i64,
}

/// How a replay went.
#[derive(Debug)]
pub struct ReplayReport<E> {
    /// Reader counters per point, in the order the points were given.
    pub points: Vec<ReaderStats>,
    pub workers: WorkerStats,
    pub record_waits: u64,
    /// Pairing notices that found a worker's notice ring full.
    pub notices_lost: u64,
    pub export: ExportReport<E>,
    /// Capture errors, by point: reading that point stopped there.
    pub errors: Vec<(usize, CaptureError)>,
    pub first_ts: Option<Timestamp>,
    pub last_ts: Option<Timestamp>,
}

/// Counters the CLI polls from another thread for its progress display.
#[derive(Debug, Default)]
pub struct Progress {
    /// Capture bytes consumed, over all points.
    pub bytes: AtomicU64,
    pub frames: AtomicU64,
    /// With `--metrics`: where the reader and the workers publish their counters.
    pub telemetry: Option<Arc<Telemetry>>,
}

/// Replays captures: merges the points in timestamp order, decodes, dispatches to
/// `cfg.workers` workers and hands every record to `sink` on an exporter thread.
pub fn replay<E: Send>(
    cfg: &PipelineConfig,
    sources: &[ReplaySource<'_>],
    sink: impl FnMut(&Record) -> Result<(), E> + Send,
    progress: &Progress,
) -> ReplayReport<E> {
    let (mut dispatchers, mut loops) = build(&PipelineConfig { readers: 1, ..*cfg });
    let mut dispatcher = dispatchers.pop().expect("one reader");
    let rings: Vec<_> = loops.iter_mut().map(WorkerLoop::take_records).collect();
    let notices: Vec<_> = loops.iter_mut().map(WorkerLoop::take_notices).collect();
    let clocks: Vec<_> = loops.iter().map(WorkerLoop::progress).collect();
    if let Some(t) = &progress.telemetry {
        let shares = t.worker_shares(loops.len());
        for (l, sh) in loops.iter_mut().zip(shares) {
            l.publish_to(Arc::clone(sh));
        }
    }
    let publish_points = |points: &[ReaderStats], last: bool| {
        if let Some(t) = &progress.telemetry {
            let g = if last {
                Some(t.reader.lock())
            } else {
                t.reader.try_publish()
            };
            if let Some(mut g) = g {
                g.points.clear();
                g.points.extend_from_slice(points);
            }
        }
    };
    let pairing = cfg.pair_config();
    let mut points = vec![ReaderStats::default(); sources.len()];
    let mut errors = Vec::new();
    let mut first_ts = None;
    let mut last_ts = None;
    let frames: Vec<&[u8]> = sources.iter().map(|s| s.data).collect();
    let frames = &frames;

    thread::scope(|scope| {
        let exporter = thread::Builder::new()
            .name("tw-export".into())
            .spawn_scoped(scope, move || {
                run_exporter_with(rings, notices, &clocks, pairing, sink)
            })
            .expect("spawn exporter thread");
        let workers = spawn_workers(scope, loops, frames);

        let mut readers: Vec<Option<CaptureReader<'_>>> = Vec::with_capacity(sources.len());
        for (i, s) in sources.iter().enumerate() {
            match CaptureReader::new(s.data) {
                Ok(r) => readers.push(Some(r)),
                Err(e) => {
                    errors.push((i, e));
                    readers.push(None);
                }
            }
        }
        let offsets = sources.iter().map(|s| s.clock_offset).collect();
        let mut merge = Merge::new(readers, offsets);
        let mut consumed_before = 0u64;
        let mut n = 0u64;
        while let Some(next) = merge.next() {
            match next {
                (point, Ok(frame)) => {
                    n += 1;
                    first_ts.get_or_insert(frame.ts);
                    last_ts = Some(last_ts.map_or(frame.ts, |t: Timestamp| t.max(frame.ts)));
                    let st = &mut points[point];
                    st.frames += 1;
                    st.bytes += frame.data.len() as u64;
                    match wire::decode(frame.link, frame.data, frame.wire_len) {
                        Ok(pkt) => {
                            st.tcp += 1;
                            st.snaplen_cut += u64::from(pkt.snaplen_cut);
                            dispatcher.push(
                                PacketMeta::new(frame.ts, PointId(point as u8), pkt)
                                    .at(frame.offset as u64),
                            );
                        }
                        Err(skip) => st.skipped[skip.index()] += 1,
                    }
                    if n % 65_536 == 0 {
                        let consumed = merge.consumed();
                        progress
                            .bytes
                            .fetch_add(consumed - consumed_before, Ordering::Relaxed);
                        progress.frames.store(n, Ordering::Relaxed);
                        consumed_before = consumed;
                        publish_points(&points, false);
                    }
                }
                (point, Err(e)) => errors.push((point, e)),
            }
        }
        progress
            .bytes
            .fetch_add(merge.consumed() - consumed_before, Ordering::Relaxed);
        progress.frames.store(n, Ordering::Relaxed);
        let (drops, waits) = (dispatcher.drops, dispatcher.waits);
        dispatcher.finish();
        if let Some(p) = points.first_mut() {
            p.ring_full_drops += drops;
            p.ring_full_waits += waits;
        }
        publish_points(&points, true);

        let mut workers_total = WorkerStats::default();
        let (mut record_waits, mut notices_lost) = (0, 0);
        for w in workers {
            let r = w.join().expect("worker thread panicked");
            workers_total.add(&r.stats);
            record_waits += r.record_waits;
            notices_lost += r.notices_lost;
        }
        let export = exporter.join().expect("exporter thread panicked");
        ReplayReport {
            points,
            workers: workers_total,
            record_waits,
            notices_lost,
            export,
            errors,
            first_ts,
            last_ts,
        }
    })
}

/// Merges several captures by timestamp, each corrected for its point's clock
/// offset (ties: the earlier point first). Each capture keeps its own order; a
/// capture whose timestamps go backwards is followed as written.
struct Merge<'a> {
    readers: Vec<Option<CaptureReader<'a>>>,
    /// Per reader: its clock offset ([`ReplaySource::clock_offset`]).
    offsets: Vec<i64>,
    /// Per reader: its next frame, timestamp already corrected.
    heads: Vec<Option<Frame<'a>>>,
    /// Bytes consumed by readers that have finished (so `consumed` never goes back).
    finished: u64,
}

impl<'a> Merge<'a> {
    fn new(mut readers: Vec<Option<CaptureReader<'a>>>, mut offsets: Vec<i64>) -> Self {
        let heads = vec![None; readers.len()];
        readers.shrink_to_fit();
        offsets.resize(readers.len(), 0);
        Merge {
            readers,
            offsets,
            heads,
            finished: 0,
        }
    }

    fn consumed(&self) -> u64 {
        self.readers
            .iter()
            .flatten()
            .map(|r| r.bytes_read() as u64)
            .sum()
    }

    fn next(&mut self) -> Option<(usize, Result<Frame<'a>, CaptureError>)> {
        // One point (the common replay): nothing to merge, no head to keep. The
        // general path below cost 200 instructions a frame for one reader
        // (callgrind, 200k synth replay), more than framing the record.
        if let ([Some(r)], [offset]) = (&mut self.readers[..], &self.offsets[..]) {
            return match r.next() {
                Some(Ok(mut f)) => {
                    f.ts = clock::correct(f.ts, *offset);
                    Some((0, Ok(f)))
                }
                Some(Err(e)) => {
                    self.finished += r.bytes_read() as u64;
                    self.readers[0] = None;
                    Some((0, Err(e)))
                }
                None => {
                    self.finished += r.bytes_read() as u64;
                    self.readers[0] = None;
                    None
                }
            };
        }
        // Refill empty heads; an error is returned at once (that reader is done).
        for i in 0..self.readers.len() {
            if self.heads[i].is_none() {
                if let Some(r) = self.readers[i].as_mut() {
                    match r.next() {
                        Some(Ok(mut f)) => {
                            f.ts = clock::correct(f.ts, self.offsets[i]);
                            self.heads[i] = Some(f);
                        }
                        Some(Err(e)) => {
                            // The reader stops after an error: count it as finished.
                            self.finished += r.bytes_read() as u64;
                            self.readers[i] = None;
                            return Some((i, Err(e)));
                        }
                        None => {
                            self.finished += r.bytes_read() as u64;
                            self.readers[i] = None;
                        }
                    }
                }
            }
        }
        let (i, _) = self
            .heads
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.map(|f| (i, f.ts)))
            .min_by_key(|&(i, ts)| (ts, i))?;
        self.heads[i].take().map(|f| (i, Ok(f)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Endpoint;
    use crate::wire::{Packet, TcpFlags};

    fn meta(i: u16) -> PacketMeta {
        let pkt = Packet {
            src: Endpoint::v4([198, 18, 0, 1], 10_000 + i),
            dst: Endpoint::v4([198, 18, 1, 1], 443),
            flags: TcpFlags(TcpFlags::SYN),
            ..Packet::default()
        };
        PacketMeta::new(Timestamp(1), PointId(0), pkt)
    }

    /// A capture with one empty frame at each of `ts`.
    fn capture_at(ts: &[u64]) -> Vec<u8> {
        let mut w = crate::capture::write::PcapWriter::new(Vec::new(), 1).unwrap();
        for &t in ts {
            w.write_frame(Timestamp(t), &[0; 14], 14).unwrap();
        }
        w.into_inner()
    }

    /// The merge orders by corrected time and hands out corrected timestamps; a
    /// correction past the start of time saturates.
    #[test]
    fn test_merge_corrects_clock_offsets() {
        let (a, b, c) = (
            capture_at(&[10, 20, 30]),
            capture_at(&[1_015, 1_025]),
            capture_at(&[5, 40]),
        );
        let readers = [&a, &b, &c]
            .iter()
            .map(|d| Some(CaptureReader::new(d).unwrap()))
            .collect();
        let mut merge = Merge::new(readers, vec![0, 1_000, -8]);
        let mut got = Vec::new();
        while let Some((point, f)) = merge.next() {
            got.push((point, f.unwrap().ts.0));
        }
        assert_eq!(
            got,
            [
                (0, 10),
                (2, 13),
                (1, 15),
                (0, 20),
                (1, 25),
                (0, 30),
                (2, 48)
            ]
        );
        let readers = vec![Some(CaptureReader::new(&b).unwrap())];
        let mut merge = Merge::new(readers, vec![i64::MAX]);
        assert_eq!(merge.next().unwrap().1.unwrap().ts, Timestamp(0));
    }

    /// With `Overflow::Drop`, a worker that does not keep up loses packets, and every
    /// lost packet is counted; what was delivered plus what was dropped is all.
    #[test]
    fn test_drop_policy_counts_every_lost_packet() {
        let cfg = PipelineConfig {
            workers: 1,
            batch: 4,
            batches_in_flight: 2,
            overflow: Overflow::Drop,
            ..PipelineConfig::default()
        };
        let (mut dispatchers, mut loops) = build(&cfg);
        let mut dispatcher = dispatchers.pop().unwrap();
        let rings: Vec<_> = loops.iter_mut().map(WorkerLoop::take_records).collect();
        // The worker is not running yet: only the batches in flight can be filled.
        for i in 0..100 {
            dispatcher.push(meta(i));
        }
        let drops = dispatcher.drops;
        assert!(drops > 0, "a stalled worker must cause drops");
        let worker = loops.pop().unwrap();
        let report = thread::scope(|s| {
            let exporter =
                s.spawn(|| run_exporter::<()>(rings, &[], PairConfig::default(), |_| Ok(())));
            let w = s.spawn(move || worker.run(&[]));
            dispatcher.finish();
            let r = w.join().unwrap();
            exporter.join().unwrap();
            r
        });
        assert_eq!(
            report.stats.packets + drops,
            100,
            "delivered + dropped = pushed"
        );
    }
}
