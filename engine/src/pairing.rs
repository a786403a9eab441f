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
//! is up, the server-side legs that match it (same server endpoint, same SNI,
//! started while the client-side leg was open) and may belong to no other
//! client-side leg are joined into it: one record, with the server-side leg as that
//! point's entry, the comparison of the two points, and the verdict of the leg that
//! failed. A leg that matches several is never joined (counted as ambiguous).
//!
//! "No other client-side leg" includes sessions still open: the workers tell the
//! pairer of them ([`Notice`], through [`Pairer::notice`]). The same notices let a
//! leg wait (bounded by `max_wait`) for its other leg while that one is open, so a
//! leg that ends long after the other (an idle timeout) is still joined. When
//! notices were lost, the pairer does not join what it cannot prove unique.
//!
//! Sans-IO and bounded: at most `max_held` records are held (reserved on the first
//! one-point leg: about 8 KB each), beyond that the oldest leaves unpaired
//! (counted); at most `max_open` open sessions are followed, beyond that they count
//! as unknown. Decisions follow the legs' capture times, not the order in which
//! they arrive. Joining a session collects its legs in a small vector, and
//! following open sessions uses an ordered set: allocation on the exporter, never
//! on a worker.

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::correlate::{compare, unseen_at_server, Comparison, CorrelateConfig};
use crate::flow::Endpoint;
use crate::session::{PairReport, PointId, Role};
use crate::time::{Nanos, Timestamp};
use crate::verdict::{add_suspects, apply_comparison, Evidence, Record, Verdict};

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
    /// How much longer than its window a leg waits for its other leg while that
    /// one is still open (set from the idle timeout and the linger time: by then a
    /// leg that went quiet has ended).
    pub max_wait: Nanos,
    /// Open sessions known at once (from [`Notice::Opened`]).
    pub max_open: usize,
}

impl Default for PairConfig {
    fn default() -> Self {
        PairConfig {
            points: 1,
            correlate: CorrelateConfig::default(),
            window: Nanos::from_secs(2),
            max_held: 2048,
            max_wait: Nanos::from_secs(122),
            max_open: 16_384,
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
    /// Server-side legs that matched more than one session (ended or still open),
    /// and so were handed on unjoined.
    pub ambiguous: u64,
    /// Server-side legs not joined because the pairer had lost track of the
    /// sessions open at their time ([`Notice::Lost`], or no room for a notice):
    /// it cannot prove that they had no other candidate.
    pub unproven: u64,
    /// Legs handed on before their wait was over because `max_held` were held
    /// (joined if their other leg had already arrived, else unjoined).
    pub overflow: u64,
    /// Legs held past their window because their other leg was still open.
    pub waited: u64,
    /// Most legs held at once.
    pub peak_held: u64,
    /// Notices of open sessions not kept because `max_open` were known.
    pub open_full: u64,
    /// Most open sessions known at once.
    pub peak_open: u64,
}

/// A session's SNI as far as the pairer knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sni {
    /// Not known yet: its ClientHello has not been read (it may never be). Such a
    /// session may be the other leg of any session to its server.
    NotYet,
    /// None: not TLS, or a ClientHello without server_name.
    None,
    /// A hash of the server_name ([`sni_hash`]).
    Hash(u64),
}

/// The hash that pairing compares SNIs by.
pub fn sni_hash(sni: &[u8]) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = foldhash::fast::FixedState::with_seed(0x5a1).build_hasher();
    h.write(sni);
    h.finish()
}

/// A session seen at one of the two compared points only, still open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    /// Its record's `session_id` (the same hash of key and start).
    pub session_id: u64,
    /// Where it was seen.
    pub point: PointId,
    pub server: Endpoint,
    pub sni: Sni,
    pub first: Timestamp,
}

/// What a worker tells the pairer about sessions still open, so that a leg is
/// never joined while another session it may belong to is open, and a leg waits
/// for its other leg while that one is open (see [`Pairer::notice`]). A worker
/// sends each notice before the record of the same session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A session seen at one compared point only: at the client-side point, told
    /// at its first payload; at the server-side point, at its first packet.
    Opened(Opened),
    /// The SNI of a session told earlier with [`Sni::NotYet`].
    Sni { session_id: u64, sni: Sni },
    /// `count` [`Notice::Opened`] did not fit in the worker's ring: sessions that
    /// opened at or after `since` may be open and unknown, until the records of
    /// those `count` sessions (marked [`crate::session::PairReport::Lost`]) arrive.
    Lost { since: Timestamp, count: u32 },
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
    /// Sessions still open at one compared point, by `session_id` (at most
    /// `max_open`), and the same ordered by server endpoint, point and start.
    open: HashMap<u64, (PointId, Key)>,
    open_index: BTreeSet<(Endpoint, u8, Timestamp, u64)>,
    /// Open sessions the pairer was not told of (lost notices, or no room), minus
    /// those whose records arrived since; while positive, any leg that started at
    /// or after `unknown_since` may have an unknown other candidate.
    unknown: i64,
    unknown_since: Timestamp,
    now: Timestamp,
    /// Something arrived since the last [`Pairer::advance`].
    changed: bool,
    pub stats: PairStats,
}

/// What pairing compares of a leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key {
    server: Endpoint,
    sni: Sni,
    first: Timestamp,
    /// Its last packet (`Timestamp(u64::MAX)`: still open).
    last: Timestamp,
    judged: Timestamp,
    /// Held past its window, waiting for its other leg (counted once).
    waited: bool,
    /// Waiting, looked at already in this round of [`Pairer::advance`].
    parked: bool,
}

impl Key {
    fn of(r: &Record) -> Key {
        let sni = r.tls[..usize::from(r.npoints)]
            .iter()
            .find_map(|f| f.client_hello.and_then(|ch| ch.sni))
            .map_or(Sni::None, |s| Sni::Hash(sni_hash(s.as_bytes())));
        Key {
            server: r.key.endpoint(r.session.side_of(Role::Server)),
            sni,
            first: r.session.first_ts,
            last: r.session.last_ts,
            judged: r.judged_at,
            waited: false,
            parked: false,
        }
    }

    fn open(o: &Opened) -> Key {
        Key {
            server: o.server,
            sni: o.sni,
            first: o.first,
            last: Timestamp(u64::MAX),
            judged: Timestamp(u64::MAX),
            waited: false,
            parked: false,
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
            open: HashMap::new(),
            open_index: BTreeSet::new(),
            unknown: 0,
            unknown_since: Timestamp(u64::MAX),
            now: Timestamp::ZERO,
            changed: false,
            stats: PairStats::default(),
        }
    }

    fn points(&self) -> Option<(PointId, PointId)> {
        // A window of zero turns pairing off.
        if self.cfg.window == Nanos(0) {
            return None;
        }
        self.cfg.correlate.points(self.cfg.points)
    }

    fn held(&self) -> usize {
        self.inside.len() + self.outside.len()
    }

    /// Takes one notice from a worker (see [`Notice`]). Notices of a session come
    /// before its record; notices and records of different workers in any order.
    pub fn notice(&mut self, n: &Notice) {
        if self.points().is_none() {
            return;
        }
        self.changed = true;
        match *n {
            Notice::Opened(o) => {
                if let Some((point, k)) = self.open.get(&o.session_id).copied() {
                    self.unindex(o.session_id, point, &k);
                }
                if self.open.len() >= self.cfg.max_open.max(1)
                    && !self.open.contains_key(&o.session_id)
                {
                    self.stats.open_full += 1;
                    self.lose(o.first, 1);
                    return;
                }
                if self.open.capacity() == 0 {
                    self.open.reserve(self.cfg.max_open.max(1));
                }
                let k = Key::open(&o);
                self.open.insert(o.session_id, (o.point, k));
                self.open_index
                    .insert((k.server, o.point.0, k.first, o.session_id));
                self.stats.peak_open = self.stats.peak_open.max(self.open.len() as u64);
            }
            Notice::Sni { session_id, sni } => {
                if let Some((_, k)) = self.open.get_mut(&session_id) {
                    k.sni = sni;
                }
            }
            Notice::Lost { since, count } => self.lose(since, i64::from(count)),
        }
    }

    /// `count` open sessions, opened at or after `since`, are unknown.
    fn lose(&mut self, since: Timestamp, count: i64) {
        if self.unknown <= 0 {
            self.unknown_since = Timestamp(u64::MAX);
        }
        self.unknown += count;
        self.unknown_since = self.unknown_since.min(since);
        if self.unknown <= 0 {
            self.unknown_since = Timestamp(u64::MAX);
        }
    }

    /// A session the workers told of has ended (its record is here, or was
    /// dropped): it is not open any more.
    fn forget(&mut self, session_id: u64) {
        match self.open.remove(&session_id) {
            Some((point, k)) => self.unindex(session_id, point, &k),
            // Told but not kept (no room), or its notice lost: one unknown less.
            None => self.lose(Timestamp(u64::MAX), -1),
        }
    }

    fn unindex(&mut self, id: u64, point: PointId, k: &Key) {
        self.open_index.remove(&(k.server, point.0, k.first, id));
    }

    /// Open sessions at `point` to `server` that started within `[from, to]`.
    fn open_at(
        &self,
        point: PointId,
        server: Endpoint,
        from: Timestamp,
        to: Timestamp,
    ) -> impl Iterator<Item = Key> + '_ {
        self.open_index
            .range((server, point.0, from, 0)..=(server, point.0, to, u64::MAX))
            .filter_map(|(_, _, _, id)| self.open.get(id).map(|(_, k)| *k))
    }

    /// Sessions were lost track of since before server-side leg `o` started: it
    /// may have an unknown other candidate.
    fn uncertain(&self, o: &Key) -> bool {
        self.unknown > 0 && o.first >= self.unknown_since
    }

    /// Client-side legs other than held one `except` that server-side leg `o` may
    /// belong to: held, handed on recently, or still open.
    fn others(&self, o: &Key, except: Option<usize>) -> usize {
        let Some((cp, _)) = self.points() else {
            return 0;
        };
        let held = self
            .inside
            .iter()
            .enumerate()
            .filter(|&(k, (x, _))| Some(k) != except && matches(x, o).is_some())
            .count();
        let recent = self
            .recent
            .iter()
            .filter(|x| matches(x, o).is_some())
            .count();
        let open = self
            .open_at(cp, o.server, Timestamp::ZERO, o.first)
            .filter(|x| matches(x, o).is_some())
            .count();
        held + recent + open
    }

    /// Takes one record from the workers: hands it on at once, or holds it (see
    /// [`Pairer::advance`] for when held ones leave).
    pub fn push(&mut self, r: &Record, out: &mut impl FnMut(&Record)) {
        let Some((cp, sp)) = self.points() else {
            out(r);
            return;
        };
        self.changed = true;
        match r.session.pair {
            PairReport::Sent | PairReport::SniPending | PairReport::Lost => {
                self.forget(r.session_id);
            }
            PairReport::Off | PairReport::Pending => {}
        }
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
    ///
    /// A leg waits longer (at most `max_wait` more) while a leg it would be joined
    /// with is still open: a client-side leg for a server-side one that started
    /// while it was open and fits no other client-side leg; a server-side leg for
    /// the only client-side leg it fits.
    pub fn advance(&mut self, now: Timestamp, out: &mut impl FnMut(&Record)) {
        if now <= self.now && !self.changed {
            return;
        }
        self.changed = false;
        self.now = self.now.max(now);
        let window = self.cfg.window;
        let hold = Nanos(window.0.saturating_mul(2));
        // Legs arrive in the order the workers judged them, which is not time order
        // across workers, and all at once from a fast worker: take every held leg
        // whose time is up in the order of that time (client-side legs first on a
        // tie, so that they claim their server-side legs), whatever the arrival
        // order, so that the outcome does not depend on the workers' timing.
        loop {
            let inside = self
                .inside
                .iter()
                .enumerate()
                .filter(|(_, (i, _))| !i.parked)
                .map(|(k, (i, _))| (i.judged.saturating_add(window), false, i.first, k));
            let outside = self
                .outside
                .iter()
                .enumerate()
                .filter(|(_, (o, _, _))| !o.parked)
                .map(|(k, (o, _, _))| (o.judged.saturating_add(hold), true, o.first, k));
            let Some((due, is_outside, _, k)) = inside.chain(outside).min() else {
                break;
            };
            if due > self.now {
                break;
            }
            if !is_outside {
                if self.inside_waits(k) {
                    self.note_wait(k, true);
                } else {
                    self.emit_inside_at(k, out);
                }
            } else if self.outside_waits(k) {
                self.note_wait(k, false);
            } else {
                self.emit_outside_at(k, out);
            }
        }
        for (i, _) in &mut self.inside {
            i.parked = false;
        }
        for (o, _, _) in &mut self.outside {
            o.parked = false;
        }
    }

    /// Leg `k` waits: left alone for the rest of this round; its wait counted once.
    fn note_wait(&mut self, k: usize, inside: bool) {
        let key = if inside {
            &mut self.inside[k].0
        } else {
            &mut self.outside[k].0
        };
        key.parked = true;
        if !key.waited {
            key.waited = true;
            self.stats.waited += 1;
        }
    }

    /// A server-side leg that client-side leg `i` may have had is still held or
    /// open.
    fn leg_pending_for(&self, i: &Key) -> bool {
        let Some((_, sp)) = self.points() else {
            return false;
        };
        self.outside.iter().any(|(o, _, _)| matches(i, o).is_some())
            || self
                .open_at(sp, i.server, i.first, i.last)
                .any(|y| matches(i, &y).is_some())
    }

    /// Held client-side leg `k`, whose window has passed, waits: a server-side leg
    /// that started while it was open, and fits no other client-side leg, is still
    /// open.
    fn inside_waits(&self, k: usize) -> bool {
        let Some((_, sp)) = self.points() else {
            return false;
        };
        let (i, _) = &self.inside[k];
        let deadline = i
            .judged
            .saturating_add(self.cfg.window)
            .saturating_add(self.cfg.max_wait);
        if deadline <= self.now {
            return false;
        }
        self.open_at(sp, i.server, i.first, i.last)
            .filter(|y| matches(i, y).is_some())
            .any(|y| !self.uncertain(&y) && self.others(&y, Some(k)) == 0)
    }

    /// Held server-side leg `k`, whose hold has passed, waits: the only client-side
    /// leg it fits is still open, or held and not judged yet.
    fn outside_waits(&self, k: usize) -> bool {
        let Some((cp, _)) = self.points() else {
            return false;
        };
        let (o, _, _) = &self.outside[k];
        let hold = Nanos(self.cfg.window.0.saturating_mul(2));
        let deadline = o
            .judged
            .saturating_add(hold)
            .saturating_add(self.cfg.max_wait);
        if self.uncertain(o) || self.others(o, None) != 1 {
            return false;
        }
        // The one candidate: still open (until the deadline), or held and due by
        // the deadline (it claims this leg when it leaves). Compared with its own
        // time when it is known, so that a fast worker handing both at once gives
        // the same outcome.
        let window = self.cfg.window;
        self.inside
            .iter()
            .any(|(x, _)| matches(x, o).is_some() && x.judged.saturating_add(window) <= deadline)
            || (deadline > self.now
                && self
                    .open_at(cp, o.server, Timestamp::ZERO, o.first)
                    .any(|x| matches(&x, o).is_some()))
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
    /// match it and no other client-side leg, held, recent or still open.
    fn emit_inside_at(&mut self, k: usize, out: &mut impl FnMut(&Record)) {
        let Some((key, inside)) = self.inside.remove(k) else {
            return;
        };
        // Forget client-side legs handed on longer ago than a server-side leg is
        // held (counted from this leg's time, not from how far the workers have
        // got), unless a server-side leg that fits them is still held or open.
        let hold = Nanos(self.cfg.window.0.saturating_mul(2));
        let due = key.judged.saturating_add(self.cfg.window);
        while let Some(r) = self.recent.front() {
            if r.judged.saturating_add(hold) >= due || self.leg_pending_for(r) {
                break;
            }
            self.recent.pop_front();
        }
        let mut mine: Vec<usize> = Vec::new();
        let mut sni_everywhere = true;
        // A leg judged after this one stopped waiting would not have been here yet
        // had the workers handed it on as it came.
        let until = due.saturating_add(self.cfg.max_wait);
        // Whether any server-side leg, joinable or not, fits this one.
        let mut any_leg = false;
        for k in 0..self.outside.len() {
            let ok = self.outside[k].0;
            let Some(sni) = matches(&key, &ok) else {
                continue;
            };
            any_leg = true;
            if ok.judged > until {
                continue;
            }
            if self.others(&ok, None) > 0 {
                self.outside[k].2 = true;
                continue;
            }
            if self.uncertain(&ok) {
                self.stats.unproven += 1;
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
            let sp = self.points().map(|(_, sp)| sp).unwrap_or(PointId(1));
            any_leg |= self
                .open_at(sp, key.server, key.first, key.last)
                .any(|y| matches(&key, &y).is_some());
            if any_leg {
                out(&inside);
            } else {
                out(&unseen(&inside, &self.cfg));
            }
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
/// `i`: the same server endpoint, the same SNI (or none on both; a leg whose SNI is
/// not known yet may be either), and `o` started while `i` was open. `Some(true)`
/// when the SNI matched, `Some(false)` otherwise.
fn matches(i: &Key, o: &Key) -> Option<bool> {
    if i.server != o.server || i.server.port == 0 {
        return None;
    }
    let with_sni = match (i.sni, o.sni) {
        (Sni::Hash(a), Sni::Hash(b)) if a == b => true,
        (Sni::None, Sni::None) | (Sni::NotYet, _) | (_, Sni::NotYet) => false,
        _ => return None,
    };
    (o.first >= i.first && o.first <= i.last).then_some(with_sni)
}

/// A client-side leg for which the server-side point saw nothing, not even a proxy
/// connection that fits it: an RST toward the client there was the middlebox's
/// (see [`unseen_at_server`]; unchanged if there is none).
fn unseen(inside: &Record, cfg: &PairConfig) -> Record {
    let npoints = usize::from(inside.npoints);
    let cmp = unseen_at_server(&inside.session, &inside.points[..npoints], &cfg.correlate);
    if cmp.points.is_none() {
        return *inside;
    }
    let mut r = *inside;
    // The single-point suspicions of the RSTs now explained go.
    for u in &mut r.suspect {
        if u.is_some_and(|u| cmp.unmatched().any(|m| m.seg == u.seg)) {
            *u = None;
        }
    }
    let mut evidence = r.evidence;
    evidence.retain(|e| !matches!(e, Evidence::SuspectRst { .. }));
    let (verdict, mut evidence, pan) =
        apply_comparison(r.verdict, &evidence, r.pan_end_reason, &cmp);
    add_suspects(&mut evidence, &r.suspect);
    r.verdict = verdict;
    r.evidence = evidence;
    r.pan_end_reason = pan;
    r.compare = cmp;
    r
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
