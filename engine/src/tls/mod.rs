//! TLS observation (issue 3). Sans-IO: in-order stream bytes in, events out.
//!
//! [`reassembly::Reassembler`] turns one direction's TCP segments, in any order, into
//! its byte stream; [`record::RecordReader`] follows that stream's record layer;
//! [`hello`], [`cert`] and [`fingerprint`] read the handshake messages; [`names`]
//! names what they find (see docs/design/tls-observation.md).

pub mod cert;
pub mod fingerprint;
pub mod hello;
pub mod judge;
pub mod memo;
pub mod names;
pub mod observe;
pub mod pool;
pub mod reassembly;
pub mod record;

use observe::{FastWindow, StreamPool, TlsPoint};
use pool::BufPool;

/// TLS limits of one worker.
#[derive(Clone, Copy, Debug)]
pub struct TlsConfig {
    /// Bytes of one buffer: the longest handshake message read, and how far ahead
    /// of a hole out-of-order data is kept (`--tls-buffer`, 64 KiB; rounded up to
    /// a power of two).
    pub buf_cap: usize,
    /// Buffers per worker for each of the two uses (`--tls-buffers`). A buffer is
    /// held only while a message is split or data waits for a hole.
    pub buffers: usize,
    /// Follow TLS at all (`--no-tls` turns it off: TCP facts and verdicts only).
    pub enabled: bool,
    /// Let segments inside application_data records bypass the TLS layer (see
    /// [`observe::TlsPoint::on_segment`]). Off only to test that it changes nothing.
    pub fast_path: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            buf_cap: 64 * 1024,
            buffers: 1024,
            enabled: true,
            fast_path: true,
        }
    }
}

/// What a worker's TLS layer counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsStats {
    /// Sessions in which TLS was detected (state taken).
    pub sessions: u64,
    /// Sessions with payload that was not TLS.
    pub not_tls: u64,
    /// Times a split handshake message or out-of-order data found no free buffer.
    pub buffers_exhausted: u64,
    /// Most buffers ever in use at once (both kinds).
    pub buffers_peak: u64,
    /// Times a stream that was partly read found no place in the worker's
    /// [`StreamPool`]: that direction was not followed further (`gap`).
    pub streams_exhausted: u64,
    /// Most streams held in the pool at once.
    pub streams_peak: u64,
    /// Fingerprint hashes and certificates found in, or missing from, the
    /// worker's memo ([`memo`]).
    pub memo: memo::MemoStats,
}

impl TlsStats {
    pub fn add(&mut self, o: &TlsStats) {
        self.sessions += o.sessions;
        self.not_tls += o.not_tls;
        self.buffers_exhausted += o.buffers_exhausted;
        self.buffers_peak += o.buffers_peak;
        self.streams_exhausted += o.streams_exhausted;
        self.streams_peak += o.streams_peak;
        self.memo.fingerprint_hits += o.memo.fingerprint_hits;
        self.memo.fingerprint_misses += o.memo.fingerprint_misses;
        self.memo.cert_hits += o.memo.cert_hits;
        self.memo.cert_misses += o.memo.cert_misses;
        self.memo.hellos_stored += o.memo.hellos_stored;
        self.memo.hellos_shared += o.memo.hellos_shared;
        self.memo.leaves_stored += o.memo.leaves_stored;
        self.memo.leaves_shared += o.memo.leaves_shared;
    }
}

/// The TLS state of a worker's sessions: one [`TlsPoint`] per session and point,
/// taken when a session's first payload is TLS, the streams that are partly read,
/// and the buffer pools.
///
/// Entries are made on first need and recycled (the vector grows to the peak number
/// of TLS sessions, then never allocates again); at most one per flow-table slot.
#[derive(Debug)]
pub struct TlsTable {
    entries: Vec<TlsPoint>,
    free: Vec<u32>,
    points: usize,
    pub ooo: BufPool,
    pub msgs: BufPool,
    pub streams: StreamPool,
    pub memo: memo::Memo,
    pub stats: TlsStats,
}

/// Places in a worker's [`StreamPool`]: a stream is held there only while it is
/// partly read, mostly while it holds a buffer (`buffers` of each kind), so four
/// per buffer, and at least 16,384 (3.4 MB: the streams that wait for the rest of
/// a record header or of their first bytes hold no buffer), and no more than two
/// per session and point.
pub fn stream_pool_size(buffers: usize, max_sessions: usize, points: usize) -> usize {
    buffers
        .saturating_mul(4)
        .max(16_384)
        .min(max_sessions.saturating_mul(points).saturating_mul(2))
        .max(1)
}

impl TlsTable {
    /// For `max_sessions` sessions of `points` points each.
    pub fn new(cfg: TlsConfig, max_sessions: usize, points: usize) -> TlsTable {
        // The out-of-order ring indexes by sequence number modulo its size.
        let cfg = TlsConfig {
            buf_cap: cfg.buf_cap.max(1).next_power_of_two(),
            ..cfg
        };
        TlsTable {
            entries: Vec::new(),
            free: Vec::with_capacity(max_sessions),
            points,
            ooo: BufPool::new(cfg.buf_cap, cfg.buffers),
            msgs: BufPool::new(cfg.buf_cap, cfg.buffers),
            streams: StreamPool::new(
                cfg.buf_cap,
                stream_pool_size(cfg.buffers, max_sessions, points),
            ),
            memo: memo::Memo {
                logs: observe::LogArena::new(
                    max_sessions
                        .saturating_mul(points)
                        .saturating_mul(observe::LOG_CHUNKS),
                ),
                alerts: observe::AlertArena::new(max_sessions.saturating_mul(points)),
                ..memo::Memo::default()
            },
            stats: TlsStats::default(),
        }
    }

    /// A fresh entry for a session; its index.
    pub fn take(&mut self) -> u32 {
        self.stats.sessions += 1;
        if let Some(i) = self.free.pop() {
            let base = i as usize * self.points;
            for p in &mut self.entries[base..base + self.points] {
                *p = TlsPoint::new();
            }
            return i;
        }
        let i = (self.entries.len() / self.points) as u32;
        for _ in 0..self.points {
            self.entries.push(TlsPoint::new());
        }
        i
    }

    /// The entry of session `i` at `point`.
    #[inline]
    pub fn point(&mut self, i: u32, point: usize) -> &mut TlsPoint {
        &mut self.entries[i as usize * self.points + point]
    }

    /// Follows one segment of session `i` at `point`, after accounting for the
    /// fast path having reached `fast_next` (see [`TlsPoint::on_segment`]); returns
    /// the new fast-path window.
    #[inline]
    pub fn on_segment(
        &mut self,
        i: u32,
        point: usize,
        fast_next: Option<u32>,
        seg: &observe::Segment<'_>,
    ) -> FastWindow {
        let Self {
            entries,
            ooo,
            msgs,
            streams,
            memo,
            ..
        } = self;
        let p = &mut entries[i as usize * self.points + point];
        if !p.wants(seg.side) {
            return FastWindow::NONE;
        }
        if let Some(next) = fast_next {
            p.catch_up(seg.side, next, streams);
        }
        p.on_segment(seg, ooo, msgs, memo, streams)
    }

    /// See [`TlsPoint::fast_header`].
    #[inline]
    pub fn fast_header(
        &mut self,
        i: u32,
        point: usize,
        m: &crate::worker::PacketMeta,
        payload: &[u8],
        off: usize,
    ) -> Option<FastWindow> {
        let p = &mut self.entries[i as usize * self.points + point];
        p.fast_header(
            m.side,
            m.ts,
            m.pkt.seq,
            payload,
            off,
            &mut self.streams,
            &mut self.memo.logs,
        )
    }

    /// All points of session `i`.
    pub fn points_mut(&mut self, i: u32) -> &mut [TlsPoint] {
        let base = i as usize * self.points;
        &mut self.entries[base..base + self.points]
    }

    /// The facts of session `i` at every point, into `out` (as many as fit).
    pub fn facts_into(&self, i: u32, out: &mut [observe::TlsFacts]) {
        let base = i as usize * self.points;
        for (t, p) in out.iter_mut().zip(&self.entries[base..base + self.points]) {
            p.facts_to(&self.memo, t);
        }
    }

    /// The ClientHello's SNI of session `i` at `point`: `None` before the
    /// ClientHello, `Some(None)` without one.
    pub fn sni(&self, i: u32, point: usize) -> Option<Option<names::FixedStr<255>>> {
        self.entries[i as usize * self.points + point].sni(&self.memo)
    }

    /// Gives back session `i`'s entry and any buffer it holds.
    pub fn put(&mut self, i: u32) {
        let base = i as usize * self.points;
        let Self {
            entries,
            ooo,
            msgs,
            streams,
            memo,
            ..
        } = self;
        for p in &mut entries[base..base + self.points] {
            p.release(ooo, msgs, memo, streams);
        }
        self.free.push(i);
        let peak = (self.ooo.made() + self.msgs.made()) as u64;
        self.stats.buffers_peak = self.stats.buffers_peak.max(peak);
        self.stats.buffers_exhausted = self.ooo.exhausted + self.msgs.exhausted;
        self.stats.streams_exhausted = self.streams.exhausted;
        self.stats.streams_peak = self.streams.peak as u64;
    }
}
