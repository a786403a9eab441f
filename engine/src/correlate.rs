//! Two capture points, one on each side of a middlebox: what comparing them shows
//! (DESIGN.md, "Two capture points"). Resets and FINs that appear on one side only
//! (forged or absorbed by the middlebox), TLS interception (the ClientHello random
//! or the leaf certificate differs between the points), a TLS version downgrade,
//! and which leg a failed handshake failed on.
//!
//! Sans-IO like the rest of the core: it reads the per-point state of one ended
//! session (timestamps already corrected for the clock offset between the points)
//! and returns plain data for the verdict record.

use crate::session::PointId;
use crate::time::Nanos;

/// Which point faces the clients and how closely copies must match in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorrelateConfig {
    /// The point on the clients' side of the middlebox (`--client-side`; default
    /// the first point). The first other point is the server side.
    pub client_side: PointId,
    /// An RST or FIN seen at one point matches its copy at the other if their
    /// capture times differ by at most this (`--match-window`, default 50 ms).
    pub window: Nanos,
}

impl CorrelateConfig {
    /// The client-side and the server-side point of a run with `points` points
    /// (`None` with fewer than two).
    pub fn points(&self, points: usize) -> Option<(PointId, PointId)> {
        let c = usize::from(self.client_side.0).min(points.checked_sub(1)?);
        let s = (0..points).find(|&i| i != c)?;
        Some((PointId(c as u8), PointId(s as u8)))
    }
}

impl Default for CorrelateConfig {
    fn default() -> Self {
        CorrelateConfig {
            client_side: PointId(0),
            window: Nanos::from_millis(50),
        }
    }
}

use crate::session::{MidRsts, PointState, Role, Session};
use crate::tcp::SegEvent;
use crate::time::Timestamp;
use crate::tls::observe::{is_tls13, Handshake, TlsFacts};

/// What a middlebox did to a control segment that one point saw and the other did
/// not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tamper {
    /// Seen only on the receiver's side: the middlebox sent it in the sender's name.
    Forged,
    /// Seen only on the sender's side: it reached the middlebox and never left.
    Absorbed,
}

impl Tamper {
    pub fn as_str(self) -> &'static str {
        match self {
            Tamper::Forged => "forged",
            Tamper::Absorbed => "absorbed",
        }
    }
}

/// An RST or FIN seen at one point with no copy at the other within the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unmatched {
    /// Where it was seen.
    pub point: PointId,
    /// The point where its copy was looked for.
    pub other: PointId,
    /// The end it was going to (it carried the other end's address).
    pub toward: Role,
    pub tamper: Tamper,
    /// An RST (else a FIN).
    pub rst: bool,
    /// The segment as seen at `point`.
    pub seg: SegEvent,
    /// The other point saw this sender's RSTs (or FINs), just not within the window.
    pub other_count: u16,
    /// The sender's first packet at `point` came with this TTL (a forged segment
    /// often carries the middlebox's own initial TTL instead).
    pub sender_ttl: u8,
    /// At the other point, the session went on after this segment's time (plus the
    /// window) as if it had never been sent: forged, the sender kept sending;
    /// absorbed, the receiver did.
    pub went_on: bool,
    /// The other point saw nothing of the session at all, and pairing found no
    /// proxy connection for it ([`unseen_at_server`]).
    pub unseen: bool,
}

impl Unmatched {
    /// A sign beyond the missing copy: a forged segment's TTL differs from the
    /// sender's first packet at that point, or the session went on at the other
    /// point. Without one, the copy may also have been lost at the other point's
    /// capture. Never for a session the other point did not see at all: that
    /// capture may have missed all of it.
    pub fn confident(&self) -> bool {
        !self.unseen
            && ((self.tamper == Tamper::Forged && self.seg.ttl != self.sender_ttl) || self.went_on)
    }
}

/// The TLS sessions at the two points are not the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Interception {
    /// The ClientHello randoms differ.
    pub client_random: bool,
    /// The JA4 fingerprints differ (another TLS stack made one of the hellos).
    pub ja4: bool,
    /// The leaf certificates differ (SHA-256).
    pub leaf_cert: bool,
}

impl Interception {
    pub fn any(&self) -> bool {
        self.client_random || self.ja4 || self.leaf_cert
    }
}

/// What comparing the two points of one session showed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Comparison {
    /// The client-side and server-side points (both saw the session).
    pub points: Option<(PointId, PointId)>,
    /// RSTs and FINs seen on one side only, in time order.
    pub unmatched: [Option<Unmatched>; Comparison::CAP],
    pub nunmatched: u8,
    pub interception: Interception,
    /// Negotiated TLS versions (client side, server side), when they differ by the
    /// middlebox's choice: it answered the client with less than the client
    /// offered, or offered the server less than the client side got.
    pub downgrade: Option<(u16, u16)>,
    /// The handshake completed at one point and not at the other: (failed, completed).
    pub failed_leg: Option<(PointId, PointId)>,
    /// The session's first RST at either point.
    pub first_rst: Option<Timestamp>,
}

impl Comparison {
    pub const CAP: usize = 4;

    pub fn unmatched(&self) -> impl Iterator<Item = &Unmatched> {
        self.unmatched[..usize::from(self.nunmatched)]
            .iter()
            .flatten()
    }

    /// The forged RST that ended the session: the middlebox reset it in one end's
    /// name, before any other RST.
    pub fn forged_rst(&self) -> Option<&Unmatched> {
        self.unmatched().find(|u| {
            u.rst && u.tamper == Tamper::Forged && self.first_rst.is_some_and(|t| u.seg.ts <= t)
        })
    }

    fn push(&mut self, u: Unmatched) {
        if usize::from(self.nunmatched) < Self::CAP {
            self.unmatched[usize::from(self.nunmatched)] = Some(u);
            self.nunmatched += 1;
        }
    }
}

/// `a` and `b` are within `w` of each other.
fn near(a: Timestamp, b: Timestamp, w: Nanos) -> bool {
    a.saturating_sub(b) <= w && b.saturating_sub(a) <= w
}

/// Every RST of one end at one point that is kept: its first, the middle ones of
/// `mid` (the second and third), its last; up to four, in time order.
fn rsts_of<'a>(
    d: &crate::tcp::DirState,
    mid: Option<&'a MidRsts>,
) -> impl Iterator<Item = SegEvent> + 'a {
    d.rst()
        .into_iter()
        .chain(mid.into_iter().flat_map(|m| m.iter().copied()))
        .chain(d.last_rst())
}

/// Compares the client-side and server-side points of one ended session. `mids`
/// holds each point's middle RSTs per side (empty: none kept), `tls` each point's
/// TLS facts, judged (empty if TLS was not seen). Returns the default (nothing)
/// unless both points saw the session.
pub fn compare(
    s: &Session,
    points: &[PointState],
    mids: &[[MidRsts; 2]],
    tls: &[TlsFacts],
    cfg: &CorrelateConfig,
) -> Comparison {
    let mut out = Comparison::default();
    let ci = usize::from(cfg.client_side.0).min(points.len().saturating_sub(1));
    let Some(si) = (0..points.len()).find(|&i| i != ci) else {
        return out;
    };
    let (c, sv) = (&points[ci], &points[si]);
    if !c.seen() || !sv.seen() {
        return out;
    }
    let (cp, sp) = (PointId(ci as u8), PointId(si as u8));
    out.points = Some((cp, sp));
    out.first_rst = [c, sv]
        .iter()
        .flat_map(|p| p.dirs.iter().filter_map(|d| d.rst()))
        .map(|e| e.ts)
        .min();

    // Every RST and FIN (up to four RSTs of each sender, its first FIN) looked for
    // at the other point.
    let mut found: [Option<Unmatched>; 20] = [None; 20];
    let mut n = 0;
    let mid = |i: usize, d: usize| mids.get(i).map(|m| &m[d]);
    for (here, there, hp, tp) in [(c, sv, cp, sp), (sv, c, sp, cp)] {
        for d in 0..2 {
            let toward = if s.client.index() == d {
                Role::Server
            } else {
                Role::Client
            };
            // On the receiver's side of the middlebox: it sent it; on the sender's
            // side: the middlebox kept it.
            let receiver_side = (toward == Role::Client) == (hp == cp);
            let tamper = if receiver_side {
                Tamper::Forged
            } else {
                Tamper::Absorbed
            };
            let mine = &here.dirs[d];
            let theirs = &there.dirs[d];
            let went_on = |ev: SegEvent| {
                let after = ev.ts.saturating_add(cfg.window);
                match tamper {
                    Tamper::Forged => theirs.last_ts > after,
                    Tamper::Absorbed => there.dirs[1 - d].last_ts > after,
                }
            };
            let unmatched = |ev: SegEvent, rst: bool, other_count: u16| Unmatched {
                point: hp,
                other: tp,
                toward,
                tamper,
                rst,
                seg: ev,
                other_count,
                sender_ttl: mine.ttl_first,
                went_on: went_on(ev),
                unseen: false,
            };
            let (hi, ti) = (usize::from(hp.0), usize::from(tp.0));
            let candidates = rsts_of(mine, mid(hi, d))
                .filter(|ev| !rsts_of(theirs, mid(ti, d)).any(|e| near(e.ts, ev.ts, cfg.window)))
                .map(|ev| unmatched(ev, true, theirs.rst_count))
                .chain(
                    mine.fin()
                        .filter(|ev| !theirs.fin().is_some_and(|e| near(e.ts, ev.ts, cfg.window)))
                        .map(|ev| unmatched(ev, false, theirs.fin_count)),
                );
            for u in candidates {
                if let Some(slot) = found.get_mut(n) {
                    *slot = Some(u);
                    n += 1;
                }
            }
        }
    }
    let found = &mut found[..n];
    found.sort_by_key(|u| u.map(|u| (u.seg.ts, !u.rst)));
    // RSTs first: with more than CAP, the FINs are the ones left out.
    for u in found.iter().flatten().filter(|u| u.rst) {
        out.push(*u);
    }
    for u in found.iter().flatten().filter(|u| !u.rst) {
        out.push(*u);
    }

    let (Some(ct), Some(st)) = (tls.get(ci), tls.get(si)) else {
        return out;
    };
    if let (Some(a), Some(b)) = (ct.client_hello, st.client_hello) {
        out.interception.client_random = a.random != b.random;
        out.interception.ja4 = a.ja4.is_some() && b.ja4.is_some() && a.ja4 != b.ja4;
    }
    if let (Some(a), Some(b)) = (ct.server_cert, st.server_cert) {
        out.interception.leaf_cert = a.sha256 != b.sha256;
    }
    if let (Some(a), Some(b)) = (ct.version(), st.version()) {
        // Who chose the lower version? On the client side, the middlebox answering
        // a client that offered more; on the server side, the middlebox offering
        // less. A client that capped itself, or a server that could not do more, is
        // not the middlebox's doing.
        let rank = |v: u16| if is_tls13(v) { 0x0304 } else { v };
        let offered =
            |f: &TlsFacts, v: u16| f.client_hello.is_some_and(|ch| rank(ch.version) >= rank(v));
        let by_middlebox = match rank(a).cmp(&rank(b)) {
            std::cmp::Ordering::Less => offered(ct, b),
            std::cmp::Ordering::Greater => st.client_hello.is_some() && !offered(st, a),
            std::cmp::Ordering::Equal => false,
        };
        if by_middlebox {
            out.downgrade = Some((a, b));
        }
    }
    // Failed, not merely unfinished (a capture that ended, a gap): aborted.
    match (ct.handshake, st.handshake) {
        (Handshake::Complete, Handshake::Aborted) => out.failed_leg = Some((sp, cp)),
        (Handshake::Aborted, Handshake::Complete) => out.failed_leg = Some((cp, sp)),
        _ => {}
    }
    out
}

/// A session that only the client-side point saw, while the server-side point saw
/// no connection for it either (no proxy leg fits it: the caller, the pairer, knows):
/// each RST toward the client there (the first and the last) never reached the
/// server side, so the middlebox sent it, or the server-side capture missed the
/// whole session ([`Unmatched::unseen`]: never high confidence). Typical: a
/// firewall that drops a SYN and answers it with an RST (`REJECT --reject-with
/// tcp-reset`). Returns the default (nothing) unless there is such an RST.
pub fn unseen_at_server(s: &Session, points: &[PointState], cfg: &CorrelateConfig) -> Comparison {
    let mut out = Comparison::default();
    let Some((cp, sp)) = cfg.points(points.len()) else {
        return out;
    };
    let (c, sv) = (&points[usize::from(cp.0)], &points[usize::from(sp.0)]);
    if !c.seen() || sv.seen() {
        return out;
    }
    let d = s.side_of(Role::Server).index();
    let mine = &c.dirs[d];
    for ev in rsts_of(mine, None) {
        // What the server's other packets came with, if it sent any before.
        let sender_ttl = match mine.syn() {
            Some(syn) => syn.ttl,
            None if mine.first_ts < ev.ts => mine.ttl_first,
            None => 0,
        };
        out.push(Unmatched {
            point: cp,
            other: sp,
            toward: Role::Client,
            tamper: Tamper::Forged,
            rst: true,
            seg: ev,
            other_count: 0,
            sender_ttl,
            went_on: false,
            unseen: true,
        });
    }
    if out.nunmatched == 0 {
        return Comparison::default();
    }
    out.points = Some((cp, sp));
    out.first_rst = c.dirs.iter().filter_map(|d| d.rst()).map(|e| e.ts).min();
    out
}

/// Signs, at one point, that an RST was not sent by the end whose address it
/// carries (a bit set of [`Suspect::signs`]).
pub mod sign {
    /// Its TTL differs from the sender's other packets (its SYN or SYN-ACK, else its
    /// first packet).
    pub const TTL: u8 = 1;
    /// The "resetting" end sent data after it: it never reset.
    pub const DATA_AFTER: u8 = 2;
    /// Several RSTs from that end with different sequence numbers within 10 ms (a
    /// forger's burst of guesses).
    pub const STEPPING: u8 = 4;
    /// Its sequence number is not the sender's next one.
    pub const SEQ_OFF: u8 = 8;
    /// Its IP ID is the one of a packet from the other end (copied by a forger
    /// that built it from the packet it answers).
    pub const IPID_COPIED: u8 = 16;

    /// Names, in the order of the bits.
    pub const NAMES: [(u8, &str); 5] = [
        (TTL, "ttl"),
        (DATA_AFTER, "data_after"),
        (STEPPING, "stepping_seq"),
        (SEQ_OFF, "seq_off"),
        (IPID_COPIED, "ip_id_copied"),
    ];

    /// How much each sign weighs (see [`super::Suspect::confidence`]).
    pub fn weight(bit: u8) -> u8 {
        match bit {
            DATA_AFTER => 3,
            TTL | STEPPING | IPID_COPIED => 2,
            _ => 1,
        }
    }
}

/// How sure a single-point suspicion is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Suspicion {
    Low,
    Medium,
    High,
}

impl Suspicion {
    pub fn as_str(self) -> &'static str {
        match self {
            Suspicion::Low => "low",
            Suspicion::Medium => "medium",
            Suspicion::High => "high",
        }
    }
}

/// An RST that one point saw and that shows signs of having been forged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suspect {
    pub point: PointId,
    /// The end whose address it carries.
    pub from: Role,
    /// [`sign`] bits.
    pub signs: u8,
    pub seg: SegEvent,
    /// The TTL of the sender's other packets (0: none to compare with).
    pub usual_ttl: u8,
}

impl Suspect {
    /// The weights of the signs summed: 4 or more high, 2 or 3 medium, 1 low.
    pub fn confidence(&self) -> Suspicion {
        let score: u8 = sign::NAMES
            .iter()
            .filter(|(bit, _)| self.signs & bit != 0)
            .map(|(bit, _)| sign::weight(*bit))
            .sum();
        match score {
            4.. => Suspicion::High,
            2..=3 => Suspicion::Medium,
            _ => Suspicion::Low,
        }
    }
}

/// With one point: each end's first RST, at the first point that saw it, if it
/// shows any [`sign`] of forgery. Indexed by the sender's [`crate::flow::Side`].
pub fn suspect_rsts(s: &Session, points: &[PointState]) -> [Option<Suspect>; 2] {
    let mut out = [None; 2];
    for (d, slot) in out.iter_mut().enumerate() {
        let Some((i, p, rst)) = points
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.dirs[d].rst().map(|e| (i, p, e)))
            .min_by_key(|(_, _, e)| e.ts)
        else {
            continue;
        };
        let (me, peer) = (&p.dirs[d], &p.dirs[1 - d]);
        let usual_ttl = match me.syn() {
            Some(syn) => syn.ttl,
            None if me.first_ts < rst.ts => me.ttl_first,
            None => 0,
        };
        let mut signs = 0;
        if usual_ttl != 0 && rst.ttl != usual_ttl {
            signs |= sign::TTL;
        }
        // `data_after_rst` counts data after any RST at this point: it speaks of this
        // RST only if the peer had sent none before it.
        if me.data_after_rst > 0 && peer.rst().is_none_or(|e| e.ts >= rst.ts) {
            signs |= sign::DATA_AFTER;
        }
        // A burst: an end that closed answers each late segment with an RST of its
        // own (at that segment's ACK), spread over the peer's sends; a forger sends
        // its guesses at once.
        let burst = Nanos::from_millis(10);
        // Seq and seq + 1 is an end resetting before and after its own FIN.
        let step = |last: SegEvent| !matches!(last.seq.wrapping_sub(rst.seq), 0 | 1 | u32::MAX);
        if me
            .last_rst()
            .is_some_and(|last| step(last) && last.ts.saturating_sub(rst.ts) <= burst)
        {
            signs |= sign::STEPPING;
        }
        if rst.seq_fit == crate::tcp::SeqFit::Off {
            signs |= sign::SEQ_OFF;
        }
        // Not when the sender's own SYN carried that ID too (a stack, or a test tool,
        // that sends one constant ID).
        let own = me.syn().and_then(|e| e.ip_id);
        let copied = |id: Option<u16>| {
            id.is_some_and(|id| id != 0 && Some(id) == rst.ip_id && own != Some(id))
        };
        if copied(peer.syn().and_then(|e| e.ip_id)) || copied(peer.last_ip_id) {
            signs |= sign::IPID_COPIED;
        }
        if signs != 0 {
            *slot = Some(Suspect {
                point: PointId(i as u8),
                from: if s.client.index() == d {
                    Role::Client
                } else {
                    Role::Server
                },
                signs,
                seg: rst,
                usual_ttl,
            });
        }
    }
    out
}
