//! The clock offset between capture points, estimated from packets seen at both.
//!
//! Two points on either side of a middlebox may be captured on separate machines
//! whose clocks differ. Before a replay, this module reads a bounded prefix of every
//! capture (the first [`ClockConfig::max_frames`] frames) and pairs the packets that
//! a transparent middlebox forwards unchanged: same endpoints (in the same
//! direction), sequence and acknowledgement numbers, flags and payload length. The
//! VLAN tag, TTL and IP ID may differ between the points and are not compared. A
//! session that a proxy re-originates (other ports, other sequence numbers) simply
//! pairs with nothing, so it cannot move the estimate.
//!
//! Each pair gives a difference `ts(other) - ts(reference)`: the offset plus the
//! transit time through the middlebox for a packet travelling from the reference
//! point's side, minus it for a packet travelling the other way. So per session the
//! median of each direction is taken and the two are averaged (as NTP cancels a
//! symmetric path delay); the offset is the median over sessions. SYN and SYN-ACK
//! pairs are preferred when there are [`MIN_HANDSHAKE_SAMPLES`] of them (a middlebox
//! that inspects data delays data more than handshakes); otherwise every paired
//! segment is used. A segment seen twice at one point (a retransmission, a duplicate
//! ACK) is ambiguous and left out.
//!
//! Sign: the offset is how far the point's clock is ahead of the reference point's;
//! the replay corrects a timestamp as `ts - offset` ([`correct`]).
//!
//! Sans-IO and deterministic: capture bytes in, one [`ClockEstimate`] per point
//! out. Runs once before the replay, off the packet path; memory is bounded by the
//! prefix (one small hash-map entry per frame, for the reference and one other point
//! at a time). A capture that cannot be read, or is damaged, is read as far as it
//! goes: never a panic.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use crate::capture::CaptureReader;
use crate::flow::{FlowKey, Side};
use crate::time::Timestamp;
use crate::wire::{self, Packet};

/// Handshake pairs needed before the estimate ignores other segments.
pub const MIN_HANDSHAKE_SAMPLES: u32 = 3;

/// How much of each capture is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockConfig {
    /// Frames read from the start of each capture (every frame counts, TCP or not).
    pub max_frames: usize,
}

impl Default for ClockConfig {
    fn default() -> Self {
        ClockConfig {
            max_frames: 200_000,
        }
    }
}

/// Where a point's clock offset comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// The reference point itself (the client side): offset 0 by definition.
    Reference,
    /// Estimated from SYN and SYN-ACK segments seen at both points.
    Handshake,
    /// Estimated from TCP segments of any kind seen at both points (too few
    /// handshakes were).
    Segments,
    /// Nothing was seen at both points: offset 0, uncorrected.
    NoMatch,
    /// Given by the operator (`--clock-offset NAME=SECONDS`).
    Given,
    /// Correction turned off (`--clock-offset none`).
    Off,
}

impl Method {
    /// The stable name used in the summary and the stats.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Reference => "reference",
            Method::Handshake => "handshake",
            Method::Segments => "segments",
            Method::NoMatch => "no_match",
            Method::Given => "given",
            Method::Off => "off",
        }
    }
}

/// One point's clock relative to the reference point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockEstimate {
    /// Nanoseconds this point's clock is ahead of the reference's (negative: behind).
    pub offset_ns: i64,
    /// Packets paired between the two points that the estimate used.
    pub samples: u32,
    /// Largest minus smallest difference `ts(point) - ts(reference)` of those
    /// packets: twice the transit time through the middlebox, plus any jitter and
    /// drift. 0 without samples.
    pub spread_ns: u64,
    pub method: Method,
}

impl ClockEstimate {
    pub const REFERENCE: ClockEstimate = ClockEstimate::fixed(0, Method::Reference);
    pub const NO_MATCH: ClockEstimate = ClockEstimate::fixed(0, Method::NoMatch);
    pub const OFF: ClockEstimate = ClockEstimate::fixed(0, Method::Off);

    /// An offset not estimated from samples (given, off, reference).
    pub const fn fixed(offset_ns: i64, method: Method) -> ClockEstimate {
        ClockEstimate {
            offset_ns,
            samples: 0,
            spread_ns: 0,
            method,
        }
    }
}

/// `ts` in the reference point's clock, for a point whose clock is `offset_ns`
/// ahead: `ts - offset_ns`, saturating at both ends of the timestamp range.
#[inline]
pub fn correct(ts: Timestamp, offset_ns: i64) -> Timestamp {
    Timestamp(ts.0.saturating_add_signed(offset_ns.saturating_neg()))
}

/// Estimates every point's offset from the point `reference` (its own entry is
/// [`ClockEstimate::REFERENCE`]). `captures[i]` holds point `i`'s capture file.
pub fn estimate(captures: &[&[u8]], reference: usize, cfg: &ClockConfig) -> Vec<ClockEstimate> {
    let Some(ref_data) = captures.get(reference) else {
        return vec![ClockEstimate::NO_MATCH; captures.len()];
    };
    let reference_index = index(ref_data, cfg.max_frames);
    captures
        .iter()
        .enumerate()
        .map(|(i, data)| {
            if i == reference {
                ClockEstimate::REFERENCE
            } else {
                estimate_pair(&reference_index, &index(data, cfg.max_frames))
            }
        })
        .collect()
}

/// A segment as one point saw it.
#[derive(Clone, Copy, Debug)]
struct Seen {
    ts: Timestamp,
    /// The session's symmetric hash: groups the pairs by session.
    flow: u64,
    /// Which end of the session sent it.
    side: Side,
    /// SYN or SYN-ACK.
    handshake: bool,
    /// Seen more than once at this point: ambiguous, not paired.
    repeated: bool,
}

/// The segments in the first `max_frames` frames of a capture, by fingerprint.
fn index(data: &[u8], max_frames: usize) -> HashMap<u64, Seen> {
    let mut seen = HashMap::new();
    let Ok(reader) = CaptureReader::new(data) else {
        return seen;
    };
    for frame in reader.take(max_frames) {
        // A damaged capture is used as far as it could be read.
        let Ok(frame) = frame else { break };
        let Ok(pkt) = wire::decode(frame.link, frame.data, frame.wire_len) else {
            continue;
        };
        let (key, side) = FlowKey::from_packet(pkt.src, pkt.dst);
        match seen.entry(fingerprint(&key, side, &pkt)) {
            Entry::Occupied(mut e) => e.get_mut().repeated = true,
            Entry::Vacant(e) => {
                e.insert(Seen {
                    ts: frame.ts,
                    flow: key.flow_hash(),
                    side,
                    handshake: pkt.flags.syn(),
                    repeated: false,
                });
            }
        }
    }
    seen
}

/// What a transparent middlebox leaves unchanged, hashed to 64 bits. Two different
/// segments among 200 000 share a fingerprint with a probability near 1e-9; one
/// wrong pair would not move a median anyway.
fn fingerprint(key: &FlowKey, side: Side, pkt: &Packet) -> u64 {
    let mut h = FINGERPRINT.build_hasher();
    h.write_u128(u128::from_ne_bytes(key.lo.addr));
    h.write_u128(u128::from_ne_bytes(key.hi.addr));
    h.write_u32(u32::from(key.lo.port) << 16 | u32::from(key.hi.port));
    h.write_u8(u8::from(key.lo.v4) | u8::from(key.hi.v4) << 1 | (side.index() as u8) << 2);
    h.write_u32(pkt.seq);
    h.write_u32(pkt.ack);
    h.write_u8(pkt.flags.0);
    h.write_u32(pkt.payload_len);
    h.finish()
}

const FINGERPRINT: foldhash::fast::FixedState =
    foldhash::fast::FixedState::with_seed(0x636c_6f63_6b73_6b77);

/// One packet seen at both points. Ordered by session, then sender, then difference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pair {
    flow: u64,
    /// [`Side::index`] of the sender.
    side: usize,
    /// `ts(other) - ts(reference)`.
    diff: i64,
}

fn estimate_pair(reference: &HashMap<u64, Seen>, other: &HashMap<u64, Seen>) -> ClockEstimate {
    let mut handshake = Vec::new();
    let mut segments = Vec::new();
    for (fp, r) in reference {
        let Some(o) = other.get(fp) else { continue };
        if r.repeated || o.repeated {
            continue;
        }
        let diff = i128::from(o.ts.0) - i128::from(r.ts.0);
        let pair = Pair {
            flow: r.flow,
            side: r.side.index(),
            diff: diff.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
        };
        if r.handshake {
            handshake.push(pair);
        }
        segments.push(pair);
    }
    let (mut pairs, method) =
        if handshake.len() >= MIN_HANDSHAKE_SAMPLES as usize || handshake.len() == segments.len() {
            (handshake, Method::Handshake)
        } else {
            (segments, Method::Segments)
        };
    if pairs.is_empty() {
        return ClockEstimate::NO_MATCH;
    }
    // The hash map's order is arbitrary: sorting makes everything below depend on
    // the pairs only.
    pairs.sort_unstable();
    let (mut both_ways, mut one_way) = (Vec::new(), Vec::new());
    for flow in pairs.chunk_by(|a, b| a.flow == b.flow) {
        let (lo, hi) = flow.split_at(flow.partition_point(|p| p.side == Side::Lo.index()));
        let diff = |p: &Pair| p.diff;
        match (median(lo, diff), median(hi, diff)) {
            (Some(a), Some(b)) => both_ways.push(midpoint(a, b)),
            (Some(m), None) | (None, Some(m)) => one_way.push(m),
            (None, None) => {}
        }
    }
    // Sessions seen both ways cancel the transit time; the others only if there are
    // none of those.
    let mut per_flow = if both_ways.is_empty() {
        one_way
    } else {
        both_ways
    };
    per_flow.sort_unstable();
    let (min, max) = pairs.iter().fold((i64::MAX, i64::MIN), |(lo, hi), p| {
        (lo.min(p.diff), hi.max(p.diff))
    });
    ClockEstimate {
        offset_ns: median(&per_flow, |&d| d).unwrap_or(0),
        samples: u32::try_from(pairs.len()).unwrap_or(u32::MAX),
        spread_ns: u64::try_from(i128::from(max) - i128::from(min)).unwrap_or(u64::MAX),
        method,
    }
}

/// The median of `value` over items sorted by it (the midpoint of the two middle
/// ones for an even count, rounded down).
fn median<T>(sorted: &[T], value: impl Fn(&T) -> i64) -> Option<i64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(value(&sorted[n / 2])),
        _ => Some(midpoint(value(&sorted[n / 2 - 1]), value(&sorted[n / 2]))),
    }
}

fn midpoint(a: i64, b: i64) -> i64 {
    ((i128::from(a) + i128::from(b)).div_euclid(2)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::write::PcapWriter;

    const START: u64 = 1_767_225_600_000_000_000;
    const MS: u64 = 1_000_000;

    /// A frame as its sender put it on the wire, at true time `t`.
    #[derive(Clone, Debug)]
    struct Ev {
        t: u64,
        to_server: bool,
        frame: Vec<u8>,
    }

    /// One frame of a script: ms after the start, toward the server, seq, ack,
    /// flags (S, F, P), payload length.
    type Row = (u64, bool, u32, Option<u32>, &'static str, usize);

    /// A TCP session from `client` to `server` starting at `t0`: handshake (unless
    /// `mid` says the capture starts after it), a request, a response, a close.
    fn session(
        t0: u64,
        client: ([u8; 4], u16),
        server: ([u8; 4], u16),
        isn: u32,
        mid: bool,
    ) -> Vec<Ev> {
        let (ic, is) = (isn, isn.wrapping_mul(7).wrapping_add(12_345));
        let script: [Row; 9] = [
            (0, true, ic, None, "S", 0),
            (1, false, is, Some(ic + 1), "S", 0),
            (2, true, ic + 1, Some(is + 1), "", 0),
            (3, true, ic + 1, Some(is + 1), "P", 100),
            (5, false, is + 1, Some(ic + 101), "P", 300),
            (6, true, ic + 101, Some(is + 301), "", 0),
            (8, true, ic + 101, Some(is + 301), "F", 0),
            (9, false, is + 301, Some(ic + 102), "F", 0),
            (10, true, ic + 102, Some(is + 302), "", 0),
        ];
        script
            .iter()
            .filter(|row| !(mid && row.4 == "S"))
            .map(|&(ms, to_server, seq, ack, flags, len)| {
                let (src, dst) = if to_server {
                    (client, server)
                } else {
                    (server, client)
                };
                let b =
                    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                        .ipv4(src.0, dst.0, 64)
                        .tcp(src.1, dst.1, seq, 64_000);
                let b = if flags.contains('S') { b.syn() } else { b };
                let b = if flags.contains('F') { b.fin() } else { b };
                let b = if flags.contains('P') { b.psh() } else { b };
                let b = match ack {
                    Some(a) => b.ack(a),
                    None => b,
                };
                let mut frame = Vec::new();
                b.write(&mut frame, &vec![0x17; len]).unwrap();
                Ev {
                    t: t0 + ms * MS,
                    to_server,
                    frame,
                }
            })
            .collect()
    }

    /// `n` sessions from clients 198.18.0.1:40000.. to 198.19.0.1:443, 20 ms apart.
    fn sessions(n: u16, mid: bool) -> Vec<Ev> {
        (0..n)
            .flat_map(|k| {
                session(
                    START + u64::from(k) * 20 * MS,
                    ([198, 18, 0, 1], 40_000 + k),
                    ([198, 19, 0, 1], 443),
                    1_000_000 * u32::from(k) + 17,
                    mid,
                )
            })
            .collect()
    }

    fn pcap(mut frames: Vec<(u64, Vec<u8>)>) -> Vec<u8> {
        frames.sort_by_key(|f| f.0);
        let mut w = PcapWriter::new(Vec::new(), 1).unwrap();
        for (ts, f) in &frames {
            w.write_frame(Timestamp(*ts), f, f.len() as u32).unwrap();
        }
        w.into_inner()
    }

    /// The client-side (reference) and server-side captures of `evs` crossing a
    /// middlebox that takes `transit` (toward the server, toward the client), the
    /// server side's clock `offset` ns ahead. `outside_only` frames are seen on
    /// the server side only, at their own times (server-side clock).
    fn two_points(
        evs: &[Ev],
        offset: i64,
        transit: (u64, u64),
        outside_only: &[Ev],
    ) -> (Vec<u8>, Vec<u8>) {
        let inside = evs
            .iter()
            .map(|e| {
                (
                    if e.to_server { e.t } else { e.t + transit.1 },
                    e.frame.clone(),
                )
            })
            .collect();
        let outside = evs
            .iter()
            .map(|e| {
                let t = if e.to_server { e.t + transit.0 } else { e.t };
                (t.checked_add_signed(offset).unwrap(), e.frame.clone())
            })
            .chain(outside_only.iter().map(|e| (e.t, e.frame.clone())))
            .collect();
        (pcap(inside), pcap(outside))
    }

    fn run(inside: &[u8], outside: &[u8]) -> ClockEstimate {
        let est = estimate(&[inside, outside], 0, &ClockConfig::default());
        assert_eq!(est[0], ClockEstimate::REFERENCE);
        est[1]
    }

    #[test]
    fn test_estimate_offset_seconds_recovered_exactly() {
        let evs = sessions(9, false);
        for offset in [5_000_000_000i64, -7_250_000_000, 3_600_000_000_017] {
            let (inside, outside) = two_points(&evs, offset, (300_000, 300_000), &[]);
            let est = run(&inside, &outside);
            assert_eq!(est.offset_ns, offset, "{est:?}");
            assert_eq!(est.method, Method::Handshake);
            assert_eq!(est.samples, 18, "a SYN and a SYN-ACK per session");
            assert_eq!(est.spread_ns, 600_000, "twice the transit");
        }
    }

    #[test]
    fn test_estimate_sub_millisecond_offset_recovered_exactly() {
        let evs = sessions(5, false);
        for offset in [250_123i64, -437_001, 1, -1, 0] {
            let (inside, outside) = two_points(&evs, offset, (120_000, 120_000), &[]);
            assert_eq!(run(&inside, &outside).offset_ns, offset);
        }
    }

    /// Unequal transit times: the error is half their difference, within the
    /// transit delay.
    #[test]
    fn test_estimate_asymmetric_transit_within_transit_delay() {
        let evs = sessions(7, false);
        let offset = -2_000_000_000i64;
        let (inside, outside) = two_points(&evs, offset, (500_000, 100_000), &[]);
        let est = run(&inside, &outside);
        assert_eq!(est.offset_ns - offset, 200_000, "{est:?}");
        assert!((est.offset_ns - offset).unsigned_abs() <= 500_000);
    }

    #[test]
    fn test_estimate_nothing_in_common_gives_zero_samples() {
        let evs = sessions(4, false);
        let (inside, _) = two_points(&evs, 0, (0, 0), &[]);
        let other: Vec<Ev> = (0..4)
            .flat_map(|k| {
                session(
                    START,
                    ([10, 0, 0, 9], 50_000 + k),
                    ([10, 1, 0, 1], 443),
                    99,
                    false,
                )
            })
            .collect();
        let outside = pcap(other.into_iter().map(|e| (e.t, e.frame)).collect());
        assert_eq!(run(&inside, &outside), ClockEstimate::NO_MATCH);
        assert_eq!(run(&inside, &outside).samples, 0);
    }

    /// A proxy that re-originates sessions (its own address and ports, its own
    /// sequence numbers) on the server side, at times that would say another
    /// offset: they pair with nothing and leave the estimate where it was.
    #[test]
    fn test_estimate_reoriginated_legs_do_not_move_the_median() {
        let evs = sessions(5, false);
        let offset = 4_321_000_000i64;
        let (inside, plain) = two_points(&evs, offset, (200_000, 200_000), &[]);
        let want = run(&inside, &plain);
        assert_eq!(want.offset_ns, offset);
        // Three times as many re-originated legs as transparent sessions, toward
        // the same server, one from the same client port as a transparent session.
        let legs: Vec<Ev> = (0..15u16)
            .flat_map(|k| {
                session(
                    START + u64::from(k) * 7 * MS + 90 * MS,
                    ([203, 0, 113, 5], if k == 0 { 40_000 } else { 61_000 + k }),
                    ([198, 19, 0, 1], 443),
                    0xdead_0000 + u32::from(k),
                    false,
                )
            })
            .collect();
        let (_, mixed) = two_points(&evs, offset, (200_000, 200_000), &legs);
        assert_eq!(run(&inside, &mixed), want);
    }

    /// Captures that start after the handshakes: every segment seen at both points
    /// is used instead.
    #[test]
    fn test_estimate_without_handshakes_uses_segments() {
        let evs = sessions(6, true);
        let offset = -9_000_000_123i64;
        let (inside, outside) = two_points(&evs, offset, (50_000, 50_000), &[]);
        let est = run(&inside, &outside);
        assert_eq!(est.method, Method::Segments);
        assert_eq!(est.offset_ns, offset);
        assert_eq!(est.samples, 6 * 7);
    }

    /// A SYN retransmitted at the client side, whose first copy the middlebox
    /// dropped: the server side saw only the second. The SYN is ambiguous and left
    /// out, so it cannot add a second of error.
    #[test]
    fn test_estimate_repeated_segments_are_left_out() {
        let mut evs = sessions(4, false);
        let mut first = evs[0].clone();
        first.t -= 1_000 * MS;
        let offset = 1_500_000_000i64;
        let (_, outside) = two_points(&evs, offset, (80_000, 80_000), &[]);
        evs.push(first);
        let (inside, _) = two_points(&evs, offset, (80_000, 80_000), &[]);
        let est = run(&inside, &outside);
        assert_eq!(est.offset_ns, offset);
        assert_eq!(est.samples, 7);
    }

    #[test]
    fn test_estimate_damaged_captures_never_panic() {
        let evs = sessions(3, false);
        let (inside, outside) = two_points(&evs, 42_000, (1_000, 1_000), &[]);
        let full = run(&inside, &outside);
        assert_eq!(full.samples, 6);
        let bads: [&[u8]; 5] = [
            b"",
            b"not a capture at all",
            &[0xff; 64],
            &outside[..24],
            &outside[..30],
        ];
        for bad in bads {
            assert_eq!(run(&inside, bad), ClockEstimate::NO_MATCH);
            let est = estimate(&[bad, &outside], 0, &ClockConfig::default());
            assert_eq!(est[1], ClockEstimate::NO_MATCH);
        }
        // Cut anywhere: what was read before the cut is used (with fewer than three
        // handshakes left, every segment is).
        for cut in 0..outside.len() {
            let est = run(&inside, &outside[..cut]);
            assert!(est.samples <= 27, "cut at {cut}");
            if est.samples > 0 {
                assert!(
                    (est.offset_ns - 42_000).abs() <= 1_000,
                    "cut at {cut}: {est:?}"
                );
            }
        }
        // A record length no capture can have, after the first frames.
        let mut corrupt = outside.clone();
        let second_record = 24 + 16 + evs[0].frame.len();
        corrupt[second_record + 8..second_record + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(run(&inside, &corrupt).samples <= 1);
    }

    #[test]
    fn test_estimate_deterministic_and_bounded_by_max_frames() {
        let evs = sessions(20, false);
        let (inside, outside) = two_points(&evs, -31_000_000, (10_000, 30_000), &[]);
        let a = run(&inside, &outside);
        assert_eq!(a, run(&inside, &outside));
        // The first 18 frames of each side hold the first two sessions' handshakes.
        let small = estimate(&[&inside, &outside], 0, &ClockConfig { max_frames: 18 });
        assert!(
            small[1].samples > 0 && small[1].samples < a.samples,
            "{small:?}"
        );
        let none = estimate(&[&inside, &outside], 0, &ClockConfig { max_frames: 0 });
        assert_eq!(none[1], ClockEstimate::NO_MATCH);
    }

    #[test]
    fn test_estimate_reference_is_any_point() {
        let evs = sessions(3, false);
        let (inside, outside) = two_points(&evs, 700_000_000, (5_000, 5_000), &[]);
        let est = estimate(&[&outside, &inside, &inside], 1, &ClockConfig::default());
        assert_eq!(est[0].offset_ns, 700_000_000);
        assert_eq!(est[1], ClockEstimate::REFERENCE);
        assert_eq!(est[2].offset_ns, 0, "an identical copy");
        assert_eq!(est[2].spread_ns, 0);
        let est = estimate(&[&inside, &outside], 5, &ClockConfig::default());
        assert_eq!(est, vec![ClockEstimate::NO_MATCH; 2]);
    }

    #[test]
    fn test_correct_saturates() {
        assert_eq!(correct(Timestamp(10_000), 3_000), Timestamp(7_000));
        assert_eq!(correct(Timestamp(10_000), -3_000), Timestamp(13_000));
        assert_eq!(correct(Timestamp(5), 10), Timestamp(0));
        assert_eq!(correct(Timestamp(u64::MAX - 1), -10), Timestamp(u64::MAX));
        assert_eq!(correct(Timestamp(0), i64::MAX), Timestamp(0));
        assert_eq!(
            correct(Timestamp(1), i64::MIN),
            Timestamp(i64::MAX as u64 + 1)
        );
    }

    #[test]
    fn test_median_odd_even_negative() {
        let id = |&v: &i64| v;
        assert_eq!(median(&[], id), None);
        assert_eq!(median(&[-5], id), Some(-5));
        assert_eq!(median(&[-5, 2], id), Some(-2), "rounded down");
        assert_eq!(median(&[1, 2, 100], id), Some(2));
        assert_eq!(median(&[i64::MAX, i64::MAX], id), Some(i64::MAX));
        assert_eq!(median(&[i64::MIN, i64::MIN], id), Some(i64::MIN));
    }
}
