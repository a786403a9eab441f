//! The per-core worker: owns one flow table, follows every packet of its sessions,
//! ends sessions on close, idle timeout, eviction or end of input, and emits one
//! [`Record`] per session through a callback.
//!
//! Sans-IO and deterministic: packets and their capture timestamps in, records out.
//! The worker's clock is the latest capture timestamp it has seen; it never reads a
//! system clock. After the table's slots have been touched once, processing a packet
//! does not allocate.
//!
//! Where TLS observation plugs in (issue 3): `process` is the one place that has a
//! packet's session, point and direction together. A [`PacketMeta`] already carries
//! where the TCP payload lies in its frame (`payload_offset`, `payload_captured`) and
//! its length on the wire (`payload_len`), and a replay keeps every capture mapped
//! for the whole run (the reader's [`crate::capture::Frame::offset`] locates the
//! frame), so the TLS layer needs a frame reference in `PacketMeta` and a per-point,
//! per-direction stream state beside [`crate::tcp::DirState`], fed in sequence order.

use std::hash::{BuildHasher, Hasher};

use crate::correlate::{self, Comparison, CorrelateConfig};
use crate::flow::{FlowKey, Side};
use crate::pairing::{sni_hash, Notice, Opened, Sni};
use crate::session::{
    CloseKind, EventStore, PairReport, PointId, PointLive, PointState, Role, RstLog, Session,
    MAX_POINTS, TLS_NONE, TLS_UNKNOWN,
};
use crate::table::{Drain, FlowTable};
use crate::time::{Nanos, Timestamp};
use crate::tls::observe::{looks_like_tls, FastWindow, Segment, TlsFacts};
use crate::tls::{TlsConfig, TlsStats, TlsTable};
use crate::verdict::{
    add_suspects, apply_comparison, classify, classify_tls, ClassifyConfig, EndReason, Record,
    Verdict,
};
use crate::wire::Packet;

/// A decoded packet on its way to a worker: the wire facts plus where and when it
/// was seen and the flow hash that chose the worker.
#[derive(Clone, Copy, Debug, Default)]
pub struct PacketMeta {
    pub ts: Timestamp,
    pub point: PointId,
    pub hash: u64,
    pub key: FlowKey,
    /// Which end of `key` sent it.
    pub side: Side,
    /// Offset of the frame in its capture (replay) or frame area (live): the TCP
    /// payload lies at `frame + pkt.payload_offset`, `pkt.payload_captured` long.
    pub frame: u64,
    pub pkt: Packet,
}

impl PacketMeta {
    pub fn new(ts: Timestamp, point: PointId, pkt: Packet) -> PacketMeta {
        let (key, side) = FlowKey::from_packet(pkt.src, pkt.dst);
        PacketMeta {
            ts,
            point,
            hash: key.flow_hash(),
            key,
            side,
            frame: 0,
            pkt,
        }
    }

    /// The same packet, located at `offset` in its capture.
    pub fn at(self, offset: u64) -> PacketMeta {
        PacketMeta {
            frame: offset,
            ..self
        }
    }

    /// Its TCP payload, as captured, out of the bytes `frames` that hold its frame
    /// (empty if it has none, or if `frames` does not reach that far).
    #[inline]
    pub fn payload<'a>(&self, frames: &'a [u8]) -> &'a [u8] {
        let start = self.frame as usize + self.pkt.payload_offset as usize;
        frames
            .get(start..start + self.pkt.payload_captured as usize)
            .unwrap_or(&[])
    }
}

/// Limits and timers of one worker.
#[derive(Clone, Copy, Debug)]
pub struct WorkerConfig {
    /// Sessions this worker can hold at once.
    pub max_sessions: usize,
    /// Number of capture points in the run (at most [`MAX_POINTS`]).
    pub points: usize,
    /// An open session with no packet for this long ends as a timeout.
    pub idle_timeout: Nanos,
    /// A closed session is judged this long after its close, so that late packets
    /// (the other points' copies, data after an RST) are still counted.
    pub linger: Nanos,
    /// See [`ClassifyConfig::syn_grace`].
    pub syn_grace: Nanos,
    pub tls: TlsConfig,
    /// How the points of a two-point run are compared.
    pub correlate: CorrelateConfig,
    /// Tell the pairer of sessions open at one compared point only
    /// ([`Output::notice`]; two points, pairing on).
    pub pair_notices: bool,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            max_sessions: 1_000_000,
            points: 1,
            idle_timeout: Nanos::from_secs(120),
            linger: Nanos::from_secs(2),
            syn_grace: Nanos::from_secs(3),
            tls: TlsConfig::default(),
            correlate: CorrelateConfig::default(),
            pair_notices: false,
        }
    }
}

/// Where a worker's output goes: one record per ended session, and notices of
/// sessions still open for the exporter's pairer ([`crate::pairing`]).
pub trait Output {
    fn record(&mut self, r: Record);
    /// Takes a notice; `false` if there was no room (the worker then marks the
    /// session [`PairReport::Lost`]).
    fn notice(&mut self, n: &Notice) -> bool;
}

/// Records to a closure; notices are not taken.
struct Records<F>(F);

impl<F: FnMut(Record)> Output for Records<F> {
    fn record(&mut self, r: Record) {
        (self.0)(r)
    }
    fn notice(&mut self, _: &Notice) -> bool {
        false
    }
}

/// What a worker counted. Plain integers, summed by the pipeline at the end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    pub packets: u64,
    pub retransmissions: u64,
    pub sessions: u64,
    pub verdicts: [u64; Verdict::COUNT],
    pub end_reasons: [u64; EndReason::COUNT],
    /// Closed sessions judged before their linger time was over, to make room.
    pub linger_cut: u64,
    /// Packets that arrived with a timestamp older than the worker's clock.
    pub time_went_back: u64,
    /// Most sessions held at once (summed over workers: the sum of their peaks).
    pub peak_sessions: u64,
    /// With several points: RSTs not compared across points (beyond four per end
    /// and point, or no room in the worker's [`RstLog`]).
    pub rsts_not_compared: u64,
    pub tls: TlsStats,
}

impl WorkerStats {
    pub fn add(&mut self, o: &WorkerStats) {
        self.packets += o.packets;
        self.retransmissions += o.retransmissions;
        self.sessions += o.sessions;
        for (a, b) in self.verdicts.iter_mut().zip(o.verdicts) {
            *a += b;
        }
        for (a, b) in self.end_reasons.iter_mut().zip(o.end_reasons) {
            *a += b;
        }
        self.linger_cut += o.linger_cut;
        self.time_went_back += o.time_went_back;
        self.peak_sessions += o.peak_sessions;
        self.rsts_not_compared += o.rsts_not_compared;
        self.tls.add(&o.tls);
    }
    pub fn evicted(&self) -> u64 {
        self.end_reasons[EndReason::Evicted.index()]
    }
}

/// One worker's sessions and clock.
#[derive(Debug)]
pub struct Worker {
    table: FlowTable,
    cfg: WorkerConfig,
    classify: ClassifyConfig,
    now: Timestamp,
    stats: WorkerStats,
    tls: TlsTable,
    /// With several points: the RSTs between each end's first and last.
    rsts: Option<RstLog>,
    /// Each end's first and last RST at each point.
    events: EventStore,
    /// With pairing notices on: the client-side and the server-side point.
    pair_points: Option<(PointId, PointId)>,
}

const SESSION_ID_STATE: foldhash::fast::FixedState =
    foldhash::fast::FixedState::with_seed(0x5e55_1011);

impl Worker {
    pub fn new(cfg: WorkerConfig) -> Worker {
        let points = cfg.points.clamp(1, MAX_POINTS);
        Worker {
            table: FlowTable::new(cfg.max_sessions, points, cfg.idle_timeout, cfg.linger),
            cfg: WorkerConfig { points, ..cfg },
            classify: ClassifyConfig {
                idle_timeout: cfg.idle_timeout,
                syn_grace: cfg.syn_grace,
            },
            now: Timestamp::ZERO,
            stats: WorkerStats::default(),
            tls: TlsTable::new(cfg.tls, cfg.max_sessions, points),
            // Sessions with three RSTs or more at a point are few: room for 1 in 64.
            rsts: (points > 1).then(|| RstLog::new((cfg.max_sessions / 64).max(64))),
            events: EventStore::default(),
            pair_points: cfg
                .pair_notices
                .then(|| cfg.correlate.points(points))
                .flatten(),
        }
    }

    /// Whether it sends pairing notices.
    pub fn pair_notices(&self) -> bool {
        self.pair_points.is_some()
    }

    /// Turns the pairing notices off (nobody takes them) or on.
    pub fn set_pair_notices(&mut self, on: bool) {
        self.pair_points = on
            .then(|| self.cfg.correlate.points(self.cfg.points))
            .flatten();
    }

    pub fn stats(&self) -> WorkerStats {
        WorkerStats {
            tls: crate::tls::TlsStats {
                memo: self.tls.memo.stats(),
                streams_exhausted: self.tls.streams.exhausted,
                streams_peak: self.tls.streams.peak as u64,
                ..self.tls.stats
            },
            rsts_not_compared: self.rsts.as_ref().map_or(0, |l| l.not_kept),
            ..self.stats
        }
    }

    pub fn sessions(&self) -> usize {
        self.table.len()
    }

    /// The worker's clock: the latest capture time it has seen.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Follows one packet, whose captured TCP payload is `payload`; emits the
    /// records of sessions that end on the way.
    pub fn process(&mut self, m: &PacketMeta, payload: &[u8], out: &mut impl FnMut(Record)) {
        self.process_to(m, payload, &mut Records(out));
    }

    /// [`Worker::process`], with notices for pairing ([`WorkerConfig::pair_notices`]).
    #[inline]
    pub fn process_to(&mut self, m: &PacketMeta, payload: &[u8], out: &mut impl Output) {
        self.advance_to(m.ts, out);
        if m.ts < self.now {
            self.stats.time_went_back += 1;
        }
        self.stats.packets += 1;
        let point = usize::from(m.point.0).min(self.cfg.points - 1);
        let mut found = self.table.find(m.hash, &m.key);
        if let Some(slot) = found {
            // Past its exact expiry (the timer wheel may not have fired yet): it ends
            // before this packet, so that verdicts never depend on timer timing.
            if let Some(end) = self.expired_at(slot, m.ts) {
                self.end(slot, end, out);
                found = None;
            }
        }
        let slot = match found {
            Some(slot) if self.starts_new_connection(slot, point, m) => {
                let end = match self.table.session(slot).close() {
                    Some((CloseKind::Rst, _)) => EndReason::Rst,
                    Some((CloseKind::Fin, _)) => EndReason::Fin,
                    None => EndReason::PortReused,
                };
                self.end(slot, end, out);
                self.open(m, out)
            }
            Some(slot) => slot,
            None => self.open(m, out),
        };

        let now = self.now;
        let (s, pts) = self.table.get_mut(slot);
        s.learn_roles(m.side, &m.pkt);
        s.last_ts = s.last_ts.max(m.ts);
        s.points_seen |= 1 << point;
        let pt = &mut pts[point];
        if m.pkt.flags.rst() {
            let d = &pt.dirs[m.side.index()];
            let log = self.rsts.as_mut();
            self.events
                .on_rst(slot, point, m.side, d, m.ts, &m.pkt, log);
        } else if m.pkt.flags.fin() {
            let d = &pt.dirs[m.side.index()];
            self.events.on_fin(slot, point, m.side, d, m.ts, &m.pkt);
        }
        if pt.on_packet(m.ts, m.side, &m.pkt) {
            self.stats.retransmissions += 1;
        }
        if m.pkt.payload_len > 0 && s.tls != TLS_NONE {
            // The fast path: the middle of an application_data record, in order and
            // whole, needs nothing but the window moved on.
            let w = &mut pt.tls_fast[m.side.index()];
            let len = m.pkt.payload_len;
            if w.covers(m.pkt.seq, len) && payload.len() as u32 == len && !m.pkt.flags.syn() {
                w.next = m.pkt.seq.wrapping_add(len);
            } else {
                let fast_path = self.cfg.tls.fast_path;
                tls_segment(&mut self.tls, fast_path, s, pt, point, m, payload);
            }
        }
        if s.pair >= PairReport::Pending && m.pkt.payload_len > 0 {
            pair_report(&mut self.tls, self.pair_points, s, out);
        }
        if s.close().is_none() {
            let close = if m.pkt.flags.rst() {
                Some(CloseKind::Rst)
            } else if m.pkt.flags.fin() && pt.both_fin() {
                Some(CloseKind::Fin)
            } else {
                None
            };
            if let Some(kind) = close {
                s.set_close(kind, m.ts);
                self.table.start_linger(slot, now);
                return;
            }
        }
        self.table.touch(slot, now);
    }

    /// Moves the clock to `now` (if later) and ends every session whose idle timeout
    /// or linger time has passed. The pipeline calls this for idle workers too, so
    /// that their sessions expire while other workers are busy.
    pub fn advance(&mut self, now: Timestamp, out: &mut impl FnMut(Record)) {
        self.advance_to(now, &mut Records(out));
    }

    /// [`Worker::advance`], with notices for pairing.
    pub fn advance_to(&mut self, now: Timestamp, out: &mut impl Output) {
        if now <= self.now {
            return;
        }
        self.now = now;
        while let Some(slot) = self.table.expired_linger(now) {
            let end = self.close_reason(slot);
            self.end(slot, end, out);
        }
        while let Some(slot) = self.table.expired_idle(now) {
            self.end(slot, EndReason::IdleTimeout, out);
        }
    }

    /// How a session ends if it has had no packet for its timeout by `ts`: the exact
    /// rule, whatever the timer wheel's granularity.
    fn expired_at(&self, slot: u32, ts: Timestamp) -> Option<EndReason> {
        let s = self.table.session(slot);
        let last = s.activity.max(s.last_ts);
        match s.close() {
            Some(_) if last.saturating_add(self.cfg.linger) <= ts => Some(self.close_reason(slot)),
            None if last.saturating_add(self.cfg.idle_timeout) <= ts => {
                Some(EndReason::IdleTimeout)
            }
            _ => None,
        }
    }

    /// End of input: judges every session still in the table.
    pub fn finish(&mut self, out: &mut impl FnMut(Record)) {
        self.finish_to(&mut Records(out));
    }

    /// [`Worker::finish`], with notices for pairing.
    pub fn finish_to(&mut self, out: &mut impl Output) {
        self.finish_to_with(EndReason::EndOfInput, out);
    }

    /// End of input (`open` = [`EndReason::EndOfInput`]) or of a live capture
    /// (`open` = [`EndReason::Shutdown`]): judges every session still in the table;
    /// one still open is reported with `open`.
    pub fn finish_to_with(&mut self, open: EndReason, out: &mut impl Output) {
        let mut drain = Drain::default();
        while let Some(slot) = self.table.any_resumed(&mut drain) {
            let end = match self.table.session(slot).close() {
                Some(_) => self.close_reason(slot),
                None => self.expired_at(slot, self.now).unwrap_or(open),
            };
            self.end(slot, end, out);
        }
    }

    fn close_reason(&self, slot: u32) -> EndReason {
        match self.table.session(slot).close() {
            Some((CloseKind::Fin, _)) => EndReason::Fin,
            _ => EndReason::Rst,
        }
    }

    /// A pure SYN on a known 4-tuple starts a new connection when, at this point:
    /// - the client's SYN was seen with another initial sequence number (compared at
    ///   the same point only: middleboxes that randomise ISNs change them between
    ///   points), or
    /// - no SYN was seen but the session was seen closing (RST, or FIN both ways):
    ///   a session that began before the capture has ended.
    ///
    /// A SYN with the same number is a retransmission (a refused client retrying),
    /// and a point that has seen nothing yet (its clock behind the others') only
    /// joins the session.
    fn starts_new_connection(&self, slot: u32, point: usize, m: &PacketMeta) -> bool {
        let f = m.pkt.flags;
        if !f.syn() || f.ack() || f.rst() {
            return false;
        }
        let s = self.table.session(slot);
        let pt = &self.table.points(slot)[point];
        let mine = &pt.dirs[m.side.index()];
        match mine.syn() {
            Some(e) => s.role_of(m.side) == Role::Client && e.seq != m.pkt.seq,
            None => pt.seen() && (pt.rst_seen() || pt.both_fin()),
        }
    }

    fn open(&mut self, m: &PacketMeta, out: &mut impl Output) -> u32 {
        if self.table.is_full() {
            if let Some(victim) = self.table.eviction_victim() {
                let end = if self.table.session(victim).close().is_some() {
                    self.stats.linger_cut += 1;
                    self.close_reason(victim)
                } else {
                    EndReason::Evicted
                };
                self.end(victim, end, out);
            }
        }
        let mut s = Session::new(m.key, m.ts, m.side, &m.pkt);
        if !self.cfg.tls.enabled {
            s.tls = TLS_NONE;
        }
        self.stats.sessions += 1;
        let slot = self
            .table
            .insert(s, m.hash, self.now)
            .expect("a slot was just freed");
        self.stats.peak_sessions = self.stats.peak_sessions.max(self.table.len() as u64);
        if let Some((cp, sp)) = self.pair_points {
            // At the client-side point: told at its first payload, unless seen at the
            // server-side point by then. At the server-side point: now (a proxy's
            // leg; a session crossing a transparent middlebox is seen at the
            // client side first).
            let (s, _) = self.table.get_mut(slot);
            if m.point == cp {
                s.pair = PairReport::Pending;
            } else if m.point == sp {
                s.pair = PairReport::Pending;
                s.points_seen |= 1 << sp.0;
                pair_report(&mut self.tls, self.pair_points, s, out);
            }
        }
        slot
    }

    fn end(&mut self, slot: u32, end: EndReason, out: &mut impl Output) {
        let s = *self.table.session(slot);
        let mut points = [PointState::default(); MAX_POINTS];
        let live = self.table.points(slot);
        for (i, (p, l)) in points.iter_mut().zip(live).enumerate() {
            *p = PointState::take(l, &mut self.events, slot, i);
        }
        let pts = &points[..live.len()];
        let (mut verdict, mut evidence) = classify(&s, pts, end, self.now, &self.classify);
        let mut tls = [TlsFacts::default(); MAX_POINTS];
        let mut ntls = 0;
        if s.tls < TLS_NONE {
            self.tls.facts_into(s.tls, &mut tls);
            self.tls.put(s.tls);
            ntls = pts.len();
        }
        // The session did not end on its own: no "silence" can be read from it.
        let by_capture = matches!(
            end,
            EndReason::EndOfInput
                | EndReason::Shutdown
                | EndReason::Evicted
                | EndReason::PortReused
        );
        let (v, e, pan) = classify_tls(&s, pts, &mut tls[..ntls], by_capture, verdict, &evidence);
        let mids = self.rsts.as_mut().and_then(|l| l.take(slot));
        let compare = if pts.len() > 1 {
            let mids = mids.as_ref().map_or(&[][..], |m| &m[..pts.len()]);
            correlate::compare(&s, pts, mids, &tls[..ntls], &self.cfg.correlate)
        } else {
            Comparison::default()
        };
        let (v, mut e, pan_end_reason) = apply_comparison(v, &e, pan, &compare);
        // Signs at one point, for RSTs the comparison of two points did not already
        // explain (an RST forged beyond both points is seen at both).
        let mut suspect = correlate::suspect_rsts(&s, pts);
        for u in &mut suspect {
            if u.is_some_and(|u| compare.unmatched().any(|m| m.rst && m.seg == u.seg)) {
                *u = None;
            }
        }
        add_suspects(&mut e, &suspect);
        (verdict, evidence) = (v, e);
        let record = Record {
            session_id: session_id(&s),
            key: s.key,
            session: s,
            end,
            judged_at: self.now,
            verdict,
            evidence,
            pan_end_reason,
            npoints: pts.len() as u8,
            points,
            tls,
            compare,
            pairing: None,
            suspect,
            pushed_ns: 0,
        };
        self.stats.verdicts[verdict.index()] += 1;
        self.stats.end_reasons[end.index()] += 1;
        self.table.remove(slot);
        out.record(record);
    }
}

/// A session's `session_id`: a hash of its key and its start.
fn session_id(s: &Session) -> u64 {
    let mut h = SESSION_ID_STATE.build_hasher();
    h.write(&s.key.lo.addr);
    h.write(&s.key.hi.addr);
    h.write_u32(u32::from(s.key.lo.port) << 16 | u32::from(s.key.hi.port));
    h.write_u64(s.first_ts.0);
    h.finish()
}

/// Tells the pairer of session `s`, open at one of `points` (client side, server
/// side) only, what it needs (see [`PairReport`]): that it is open, where, to
/// which server, since when, with which SNI; then its SNI once its ClientHello is
/// read. A session seen at both points by then needs nothing. Out of line: called
/// once or twice per session.
#[inline(never)]
fn pair_report(
    tls: &mut TlsTable,
    points: Option<(PointId, PointId)>,
    s: &mut Session,
    out: &mut impl Output,
) {
    let Some((cp, sp)) = points else {
        s.pair = PairReport::Off;
        return;
    };
    let seen = |p: PointId| s.points_seen & (1 << p.0) != 0;
    let at = match (seen(cp), seen(sp)) {
        (true, false) => cp,
        (false, true) => sp,
        _ => {
            s.pair = PairReport::Off;
            return;
        }
    };
    let sni = match s.tls {
        TLS_NONE => Sni::None,
        TLS_UNKNOWN => Sni::NotYet,
        i => match tls.sni(i, usize::from(at.0)) {
            Some(sni) => sni.map_or(Sni::None, |n| Sni::Hash(sni_hash(n.as_bytes()))),
            None => Sni::NotYet,
        },
    };
    let session_id = session_id(s);
    match s.pair {
        PairReport::Pending => {
            let n = Notice::Opened(Opened {
                session_id,
                point: at,
                server: s.key.endpoint(s.side_of(Role::Server)),
                sni,
                first: s.first_ts,
            });
            s.pair = if !out.notice(&n) {
                PairReport::Lost
            } else if sni == Sni::NotYet {
                PairReport::SniPending
            } else {
                PairReport::Sent
            };
        }
        PairReport::SniPending if sni != Sni::NotYet => {
            // Lost, the pairer keeps "not yet": a possible candidate for any SNI.
            out.notice(&Notice::Sni { session_id, sni });
            s.pair = PairReport::Sent;
        }
        _ => {}
    }
}

/// A segment with payload of a session that is or may be TLS, off the fast path
/// (out of line: [`Worker::process`] stays small for the common case).
#[inline(never)]
fn tls_segment(
    tls: &mut TlsTable,
    fast_path: bool,
    s: &mut Session,
    pt: &mut PointLive,
    point: usize,
    m: &PacketMeta,
    payload: &[u8],
) {
    let d = m.side.index();
    let window = pt.tls_fast[d];
    let (seq, len) = (m.pkt.seq, m.pkt.payload_len);
    let whole = payload.len() as u32 == len && !m.pkt.flags.syn();
    let reached = window.reached();
    if whole && reached == Some(seq) {
        // In order from the window's start, and past its end: the current record ends
        // inside and the next header follows. If that record is more application
        // data, it is read in place without the full path.
        let off = window.end.wrapping_sub(seq) as usize;
        if let Some(w) = tls.fast_header(s.tls, point, m, payload, off) {
            pt.tls_fast[d] = w;
            return;
        }
    }
    let dir = &pt.dirs[d];
    let seg = Segment {
        ts: m.ts,
        side: m.side,
        // A SYN's data (TCP Fast Open) starts after the SYN's own number.
        seq: seq.wrapping_add(u32::from(m.pkt.flags.syn())),
        payload,
        wire_len: len,
        isn: dir.syn().map(|e| e.seq),
        acked_unseen: dir.acked_unseen,
    };
    if s.tls == TLS_UNKNOWN {
        // Decide on the first payload, unless it is too short to tell or out of
        // order: then the stream decides, once in order.
        let undecided =
            payload.len() < 5 || seg.isn.is_some_and(|isn| seg.seq != isn.wrapping_add(1));
        let mid_stream = s.roles != crate::session::RoleSource::Syn;
        s.tls = if undecided || looks_like_tls(payload, mid_stream) {
            tls.take()
        } else {
            tls.stats.not_tls += 1;
            TLS_NONE
        };
        if s.tls == TLS_NONE {
            return;
        }
    }
    let w = tls.on_segment(s.tls, point, reached, &seg);
    pt.tls_fast[d] = if fast_path { w } else { FastWindow::NONE };
}

#[cfg(test)]
mod size_report {
    /// Prints the sizes that set memory per session and bandwidth per packet
    /// (`cargo test -p tapwatch-engine size_report -- --nocapture`).
    #[test]
    #[allow(
        clippy::print_stdout,
        reason = "a report for the reader, shown with --nocapture"
    )]
    fn sizes() {
        use std::mem::size_of;
        println!(
            "PacketMeta {} Packet {} Session {} PointLive {} DirLive {} Record {} TlsPoint {} TlsFacts {} TlsCore {} DirFacts {} ServerHello {} FlowKey {}",
            size_of::<super::PacketMeta>(),
            size_of::<crate::wire::Packet>(),
            size_of::<crate::session::Session>(),
            size_of::<crate::session::PointLive>(),
            size_of::<crate::tcp::DirLive>(),
            size_of::<crate::verdict::Record>(),
            size_of::<crate::tls::observe::TlsPoint>(),
            size_of::<crate::tls::observe::TlsFacts>(),
            size_of::<crate::tls::observe::TlsCore>(),
            size_of::<crate::tls::observe::DirFacts>(),
            size_of::<Option<crate::tls::hello::ServerHello>>(),
            size_of::<crate::flow::FlowKey>()
        );
    }
}

#[cfg(test)]
mod event_store_tests {
    use super::*;
    use crate::flow::Endpoint;
    use crate::wire::TcpFlags;

    /// An RST flood through a small table: every session's first and last RST at
    /// each point reach its record, and the side store never holds more than two
    /// entries per session and point the table holds, and none once all are judged.
    #[test]
    fn test_rst_flood_keeps_first_and_last_and_stays_bounded() {
        const MAX: usize = 16;
        let mut w = Worker::new(WorkerConfig {
            max_sessions: MAX,
            points: 2,
            ..WorkerConfig::default()
        });
        let mut records = Vec::new();
        let server = Endpoint::v4([198, 18, 6, 2], 443);
        let sessions = 500u16;
        let mut ms = 0u64;
        for i in 0..sessions {
            let client = Endpoint::v4([198, 18, 5, 1], 10_000 + i);
            // Three RSTs from the client and two from the server, at both points.
            for (from_client, seq) in [
                (true, 100),
                (false, 900),
                (true, 200),
                (false, 990),
                (true, 300),
            ] {
                for point in [PointId(0), PointId(1)] {
                    let (src, dst) = if from_client {
                        (client, server)
                    } else {
                        (server, client)
                    };
                    let pkt = Packet {
                        src,
                        dst,
                        seq: seq + u32::from(i),
                        flags: TcpFlags(TcpFlags::RST),
                        ttl: 64,
                        wire_len: 54,
                        ..Packet::default()
                    };
                    ms += 1;
                    let m = PacketMeta::new(Timestamp(1_700_000_000_000_000_000 + ms), point, pkt);
                    w.process(&m, &[], &mut |r| records.push(r));
                    assert!(w.events.len().0 <= MAX * 2 * 2, "bounded by the table");
                }
            }
        }
        w.finish(&mut |r| records.push(r));
        assert!(w.events.is_empty(), "every entry given up with its session");
        assert_eq!(records.len(), usize::from(sessions));
        for r in &records {
            let i = u32::from(r.key.endpoint(r.session.side_of(Role::Client)).port - 10_000);
            for p in &r.points[..2] {
                let c = &p.dirs[r.session.side_of(Role::Client).index()];
                let s = &p.dirs[r.session.side_of(Role::Server).index()];
                assert_eq!((c.rst_count, s.rst_count), (3, 2));
                assert_eq!(c.rst().map(|e| e.seq), Some(100 + i));
                assert_eq!(c.last_rst().map(|e| e.seq), Some(300 + i));
                assert_eq!(s.rst().map(|e| e.seq), Some(900 + i));
                assert_eq!(s.last_rst().map(|e| e.seq), Some(990 + i));
            }
        }
    }
}
