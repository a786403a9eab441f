//! A session: one TCP connection, identified by its [`FlowKey`], followed at every
//! capture point that sees it. Roles (client, server), what each point saw of each
//! direction, and when and how the session closed.

use crate::flow::{FlowKey, Side};
use crate::tcp::{DirLive, DirState, SegEvent};
use crate::time::Timestamp;
use crate::tls::observe::FastWindow;
use crate::wire::Packet;

/// Most capture points one run can follow. Per-session memory grows with the number
/// of points the run actually has, not with this bound.
pub const MAX_POINTS: usize = 4;

/// A capture point, by its index in the order the operator named them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PointId(pub u8);

/// A session's roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Client,
    Server,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Server => "server",
        }
    }
}

/// How the client was told from the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoleSource {
    /// Guessed from the ports: the capture started mid-session.
    Ports,
    /// The SYN was not seen; the client is the end the SYN-ACK went to.
    SynAck,
    /// The client sent the SYN.
    Syn,
}

impl RoleSource {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleSource::Syn => "syn",
            RoleSource::SynAck => "syn_ack",
            RoleSource::Ports => "ports",
        }
    }
}

/// How a session closed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseKind {
    /// An RST from either end, at any point.
    Rst,
    /// A FIN from each end, seen at one point.
    Fin,
}

/// What one capture point saw of a session (as a verdict
/// [`crate::verdict::Record`] carries it): a [`PointLive`] with its RSTs back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PointState {
    /// Indexed by [`Side`]: what the `lo` and the `hi` end sent.
    pub dirs: [DirState; 2],
    /// Outermost VLAN id of the first tagged packet.
    pub vlan: Option<u16>,
    /// Frames cut by the snap length.
    pub snaplen_cut: u32,
    /// Per [`Side`]: the TLS fast-path window (see [`PointLive::tls_fast`]).
    pub tls_fast: [FastWindow; 2],
}

impl PointState {
    /// `live` (what `point` saw of the session in `slot`) with its RSTs and FINs
    /// from `store`, which gives them up.
    pub fn take(live: &PointLive, store: &mut EventStore, slot: u32, point: usize) -> PointState {
        let dir = |store: &mut EventStore, side: Side| {
            let d = &live.dirs[side.index()];
            let rsts = if d.rst_count > 0 {
                store.take_rsts(slot, point, side)
            } else {
                None
            };
            let fin = if d.fin_count > 0 {
                store.take_fin(slot, point, side)
            } else {
                None
            };
            DirState::new(*d, rsts, fin)
        };
        PointState {
            dirs: [dir(store, Side::Lo), dir(store, Side::Hi)],
            vlan: live.vlan,
            snaplen_cut: live.snaplen_cut,
            tls_fast: live.tls_fast,
        }
    }

    pub fn seen(&self) -> bool {
        seen([&self.dirs[0], &self.dirs[1]])
    }
    pub fn rst_seen(&self) -> bool {
        rst_seen([&self.dirs[0], &self.dirs[1]])
    }
    pub fn both_fin(&self) -> bool {
        both_fin([&self.dirs[0], &self.dirs[1]])
    }
}

// What a point's two directions tell, for [`PointState`] and [`PointLive`] alike.
fn seen(d: [&DirLive; 2]) -> bool {
    d[0].seen() || d[1].seen()
}
fn rst_seen(d: [&DirLive; 2]) -> bool {
    d[0].rst_count > 0 || d[1].rst_count > 0
}
fn both_fin(d: [&DirLive; 2]) -> bool {
    d[0].fin_count > 0 && d[1].fin_count > 0
}

/// What one capture point saw of a session, as the flow table keeps it while the
/// session is open: the RST and FIN events are in the worker's [`EventStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PointLive {
    /// Indexed by [`Side`]: what the `lo` and the `hi` end sent.
    pub dirs: [DirLive; 2],
    /// Outermost VLAN id of the first tagged packet.
    pub vlan: Option<u16>,
    /// Frames cut by the snap length.
    pub snaplen_cut: u32,
    /// Per [`Side`]: the TLS fast-path window: an in-order segment inside it is
    /// the middle of an application_data record and needs no TLS work.
    pub tls_fast: [FastWindow; 2],
}

impl PointLive {
    pub fn seen(&self) -> bool {
        seen([&self.dirs[0], &self.dirs[1]])
    }
    pub fn rst_seen(&self) -> bool {
        rst_seen([&self.dirs[0], &self.dirs[1]])
    }
    pub fn both_fin(&self) -> bool {
        both_fin([&self.dirs[0], &self.dirs[1]])
    }

    /// Records a packet sent by `side` (an RST's or FIN's event: [`EventStore::on_rst`]
    /// or [`EventStore::on_fin`] first).
    /// Returns whether it was a retransmission.
    pub fn on_packet(&mut self, ts: Timestamp, side: Side, p: &Packet) -> bool {
        if self.vlan.is_none() {
            self.vlan = p.vlan;
        }
        if p.snaplen_cut {
            self.snaplen_cut = self.snaplen_cut.saturating_add(1);
        }
        let rst_seen = self.rst_seen();
        let retrans = self.dirs[side.index()].on_send(ts, p, rst_seen);
        if p.flags.ack() && !p.flags.rst() {
            self.dirs[side.other().index()].on_acked(p.ack);
        }
        retrans
    }
}

/// The first and the last RST and the first FIN of each end at each point, for the
/// sessions of one worker that have any: side tables keyed by flow-table slot,
/// point and side, so that [`PointLive`] does not carry 144 bytes that most open
/// sessions do not use (a session mostly sends its FINs at its end, and then
/// lingers only briefly). An end gets its entry at its first RST (FIN) at a point
/// and gives it up when the session is judged ([`PointState::take`]), so each table
/// holds at most two entries per session and point the flow table holds: bounded
/// by the flow table, the store never drops one. The tables grow with use
/// (amortized: a hash table doubling), to at most that.
#[derive(Debug, Default)]
pub struct EventStore {
    rsts: hashbrown::HashMap<u64, [SegEvent; 2], foldhash::fast::FixedState>,
    fins: hashbrown::HashMap<u64, SegEvent, foldhash::fast::FixedState>,
}

impl EventStore {
    fn key(slot: u32, point: usize, side: Side) -> u64 {
        u64::from(slot) << 8 | (point as u64) << 1 | side.index() as u64
    }

    /// End `side` of the session in `slot`, whose state at `point` is `d`, is about
    /// to send the RST `p` (before [`PointLive::on_packet`]): keeps it as the first
    /// or the last one, and tells `log` of the last one it replaces.
    #[allow(clippy::too_many_arguments, reason = "one call site, on the RST path")]
    pub fn on_rst(
        &mut self,
        slot: u32,
        point: usize,
        side: Side,
        d: &DirLive,
        ts: Timestamp,
        p: &Packet,
        log: Option<&mut RstLog>,
    ) {
        let ev = d.rst_event(ts, p);
        let key = Self::key(slot, point, side);
        if d.rst_count == 0 {
            self.rsts.insert(key, [ev, ev]);
            return;
        }
        // Present: inserted at this end's first RST, taken only when it ends.
        if let Some(e) = self.rsts.get_mut(&key) {
            if let Some(log) = log {
                log.before_rst(slot, point, side, d.rst_count, e[1]);
            }
            e[1] = ev;
        }
    }

    /// End `side` of the session in `slot`, whose state at `point` is `d`, is about
    /// to send the FIN `p` (not an RST; before [`PointLive::on_packet`]): keeps it if
    /// it is the first.
    pub fn on_fin(
        &mut self,
        slot: u32,
        point: usize,
        side: Side,
        d: &DirLive,
        ts: Timestamp,
        p: &Packet,
    ) {
        if d.fin_count == 0 {
            let ev = SegEvent::of(ts, p);
            self.fins.insert(Self::key(slot, point, side), ev);
        }
    }

    /// Takes the first and last RST of `side` at `point` of the session in `slot`.
    pub fn take_rsts(&mut self, slot: u32, point: usize, side: Side) -> Option<[SegEvent; 2]> {
        self.rsts.remove(&Self::key(slot, point, side))
    }

    /// Takes the first FIN of `side` at `point` of the session in `slot`.
    pub fn take_fin(&mut self, slot: u32, point: usize, side: Side) -> Option<SegEvent> {
        self.fins.remove(&Self::key(slot, point, side))
    }

    /// Entries held: RSTs, FINs.
    pub fn len(&self) -> (usize, usize) {
        (self.rsts.len(), self.fins.len())
    }

    pub fn is_empty(&self) -> bool {
        self.rsts.is_empty() && self.fins.is_empty()
    }
}

/// The RSTs of one end at one point between its first and its last (which
/// [`EventStore`] keeps): the second and the third, in the order seen. With the first
/// and the last, up to four RSTs per end and point are compared across points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MidRsts {
    pub ev: [SegEvent; 2],
    /// How many of `ev` are set.
    pub n: u8,
}

impl MidRsts {
    pub fn iter(&self) -> impl Iterator<Item = &SegEvent> {
        self.ev[..usize::from(self.n).min(2)].iter()
    }
}

/// A session's [`MidRsts`], per point and per [`Side`].
pub type MidRstsOf = [[MidRsts; 2]; MAX_POINTS];

/// The middle RSTs of a worker's sessions, for runs with several points: a bounded
/// side table keyed by flow-table slot, so that [`PointState`] does not grow for
/// what few sessions need (a session gets an entry at its third RST at one point).
/// Reserved once; when full, further RSTs are not kept (counted).
#[derive(Debug)]
pub struct RstLog {
    map: hashbrown::HashMap<u32, MidRstsOf, foldhash::fast::FixedState>,
    cap: usize,
    /// RSTs not kept: beyond four per end and point, or the log was full.
    pub not_kept: u64,
}

impl RstLog {
    /// A log for at most `cap` sessions at once.
    pub fn new(cap: usize) -> RstLog {
        let cap = cap.max(1);
        RstLog {
            map: hashbrown::HashMap::with_capacity_and_hasher(cap, Default::default()),
            cap,
            not_kept: 0,
        }
    }

    /// End `side` at `point` of the session in `slot`, which sent `rst_count` RSTs
    /// there so far, the last one `last`, is about to record another RST: its last
    /// RST so far becomes a middle one (if it was not also the first); kept if it is
    /// the second or the third.
    pub fn before_rst(
        &mut self,
        slot: u32,
        point: usize,
        side: Side,
        rst_count: u16,
        last: SegEvent,
    ) {
        if rst_count < 2 {
            return;
        }
        if rst_count > 3 || point >= MAX_POINTS {
            self.not_kept += 1;
            return;
        }
        let room = self.map.len() < self.cap;
        let entry = match self.map.get_mut(&slot) {
            Some(e) => e,
            None if room => self.map.entry(slot).or_default(),
            None => {
                self.not_kept += 1;
                return;
            }
        };
        let m = &mut entry[point][side.index()];
        if let Some(ev) = m.ev.get_mut(usize::from(m.n)) {
            *ev = last;
            m.n += 1;
        } else {
            self.not_kept += 1;
        }
    }

    /// Takes the entry of the session in `slot` (when it ends).
    pub fn take(&mut self, slot: u32) -> Option<MidRstsOf> {
        if self.map.is_empty() {
            return None;
        }
        self.map.remove(&slot)
    }
}

// Kept once per session and point: the per-point state of the hot path. 376 bytes
// (as `PointState`, which the record still carries) before the RSTs moved out, 280
// before the first FIN did.
const _: () = assert!(std::mem::size_of::<PointLive>() == 232);

/// Which timer list a session is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TimerList {
    #[default]
    None,
    /// Open: expires after the idle timeout without packets.
    Idle,
    /// Closed: judged when the linger time after its last packet has passed.
    Linger,
}

/// What the exporter's pairer was told of a session while it was open (two points,
/// pairing on; see [`crate::pairing::Notice`]). Ordered so that the states that
/// still have something to tell compare greater than or equal to `Pending`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum PairReport {
    /// Nothing to tell: pairing off, or the session was seen at both compared points
    /// (the same 5-tuple at both: nothing to pair), or at neither.
    #[default]
    Off,
    /// Told, with its SNI (or with none: not TLS, or a ClientHello without one).
    Sent,
    /// Its notice did not fit in the ring: the pairer treats every session that may
    /// have opened since as unknown, until this one's record arrives.
    Lost,
    /// Seen at the client-side point only, no payload yet: told at its first
    /// payload (by then a session that crosses a transparent middlebox has been
    /// seen at the server-side point too).
    Pending,
    /// Told without an SNI yet (its ClientHello was not complete): told again once
    /// it is.
    SniPending,
}

/// [`Session::tls`]: no payload seen yet.
pub const TLS_UNKNOWN: u32 = u32::MAX;
/// [`Session::tls`]: not TLS (or no TLS state was free).
pub const TLS_NONE: u32 = u32::MAX - 1;

/// Sentinel for "no slot" in the intrusive timer lists.
pub const NIL: u32 = u32::MAX;

/// A session's identity, roles and close, without its per-point state (which lives
/// beside it in the flow table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    pub key: FlowKey,
    pub first_ts: Timestamp,
    pub last_ts: Timestamp,
    /// Which end of the key is the client.
    pub client: Side,
    pub roles: RoleSource,
    /// First close seen: how (read it through [`Session::close`]) and when.
    pub(crate) close_kind: Option<CloseKind>,
    pub(crate) close_ts: Timestamp,
    /// Bit `i` set: point `i` saw the session.
    pub points_seen: u8,
    /// What the pairer was told of it while it was open.
    pub pair: PairReport,
    /// Its TLS state in the worker's TLS slab: an index, or [`TLS_UNKNOWN`] (no
    /// payload yet) or [`TLS_NONE`] (the first payload was not TLS).
    pub tls: u32,
    /// Worker clock when the session last saw a packet.
    pub(crate) activity: Timestamp,
    /// The timer-wheel slot it is filed under (see [`crate::table`]).
    pub(crate) slot: u32,
    pub(crate) list: TimerList,
    pub(crate) prev: u32,
    pub(crate) next: u32,
}

// Kept once per session: a new field must fit in its padding. 112 bytes before the
// flow hash was dropped (the table computes it again from the key when it removes
// the session) and the close lost its `Option` around the time.
const _: () = assert!(std::mem::size_of::<Session>() == 96);

impl Default for Session {
    fn default() -> Self {
        Session {
            key: FlowKey::default(),
            first_ts: Timestamp::ZERO,
            last_ts: Timestamp::ZERO,
            client: Side::Lo,
            roles: RoleSource::Ports,
            close_kind: None,
            close_ts: Timestamp::ZERO,
            points_seen: 0,
            pair: PairReport::Off,
            tls: TLS_UNKNOWN,
            activity: Timestamp::ZERO,
            slot: NIL,
            list: TimerList::None,
            prev: NIL,
            next: NIL,
        }
    }
}

impl Session {
    /// A new session whose first packet, from `side`, is `p`.
    pub fn new(key: FlowKey, ts: Timestamp, side: Side, p: &Packet) -> Session {
        let syn = p.flags.syn() && !p.flags.rst();
        let (client, roles) = if syn && !p.flags.ack() {
            (side, RoleSource::Syn)
        } else if syn && p.flags.ack() {
            (side.other(), RoleSource::SynAck)
        } else {
            (guess_client(&key, side), RoleSource::Ports)
        };
        Session {
            key,
            first_ts: ts,
            last_ts: ts,
            client,
            roles,
            ..Session::default()
        }
    }

    /// The first close seen: how and when.
    pub fn close(&self) -> Option<(CloseKind, Timestamp)> {
        self.close_kind.map(|k| (k, self.close_ts))
    }

    /// Records the first close (a later one is not kept).
    pub fn set_close(&mut self, kind: CloseKind, ts: Timestamp) {
        if self.close_kind.is_none() {
            self.close_kind = Some(kind);
            self.close_ts = ts;
        }
    }

    /// Upgrades guessed roles when a SYN or SYN-ACK shows them.
    pub fn learn_roles(&mut self, side: Side, p: &Packet) {
        if !p.flags.syn() || p.flags.rst() {
            return;
        }
        let (client, source) = if p.flags.ack() {
            (side.other(), RoleSource::SynAck)
        } else {
            (side, RoleSource::Syn)
        };
        if source > self.roles {
            self.client = client;
            self.roles = source;
        }
    }

    pub fn role_of(&self, side: Side) -> Role {
        if side == self.client {
            Role::Client
        } else {
            Role::Server
        }
    }

    pub fn side_of(&self, role: Role) -> Side {
        match role {
            Role::Client => self.client,
            Role::Server => self.client.other(),
        }
    }
}

/// Mid-session roles: the server is the end with the lower port (services listen on
/// low, well-known or registered ports; clients use ephemeral ones). On equal ports
/// the receiver of the first packet seen is taken as the server.
fn guess_client(key: &FlowKey, first_sender: Side) -> Side {
    use std::cmp::Ordering;
    match key.lo.port.cmp(&key.hi.port) {
        Ordering::Less => Side::Hi,
        Ordering::Greater => Side::Lo,
        Ordering::Equal => first_sender,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Endpoint;
    use crate::wire::TcpFlags;

    fn key() -> (FlowKey, Side) {
        FlowKey::from_packet(
            Endpoint::v4([198, 18, 0, 2], 51000),
            Endpoint::v4([198, 18, 1, 2], 443),
        )
    }

    #[test]
    fn test_roles_from_syn_synack_ports() {
        let (k, client_side) = key();
        let syn = Packet {
            flags: TcpFlags(TcpFlags::SYN),
            ..Packet::default()
        };
        let s = Session::new(k, Timestamp(1), client_side, &syn);
        assert_eq!((s.client, s.roles), (client_side, RoleSource::Syn));

        let synack = Packet {
            flags: TcpFlags(TcpFlags::SYN | TcpFlags::ACK),
            ..Packet::default()
        };
        let s = Session::new(k, Timestamp(1), client_side.other(), &synack);
        assert_eq!((s.client, s.roles), (client_side, RoleSource::SynAck));

        let data = Packet {
            flags: TcpFlags(TcpFlags::ACK),
            ..Packet::default()
        };
        let mut s = Session::new(k, Timestamp(1), client_side.other(), &data);
        assert_eq!(
            (s.client, s.roles),
            (client_side, RoleSource::Ports),
            "port 443 is the server"
        );
        s.learn_roles(client_side, &syn);
        assert_eq!(s.roles, RoleSource::Syn);
        s.learn_roles(client_side, &synack);
        assert_eq!(s.roles, RoleSource::Syn, "a SYN-ACK never overrides a SYN");
    }

    /// An end's first FIN waits in the store until its session is judged; a
    /// retransmitted FIN does not replace it, and an RST with FIN set is an RST.
    #[test]
    fn test_first_fin_kept_in_store_until_taken() {
        let mut store = EventStore::default();
        let mut live = PointLive::default();
        let (slot, point) = (3, 1);
        for (i, flags) in [
            TcpFlags::ACK | TcpFlags::FIN,
            TcpFlags::ACK | TcpFlags::FIN,
            TcpFlags::RST | TcpFlags::FIN,
        ]
        .into_iter()
        .enumerate()
        {
            let p = Packet {
                seq: 500 + i as u32,
                flags: TcpFlags(flags),
                ..Packet::default()
            };
            let ts = Timestamp(10 + i as u64);
            let d = &live.dirs[Side::Hi.index()];
            if p.flags.rst() {
                store.on_rst(slot, point, Side::Hi, d, ts, &p, None);
            } else if p.flags.fin() {
                store.on_fin(slot, point, Side::Hi, d, ts, &p);
            }
            live.on_packet(ts, Side::Hi, &p);
        }
        assert_eq!(store.len(), (1, 1));
        let st = PointState::take(&live, &mut store, slot, point);
        let hi = &st.dirs[Side::Hi.index()];
        assert_eq!((hi.fin_count, hi.rst_count), (2, 1));
        assert_eq!(hi.fin().map(|e| (e.ts, e.seq)), Some((Timestamp(10), 500)));
        assert_eq!(hi.rst().map(|e| e.seq), Some(502));
        assert_eq!(st.dirs[Side::Lo.index()].fin(), None);
        assert!(store.is_empty(), "given up with the session");
    }

    /// The second and third RST of an end are kept, later ones and those of a
    /// session with no room are counted.
    #[test]
    fn test_rst_log_keeps_middle_rsts_bounded() {
        let mut log = RstLog::new(1);
        let mut store = EventStore::default();
        let mut five_rsts = |log: &mut RstLog, slot: u32, point: usize, side: Side| {
            let mut d = DirLive::default();
            for (i, seq) in [10u32, 20, 30, 40, 50].into_iter().enumerate() {
                let rst = Packet {
                    seq,
                    flags: TcpFlags(TcpFlags::RST),
                    ..Packet::default()
                };
                let ts = Timestamp(i as u64);
                store.on_rst(slot, point, side, &d, ts, &rst, Some(&mut *log));
                d.on_send(ts, &rst, true);
            }
            DirState::new(d, store.take_rsts(slot, point, side), None)
        };
        let d = five_rsts(&mut log, 7, 1, Side::Hi);
        assert_eq!(log.not_kept, 1, "the 4th");
        // Another session: no room for its 2nd and 3rd, and the 4th is beyond.
        five_rsts(&mut log, 8, 0, Side::Lo);
        assert_eq!(log.not_kept, 1 + 3);
        let e = log.take(7).expect("an entry for slot 7");
        let seqs: Vec<u32> = e[1][Side::Hi.index()].iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [20, 30]);
        assert_eq!((d.rst().unwrap().seq, d.last_rst().unwrap().seq), (10, 50));
        assert_eq!(log.take(7), None);
        assert_eq!(log.take(8), None);
    }

    #[test]
    fn test_point_data_after_rst_and_fins() {
        let mut pt = PointLive::default();
        let fin = Packet {
            seq: 10,
            flags: TcpFlags(TcpFlags::FIN | TcpFlags::ACK),
            ..Packet::default()
        };
        pt.on_packet(Timestamp(1), Side::Lo, &fin);
        assert!(!pt.both_fin());
        pt.on_packet(Timestamp(2), Side::Hi, &fin);
        assert!(pt.both_fin());
        let rst = Packet {
            flags: TcpFlags(TcpFlags::RST),
            ..Packet::default()
        };
        pt.on_packet(Timestamp(3), Side::Hi, &rst);
        let data = Packet {
            seq: 11,
            payload_len: 5,
            flags: TcpFlags(TcpFlags::ACK),
            ..Packet::default()
        };
        pt.on_packet(Timestamp(4), Side::Lo, &data);
        assert_eq!(pt.dirs[0].data_after_rst, 1);
        assert_eq!(pt.dirs[1].data_after_rst, 0);
    }
}
