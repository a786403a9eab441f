//! Per-direction TCP observation at one capture point (RFC 9293 vocabulary).
//!
//! A [`DirLive`] records what one end sent, as seen at one capture point: counts, the
//! first SYN (or SYN-ACK) with its sequence numbers, TTL, IP ID and time,
//! retransmissions, data sent after an RST, and acknowledgements of data that the
//! capture never saw. Its first FIN and its first and last RST are kept beside it,
//! in the worker's [`crate::session::EventStore`], and a [`DirState`] (in the
//! verdict record) has all.
//! It keeps no payload: the TLS layer (next issue) reads payload through
//! [`crate::worker::Worker`], beside this tracker, not inside it.
//!
//! Sequence comparisons are modulo 2^32 (RFC 9293 section 3.4). Never allocates.

use crate::time::{MaybeTimestamp, Timestamp};
use crate::wire::Packet;

/// A control segment (SYN, FIN or RST) as seen on the wire. 24 bytes: four of them
/// per direction and point set most of a session's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SegEvent {
    pub ts: Timestamp,
    pub seq: u32,
    pub ack: u32,
    pub ip_id: Option<u16>,
    /// Payload length on the wire (saturating at 65,535).
    pub payload_len: u16,
    pub ttl: u8,
    /// How its sequence number fits what the sender had sent before (RSTs only).
    pub seq_fit: SeqFit,
}

/// How an RST's sequence number compares with the sender's next one (`SND.NXT` as
/// far as the capture knows): a real end resets at it (RFC 9293 3.10.7); an
/// off-path forger guesses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SeqFit {
    /// The sender's sequence numbers were not known yet.
    #[default]
    Unknown,
    AtNext,
    Off,
}

impl SegEvent {
    pub(crate) fn of(ts: Timestamp, p: &Packet) -> SegEvent {
        SegEvent {
            ts,
            seq: p.seq,
            ack: p.ack,
            ttl: p.ttl,
            ip_id: p.ip_id,
            payload_len: u16::try_from(p.payload_len).unwrap_or(u16::MAX),
            seq_fit: SeqFit::Unknown,
        }
    }
}

/// `a` is before `b` in sequence space.
#[inline]
pub fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `a` is at or before `b` in sequence space.
#[inline]
pub fn seq_le(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}

/// What one end of a session sent, seen at one capture point, as the flow table
/// keeps it while the session is open: everything but the first FIN and the first
/// and the last RST, which few open sessions have and which a per-worker side store
/// keeps ([`crate::session::EventStore`]); [`DirState`] has them back when the
/// session is judged.
///
/// `repr(C)` with the fields every packet updates first, so that a data segment
/// touches one cache line of its direction (and the sequence fields of the other
/// direction, for its ACK); the control-segment events follow. 128 bytes, no
/// padding: it is kept twice per session and point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
pub struct DirLive {
    /// Highest sequence number sent plus one (`SND.NXT` as far as the capture knows).
    next_seq: u32,
    seq_known: bool,
    pub ttl_min: u8,
    pub ttl_max: u8,
    pub timestamps: bool,
    pub packets: u32,
    pub last_ip_id: Option<u16>,
    /// Frame bytes on the wire (original frame length).
    pub bytes: u64,
    /// TCP payload bytes on the wire (from the IP lengths).
    pub payload_bytes: u64,
    pub last_ts: Timestamp,
    /// Time of the first segment with payload, if any (read it through
    /// [`DirLive::first_data_ts`]).
    first_data: MaybeTimestamp,
    /// The first SYN: valid when `syn_count` says one was seen (read it through
    /// [`DirLive::syn`]; an `Option` would cost 8 bytes per direction for what the
    /// count knows).
    syn_ev: SegEvent,
    pub syn_count: u16,
    pub fin_count: u16,
    pub rst_count: u16,
    /// Window scale announced in the SYN.
    pub wscale: Option<u8>,
    /// Segments carrying sequence space already seen (data, SYN or FIN).
    pub retransmissions: u32,
    /// Segments with payload sent after an RST was seen at this point.
    pub data_after_rst: u32,
    /// Acknowledgements this end received for sequence space it sent that the
    /// capture never saw: packets lost at the capture point.
    pub acked_unseen: u32,
    /// TTL (or hop limit) of the first packet (`ttl_min`, `ttl_max`: the range seen).
    pub ttl_first: u8,
    pub sack_permitted: bool,
    /// MSS announced in the SYN.
    pub mss: u16,
    pub first_ts: Timestamp,
}

// Kept four times per direction: a new field must fit in its padding.
const _: () = assert!(std::mem::size_of::<SegEvent>() == 24);
// Kept twice per session and point: a new field should find room in the padding.
// 176 bytes before the first and last RST moved to the side store, 128 before the
// first FIN did.
const _: () = assert!(std::mem::size_of::<DirLive>() == 104);

/// What one end of a session sent, seen at one capture point: a [`DirLive`] with its
/// first FIN and its first and last RST back (as a verdict
/// [`crate::verdict::Record`] carries it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DirState {
    pub live: DirLive,
    /// The first and the last RST: valid when `rst_count` says one (two) were seen.
    rst_ev: SegEvent,
    last_rst_ev: SegEvent,
    /// The first FIN: valid when `fin_count` says one was seen.
    fin_ev: SegEvent,
}

impl std::ops::Deref for DirState {
    type Target = DirLive;
    fn deref(&self) -> &DirLive {
        &self.live
    }
}

impl DirState {
    /// `live` with `rsts`, its first and last RST (`None` if it sent none), and
    /// `fin`, its first FIN.
    pub fn new(live: DirLive, rsts: Option<[SegEvent; 2]>, fin: Option<SegEvent>) -> DirState {
        let [rst_ev, last_rst_ev] = rsts.unwrap_or_default();
        DirState {
            live,
            rst_ev,
            last_rst_ev,
            fin_ev: fin.unwrap_or_default(),
        }
    }

    pub fn fin(&self) -> Option<SegEvent> {
        (self.fin_count > 0).then_some(self.fin_ev)
    }

    pub fn rst(&self) -> Option<SegEvent> {
        (self.rst_count > 0).then_some(self.rst_ev)
    }
    /// The last RST, when there were several (a forger often sends a burst).
    pub fn last_rst(&self) -> Option<SegEvent> {
        (self.rst_count > 1).then_some(self.last_rst_ev)
    }
}

impl DirLive {
    /// The RST `p`, that this end is about to send (before [`DirLive::on_send`]),
    /// as an event: with how its sequence number fits what this end sent before.
    pub fn rst_event(&self, ts: Timestamp, p: &Packet) -> SegEvent {
        let mut ev = SegEvent::of(ts, p);
        ev.seq_fit = match (self.seq_known, p.seq == self.next_seq) {
            (false, _) => SeqFit::Unknown,
            (true, true) => SeqFit::AtNext,
            (true, false) => SeqFit::Off,
        };
        ev
    }

    /// Records a segment this end sent. `rst_seen` says whether an RST (from either
    /// end) was already seen at this capture point. Returns whether the segment was a
    /// retransmission.
    pub fn on_send(&mut self, ts: Timestamp, p: &Packet, rst_seen: bool) -> bool {
        if self.packets == 0 {
            self.first_ts = ts;
            self.ttl_first = p.ttl;
            self.ttl_min = p.ttl;
            self.ttl_max = p.ttl;
        }
        self.packets = self.packets.saturating_add(1);
        self.bytes += u64::from(p.wire_len);
        self.payload_bytes += u64::from(p.payload_len);
        self.last_ts = self.last_ts.max(ts);
        self.ttl_min = self.ttl_min.min(p.ttl);
        self.ttl_max = self.ttl_max.max(p.ttl);
        self.last_ip_id = p.ip_id;

        let f = p.flags;
        if f.rst() {
            // Its event goes to the side store ([`DirLive::rst_event`]).
            self.rst_count = self.rst_count.saturating_add(1);
            // An RST occupies no sequence space; its payload (some stacks put a
            // diagnostic text there) is not stream data.
            return false;
        }
        if f.syn() {
            if self.syn_count == 0 {
                self.syn_ev = SegEvent::of(ts, p);
                self.mss = p.options.mss;
                self.wscale = p.options.wscale;
                self.sack_permitted = p.options.sack_permitted;
            }
            self.syn_count = self.syn_count.saturating_add(1);
        }
        if p.options.timestamps.is_some() {
            self.timestamps = true;
        }
        if f.fin() {
            // The first one's event goes to the side store (before this call).
            self.fin_count = self.fin_count.saturating_add(1);
        }
        if p.payload_len > 0 {
            self.first_data.get_or_insert(ts);
        }
        if p.payload_len > 0 && rst_seen {
            self.data_after_rst = self.data_after_rst.saturating_add(1);
        }

        // Sequence space of this segment: SYN and FIN count one each (RFC 9293 3.4).
        let len = p
            .payload_len
            .wrapping_add(u32::from(f.syn()))
            .wrapping_add(u32::from(f.fin()));
        if len == 0 {
            return false;
        }
        let end = p.seq.wrapping_add(len);
        if !self.seq_known {
            self.seq_known = true;
            self.next_seq = end;
            return false;
        }
        if seq_le(end, self.next_seq) {
            // A keep-alive carries one byte (or none) just below SND.NXT: not a
            // retransmission (the same rule as tshark's tcp.analysis.keep_alive).
            let keepalive = p.payload_len <= 1
                && !f.syn()
                && !f.fin()
                && p.seq == self.next_seq.wrapping_sub(1);
            if !keepalive {
                self.retransmissions = self.retransmissions.saturating_add(1);
                return true;
            }
            return false;
        }
        self.next_seq = end;
        false
    }

    /// Records an acknowledgement that the other end sent for this end's data.
    pub fn on_acked(&mut self, ack: u32) {
        if self.seq_known && seq_lt(self.next_seq, ack) {
            self.acked_unseen = self.acked_unseen.saturating_add(1);
            // Count each hole once: from here on, trust the peer.
            self.next_seq = ack;
        }
    }

    pub fn seen(&self) -> bool {
        self.packets > 0
    }

    /// Time of the first segment with payload, if any.
    pub fn first_data_ts(&self) -> Option<Timestamp> {
        self.first_data.get()
    }

    /// The first SYN (from the client) or SYN-ACK (from the server): the first
    /// segment with SYN set and RST clear.
    pub fn syn(&self) -> Option<SegEvent> {
        (self.syn_count > 0).then_some(self.syn_ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::TcpFlags;

    fn seg(seq: u32, ack: u32, flags: u8, len: u32) -> Packet {
        Packet {
            seq,
            ack,
            flags: TcpFlags(flags),
            payload_len: len,
            wire_len: 66 + len,
            ttl: 64,
            ..Packet::default()
        }
    }

    #[test]
    fn test_seq_compare_wraps() {
        assert!(seq_lt(u32::MAX - 1, 3));
        assert!(!seq_lt(3, u32::MAX - 1));
        assert!(seq_le(5, 5));
    }

    #[test]
    fn test_send_syn_then_data() {
        let mut d = DirLive::default();
        assert!(!d.on_send(Timestamp(1), &seg(100, 0, TcpFlags::SYN, 0), false));
        assert!(!d.on_send(Timestamp(2), &seg(101, 1, TcpFlags::ACK, 10), false));
        assert!(!d.on_send(
            Timestamp(3),
            &seg(111, 1, TcpFlags::ACK | TcpFlags::FIN, 0),
            false
        ));
        assert_eq!(d.syn().unwrap().seq, 100);
        assert_eq!(d.fin_count, 1);
        assert_eq!(d.packets, 3);
        assert_eq!(d.payload_bytes, 10);
        assert_eq!(d.retransmissions, 0);
    }

    #[test]
    fn test_send_retransmission_and_keepalive() {
        let mut d = DirLive::default();
        d.on_send(Timestamp(1), &seg(100, 0, TcpFlags::SYN, 0), false);
        assert!(
            d.on_send(Timestamp(2), &seg(100, 0, TcpFlags::SYN, 0), false),
            "SYN again"
        );
        d.on_send(Timestamp(3), &seg(101, 1, TcpFlags::ACK, 100), false);
        assert!(
            d.on_send(Timestamp(4), &seg(101, 1, TcpFlags::ACK, 100), false),
            "same data again"
        );
        assert!(
            !d.on_send(Timestamp(5), &seg(200, 1, TcpFlags::ACK, 1), false),
            "keep-alive"
        );
        assert!(
            !d.on_send(Timestamp(6), &seg(201, 1, TcpFlags::ACK, 0), false),
            "pure ACK"
        );
        assert_eq!(d.retransmissions, 2);
        assert_eq!(d.syn_count, 2);
    }

    #[test]
    fn test_send_rst_and_data_after() {
        let mut d = DirLive::default();
        let (r1, r2) = (
            seg(1, 0, TcpFlags::RST, 0),
            seg(1, 0, TcpFlags::RST | TcpFlags::ACK, 0),
        );
        let first = d.rst_event(Timestamp(1), &r1);
        d.on_send(Timestamp(1), &r1, false);
        let last = d.rst_event(Timestamp(2), &r2);
        d.on_send(Timestamp(2), &r2, false);
        d.on_send(Timestamp(3), &seg(1, 0, TcpFlags::ACK, 50), true);
        assert_eq!(d.rst_count, 2);
        let d = DirState::new(d, Some([first, last]), None);
        assert_eq!(d.rst().unwrap().ts, Timestamp(1));
        assert_eq!(d.last_rst().unwrap().ts, Timestamp(2));
        assert_eq!(d.data_after_rst, 1);
    }

    #[test]
    fn test_acked_unseen_counts_a_hole_once() {
        let mut d = DirLive::default();
        d.on_send(Timestamp(1), &seg(1000, 0, TcpFlags::ACK, 100), false);
        d.on_acked(1100);
        assert_eq!(d.acked_unseen, 0);
        d.on_acked(1500);
        d.on_acked(1500);
        assert_eq!(d.acked_unseen, 1);
    }
}
