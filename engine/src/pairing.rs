//! Legs of one session that a proxy re-originated from its own address: the client's
//! connection is seen at the client-side point, the proxy's connection to the
//! server (another 5-tuple, and after a retry several) at the server-side point.
//! They hash to different workers, so they are joined after the workers, on the
//! exporter's thread (DESIGN.md, "Two capture points").
//!
//! [`Pairer`] takes every record as it leaves the workers. Records seen at both
//! points, or in a run with one point, pass straight through. A record seen at one
//! of the two compared points only is held (a client-side leg for `window` of
//! capture time, a server-side one for twice that); when a client-side leg's time
//! is up, the server-side legs that match it (same server
//! endpoint, same SNI, started while the client-side leg was open) and match no
//! other held client-side leg are joined into it: one record, with the server-side
//! leg as that point's entry, the comparison of the two points, and the verdict of
//! the leg that failed. A leg that matches several is never joined (counted as
//! ambiguous). Sans-IO and bounded: at most `max_held` records are held (reserved
//! on the first one-point leg: about 8 KB each); beyond that the oldest leaves
//! unpaired (counted). Joining a session collects its legs in a small vector: one
//! allocation per joined session, on the exporter, never on a worker.

use std::collections::VecDeque;

use crate::correlate::{compare, Comparison, CorrelateConfig};
use crate::flow::Endpoint;
use crate::session::{PointId, Role};
use crate::time::{Nanos, Timestamp};
use crate::verdict::{apply_comparison, Evidence, Record, Verdict};

/// How legs are paired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairConfig {
    /// Points in the run: pairing needs two.
    pub points: usize,
    pub correlate: CorrelateConfig,
    /// How long (capture time) a one-point leg waits for its other leg; zero
    /// turns pairing off.
    pub window: Nanos,
    /// Legs held at once.
    pub max_held: usize,
}

impl Default for PairConfig {
    fn default() -> Self {
        PairConfig {
            points: 1,
            correlate: CorrelateConfig::default(),
            window: Nanos::from_secs(2),
            max_held: 2048,
        }
    }
}

/// How sure a pairing is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confidence {
    /// Same server endpoint and SNI, the only candidate in time.
    High,
    /// Same server endpoint, the only candidate in time, but no SNI on either leg
    /// (not TLS, or no server_name): the server and the time alone.
    Medium,
}

impl Confidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::High => "high",
            Confidence::Medium => "medium",
        }
    }
}

/// One server-side leg joined into a client-side session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leg {
    pub session_id: u64,
    /// The proxy's end of that leg.
    pub client: Endpoint,
    pub first_ts: Timestamp,
    /// That leg's own verdict, before joining.
    pub verdict: Verdict,
}

/// How a record's legs were joined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pairing {
    pub confidence: Confidence,
    /// The server-side legs, in start order (a proxy that retried has several);
    /// the last one is the one in the record's `points`.
    pub legs: [Option<Leg>; Pairing::CAP],
    pub nlegs: u8,
    /// Legs beyond `CAP`, joined but not listed.
    pub more: u16,
}

impl Pairing {
    pub const CAP: usize = 4;

    pub fn legs(&self) -> impl Iterator<Item = &Leg> {
        self.legs[..usize::from(self.nlegs)].iter().flatten()
    }
}

/// What the pairer counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PairStats {
    /// Server-side legs joined into a client-side session.
    pub joined: u64,
    /// Server-side legs that matched more than one session, and so were handed on
    /// unjoined.
    pub ambiguous: u64,
    /// Legs handed on before their wait was over because `max_held` were held
    /// (joined if their other leg had already arrived, else unjoined).
    pub overflow: u64,
    /// Most legs held at once.
    pub peak_held: u64,
}

/// Joins re-originated legs; see the module documentation.
#[derive(Debug)]
pub struct Pairer {
    cfg: PairConfig,
    /// One-point legs held, in arrival order: client-side ones (`inside`) leave
    /// after `window`, joined with the server-side ones that are theirs; server-side
    /// ones (`outside`) wait twice as long, so that a client-side leg judged up to
    /// `window` after them still finds them.
    inside: VecDeque<(Key, Record)>,
    /// With whether the leg matched another client-side leg too (ambiguous).
    outside: VecDeque<(Key, Record, bool)>,
    /// Client-side legs already handed on, kept (as their [`Leg`] keys) while a
    /// server-side leg that matches them could still be held: such a leg is
    /// ambiguous for a later client-side leg too.
    recent: VecDeque<Key>,
    now: Timestamp,
    pub stats: PairStats,
}

/// What pairing compares of a leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key {
    server: Endpoint,
    /// A hash of the SNI, if the leg had one.
    sni: Option<u64>,
    first: Timestamp,
    last: Timestamp,
    judged: Timestamp,
}

impl Key {
    fn of(r: &Record) -> Key {
        use std::hash::{BuildHasher, Hasher};
        let sni = r.tls[..usize::from(r.npoints)]
            .iter()
            .find_map(|f| f.client_hello.and_then(|ch| ch.sni))
            .map(|s| {
                let mut h = foldhash::fast::FixedState::with_seed(0x5a1).build_hasher();
                h.write(s.as_bytes());
                h.finish()
            });
        Key {
            server: r.key.endpoint(r.session.side_of(Role::Server)),
            sni,
            first: r.session.first_ts,
            last: r.session.last_ts,
            judged: r.judged_at,
        }
    }
}

impl Pairer {
    pub fn new(cfg: PairConfig) -> Pairer {
        Pairer {
            cfg,
            inside: VecDeque::new(),
            outside: VecDeque::new(),
            recent: VecDeque::new(),
            now: Timestamp::ZERO,
            stats: PairStats::default(),
        }
    }

    fn points(&self) -> Option<(PointId, PointId)> {
        // A window of zero turns pairing off.
        if self.cfg.points < 2 || self.cfg.window == Nanos(0) {
            return None;
        }
        let c = usize::from(self.cfg.correlate.client_side.0).min(self.cfg.points - 1);
        let s = (0..self.cfg.points).find(|&i| i != c)?;
        Some((PointId(c as u8), PointId(s as u8)))
    }

    fn held(&self) -> usize {
        self.inside.len() + self.outside.len()
    }

    /// Takes one record from the workers: hands it on at once, or holds it (see
    /// [`Pairer::advance`] for when held ones leave).
    pub fn push(&mut self, r: &Record, out: &mut impl FnMut(&Record)) {
        let Some((cp, sp)) = self.points() else {
            out(r);
            return;
        };
        let mut seen = r.points().map(|(id, _)| id);
        match (seen.next(), seen.next()) {
            (Some(only), None) if only == cp || only == sp => {
                if self.inside.capacity() == 0 {
                    // Reserved once, on the first one-point leg of a two-point run.
                    let half = self.cfg.max_held.max(2) / 2;
                    self.inside.reserve_exact(half);
                    self.outside.reserve_exact(half);
                    self.recent.reserve_exact(half);
                }
                if self.held() >= self.cfg.max_held.max(1) {
                    self.stats.overflow += 1;
                    self.emit_one(out);
                }
                if only == cp {
                    self.inside.push_back((Key::of(r), *r));
                } else {
                    self.outside.push_back((Key::of(r), *r, false));
                }
                self.stats.peak_held = self.stats.peak_held.max(self.held() as u64);
            }
            _ => out(r),
        }
    }

    /// Every worker has judged everything up to capture time `now` (and handed the
    /// records on): held legs whose wait is over leave, joined where they can be.
    /// With several workers, `now` must be the slowest one's clock, or a leg would
    /// leave before its other leg, still on a slower worker, arrives.
    pub fn advance(&mut self, now: Timestamp, out: &mut impl FnMut(&Record)) {
        self.now = self.now.max(now);
        let window = self.cfg.window;
        // Legs arrive in the order the workers judged them, which is not time order
        // across workers: look at every held leg, not only the oldest arrival, and
        // let client-side legs claim their server-side legs before those leave.
        while let Some(k) = self
            .inside
            .iter()
            .position(|(i, _)| i.judged.saturating_add(window) <= self.now)
        {
            self.emit_inside_at(k, out);
        }
        let hold = Nanos(window.0.saturating_mul(2));
        while let Some(k) = self
            .outside
            .iter()
            .position(|(o, _, _)| o.judged.saturating_add(hold) <= self.now)
        {
            self.emit_outside_at(k, out);
        }
    }

    /// End of input: hands on everything held.
    pub fn finish(&mut self, out: &mut impl FnMut(&Record)) {
        while !self.inside.is_empty() {
            self.emit_inside(out);
        }
        while !self.outside.is_empty() {
            self.emit_outside_at(0, out);
        }
    }

    /// Hands on held server-side leg `k` unjoined (counted if it was ambiguous).
    fn emit_outside_at(&mut self, k: usize, out: &mut impl FnMut(&Record)) {
        if let Some((_, o, ambiguous)) = self.outside.remove(k) {
            self.stats.ambiguous += u64::from(ambiguous);
            out(&o);
        }
    }

    /// Makes room: the older of the two queues' fronts leaves.
    fn emit_one(&mut self, out: &mut impl FnMut(&Record)) {
        match (self.inside.front(), self.outside.front()) {
            (Some((i, _)), Some((o, _, _))) if o.judged < i.judged => self.emit_outside_at(0, out),
            (Some(_), _) => self.emit_inside(out),
            (None, _) => self.emit_outside_at(0, out),
        }
    }

    /// Hands on the oldest client-side leg (see [`Pairer::emit_inside_at`]).
    fn emit_inside(&mut self, out: &mut impl FnMut(&Record)) {
        self.emit_inside_at(0, out);
    }

    /// Hands on held client-side leg `k`, joined with the server-side legs that
    /// match it and no other held client-side leg.
    fn emit_inside_at(&mut self, k: usize, out: &mut impl FnMut(&Record)) {
        let Some((key, inside)) = self.inside.remove(k) else {
            return;
        };
        // Forget client-side legs handed on longer ago than a server-side leg is
        // held.
        let hold = Nanos(self.cfg.window.0.saturating_mul(2));
        while self
            .recent
            .front()
            .is_some_and(|k| k.judged.saturating_add(hold) < self.now)
        {
            self.recent.pop_front();
        }
        let mut mine: Vec<usize> = Vec::new();
        let mut sni_everywhere = true;
        for (k, (ok, _, ambiguous)) in self.outside.iter_mut().enumerate() {
            let Some(sni) = matches(&key, ok) else {
                continue;
            };
            let elsewhere = self.inside.iter().any(|(x, _)| matches(x, ok).is_some())
                || self.recent.iter().any(|x| matches(x, ok).is_some());
            if elsewhere {
                *ambiguous = true;
                continue;
            }
            sni_everywhere &= sni;
            mine.push(k);
        }
        if self.recent.len() >= self.cfg.max_held.max(1) {
            self.recent.pop_front();
        }
        self.recent.push_back(key);
        if mine.is_empty() {
            out(&inside);
            return;
        }
        let mut legs: Vec<Record> = mine
            .iter()
            .rev()
            .filter_map(|&k| self.outside.remove(k).map(|(_, r, _)| r))
            .collect();
        legs.reverse();
        legs.sort_by_key(|l| l.session.first_ts);
        self.stats.joined += legs.len() as u64;
        let confidence = if sni_everywhere {
            Confidence::High
        } else {
            Confidence::Medium
        };
        let joined = join(&inside, &legs, confidence, &self.cfg);
        out(&joined);
    }
}

/// Whether server-side leg `o` may be the proxy's connection for client-side leg
/// `i`: the same server endpoint, the same SNI (or none on both), and `o` started
/// while `i` was open. `Some(true)` when the SNI matched, `Some(false)` when
/// neither had one.
fn matches(i: &Key, o: &Key) -> Option<bool> {
    if i.server != o.server || i.server.port == 0 {
        return None;
    }
    let with_sni = match (i.sni, o.sni) {
        (Some(a), Some(b)) if a == b => true,
        (None, None) => false,
        _ => return None,
    };
    (o.first >= i.first && o.first <= i.last).then_some(with_sni)
}

/// One record for a client-side leg and its server-side legs (`legs`, in start
/// order, at least one).
fn join(inside: &Record, legs: &[Record], confidence: Confidence, cfg: &PairConfig) -> Record {
    let mut r = *inside;
    let cp = usize::from(cfg.correlate.client_side.0).min(cfg.points - 1);
    let sp = (0..cfg.points).find(|&i| i != cp).unwrap_or(1);
    let mut pairing = Pairing {
        confidence,
        legs: [None; Pairing::CAP],
        nlegs: 0,
        more: 0,
    };
    for o in legs {
        if usize::from(pairing.nlegs) < Pairing::CAP {
            pairing.legs[usize::from(pairing.nlegs)] = Some(Leg {
                session_id: o.session_id,
                client: o.key.endpoint(o.session.client),
                first_ts: o.session.first_ts,
                verdict: o.verdict,
            });
            pairing.nlegs += 1;
        } else {
            pairing.more = pairing.more.saturating_add(1);
        }
    }
    // The last attempt is the one whose outcome the client got.
    let last = legs.last().expect("at least one leg");
    // That leg's per-point state, its sides turned to the client-side leg's key.
    let mut point = last.points[sp];
    let mut tls = last.tls[sp];
    if last.session.client != inside.session.client {
        point.dirs.swap(0, 1);
        point.tls_fast.swap(0, 1);
        tls.swap_sides();
    }
    r.points[sp] = point;
    r.tls[sp] = tls;
    r.npoints = r.npoints.max(sp as u8 + 1).max(cp as u8 + 1);
    r.session.points_seen |= 1 << sp;
    r.session.last_ts = r.session.last_ts.max(last.session.last_ts);
    r.pairing = Some(pairing);
    // Both legs are now compared: single-point suspicions no longer apply.
    r.suspect = [None; 2];

    // The verdict: the client-side leg's, unless it says nothing went wrong there
    // and the server-side leg failed: then the failure is upstream of the proxy.
    let upstream_failed = matches!(
        last.verdict,
        Verdict::ClientRejectedCertificate
            | Verdict::ServerRejectedClientCertificate
            | Verdict::HandshakeParameterMismatch
            | Verdict::NoServerHello
            | Verdict::MiddleboxReset
            | Verdict::Rejected
            | Verdict::NoResponse
    );
    let inside_quiet = matches!(
        inside.verdict,
        Verdict::Ok
            | Verdict::ClientAbandonedHandshake
            | Verdict::ResetByClient
            | Verdict::ResetByServer
            | Verdict::Timeout
            | Verdict::IncompleteCapture
    );
    let (verdict, mut evidence, pan) = if upstream_failed && inside_quiet {
        (last.verdict, last.evidence, last.pan_end_reason)
    } else {
        (inside.verdict, inside.evidence, inside.pan_end_reason)
    };
    evidence.retain(|e| !matches!(e, Evidence::SuspectRst { .. }));
    let points = &r.points[..usize::from(r.npoints)];
    let tls = &r.tls[..usize::from(r.npoints)];
    let cmp: Comparison = compare(&r.session, points, &[], tls, &cfg.correlate);
    // Resets are not compared across legs: each leg's TCP is its own, so a reset on
    // one and none on the other says nothing about forgery.
    let cmp = Comparison {
        unmatched: [None; Comparison::CAP],
        nunmatched: 0,
        ..cmp
    };
    let (verdict, mut evidence, pan) = apply_comparison(verdict, &evidence, pan, &cmp);
    evidence.insert(
        1,
        Evidence::Paired {
            client: PointId(cp as u8),
            server: PointId(sp as u8),
            legs: u16::from(pairing.nlegs).saturating_add(pairing.more),
            confidence,
        },
    );
    r.verdict = verdict;
    r.evidence = evidence;
    r.pan_end_reason = pan;
    r.compare = cmp;
    r
}
