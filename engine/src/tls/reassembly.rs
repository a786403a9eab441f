//! In-order delivery of one TCP direction's payload, from segments in any order:
//! retransmitted and overlapping bytes are delivered once, out-of-order segments wait
//! in a bounded ring until the hole before them fills.
//!
//! Bounded: at most `cap` bytes (a power of two) and [`MAX_RANGES`] separate held
//! ranges; what does not fit is dropped and counted. The ring is allocated the first
//! time a segment arrives out of order (once per direction, never per packet);
//! in-order segments, the common case, are delivered straight from the packet.
//! When the capture lost a segment for good, [`Reassembler::skip_gap`] moves past
//! the hole and says how many bytes are missing; the caller must then treat the
//! stream as out of sync.

use super::pool::{BufSource, Unpooled};
use crate::tcp::{seq_le, seq_lt};

/// Separate out-of-order ranges held at once.
pub const MAX_RANGES: usize = 8;

/// Follows one direction's sequence space and delivers its bytes in order.
#[derive(Debug, Default)]
pub struct Reassembler {
    started: bool,
    /// Sequence number of the next byte to deliver.
    next: u32,
    cap: usize,
    ring: Vec<u8>,
    /// Held ranges `[start, end)` in sequence space, sorted, disjoint, after `next`.
    ranges: [(u32, u32); MAX_RANGES],
    nranges: usize,
    /// Bytes dropped because the ring or the range list was full.
    pub overflow_bytes: u64,
    /// Bytes received more than once (retransmissions, overlaps).
    pub duplicate_bytes: u64,
}

impl Reassembler {
    /// A reassembler holding at most `cap` bytes out of order (rounded up to a power
    /// of two).
    pub fn new(cap: usize) -> Reassembler {
        Reassembler {
            cap: cap.max(1).next_power_of_two(),
            ..Reassembler::default()
        }
    }

    /// Sets the first sequence number to deliver (the SYN's plus one). Without it
    /// the first segment seen starts the stream.
    pub fn start(&mut self, seq: u32) {
        self.started = true;
        self.next = seq;
        self.nranges = 0;
    }

    /// The next sequence number to deliver.
    pub fn next_seq(&self) -> u32 {
        self.next
    }

    /// Nothing is held out of order: the next byte expected is all that matters.
    pub fn is_clear(&self) -> bool {
        self.nranges == 0
    }

    /// Records that the bytes up to `seq` were delivered by the caller's own fast
    /// path (only when [`Reassembler::is_clear`]).
    pub fn advance_to(&mut self, seq: u32) {
        if self.nranges == 0 && seq_le(self.next, seq) {
            self.next = seq;
        }
    }

    /// Where the reassembler stands when nothing is held (no range, no ring, no
    /// overflow): whether it started, and the next sequence number. `None` otherwise.
    /// [`Reassembler::unpark`] gives it back (but for `duplicate_bytes`, which is
    /// not kept).
    pub fn park(&self) -> Option<(bool, u32)> {
        let idle = self.nranges == 0 && self.ring.is_empty() && self.overflow_bytes == 0;
        idle.then_some((self.started, self.next))
    }

    /// The reassembler that [`Reassembler::park`] gave `(started, next)` of.
    pub fn unpark(started: bool, next: u32, cap: usize) -> Reassembler {
        Reassembler {
            started,
            next,
            ..Reassembler::new(cap)
        }
    }

    /// Bytes held out of order, waiting for a hole to fill.
    pub fn held(&self) -> usize {
        self.ranges[..self.nranges]
            .iter()
            .map(|(s, e)| e.wrapping_sub(*s) as usize)
            .sum()
    }

    /// One segment's payload starting at `seq`; `deliver` receives the bytes that are
    /// now in order, in order. The ring, when needed, is allocated.
    pub fn segment(&mut self, seq: u32, data: &[u8], deliver: &mut impl FnMut(&[u8])) {
        self.segment_from(seq, data, &mut Unpooled(self.cap), deliver);
    }

    /// Like [`Reassembler::segment`], with the ring borrowed from `pool` while
    /// something is held out of order (no buffer free: the segment is dropped and
    /// counted in `overflow_bytes`).
    pub fn segment_from(
        &mut self,
        seq: u32,
        data: &[u8],
        pool: &mut impl BufSource,
        deliver: &mut impl FnMut(&[u8]),
    ) {
        if data.is_empty() {
            return;
        }
        if !self.started {
            self.start(seq);
        }
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let end = seq.wrapping_add(len);
        if seq_le(end, self.next) {
            self.duplicate_bytes += u64::from(len);
            return;
        }
        let (seq, data) = if seq_lt(seq, self.next) {
            let skip = self.next.wrapping_sub(seq) as usize;
            self.duplicate_bytes += skip as u64;
            (self.next, &data[skip..])
        } else {
            (seq, data)
        };
        if seq == self.next {
            self.next = end;
            deliver(data);
            self.drain(deliver);
            if self.nranges == 0 && !self.ring.is_empty() {
                pool.give(std::mem::take(&mut self.ring));
            }
        } else {
            self.hold(seq, data, pool);
        }
    }

    /// Gives back the ring, dropping whatever it held (the session ends).
    pub fn release(&mut self, pool: &mut impl BufSource) {
        self.nranges = 0;
        if !self.ring.is_empty() {
            pool.give(std::mem::take(&mut self.ring));
        }
    }

    /// Gives up on the hole before the first held range (the capture lost it):
    /// delivers what is held after it and returns the number of bytes skipped.
    pub fn skip_gap(&mut self, deliver: &mut impl FnMut(&[u8])) -> u32 {
        if self.nranges == 0 {
            return 0;
        }
        let skipped = self.ranges[0].0.wrapping_sub(self.next);
        self.next = self.ranges[0].0;
        self.drain(deliver);
        skipped
    }

    /// Stores a segment that starts after `next`.
    fn hold(&mut self, seq: u32, data: &[u8], pool: &mut impl BufSource) {
        let limit = self.next.wrapping_add(self.cap as u32);
        let fits = (limit.wrapping_sub(seq) as usize).min(data.len());
        if !seq_lt(seq, limit) || fits == 0 {
            self.overflow_bytes += data.len() as u64;
            return;
        }
        self.overflow_bytes += (data.len() - fits) as u64;
        let data = &data[..fits];
        let end = seq.wrapping_add(fits as u32);
        // The new range, grown by every held range it overlaps or touches (held
        // ranges are sorted and disjoint, so one pass in order finds them all).
        let held = &self.ranges[..self.nranges];
        let apart =
            |(s, e): (u32, u32), (start, stop): (u32, u32)| seq_lt(e, start) || seq_lt(stop, s);
        let (mut start, mut stop) = (seq, end);
        for &(s, e) in held {
            if !apart((s, e), (start, stop)) {
                start = if seq_lt(s, start) { s } else { start };
                stop = if seq_lt(stop, e) { e } else { stop };
            }
        }
        let untouched = held.iter().filter(|&&r| apart(r, (start, stop))).count();
        if untouched + 1 > MAX_RANGES {
            self.overflow_bytes += data.len() as u64;
            return;
        }
        // The untouched ranges and the merged one, in order.
        let mut kept = [(0u32, 0u32); MAX_RANGES];
        let mut n = 0;
        let before = held.iter().filter(|&&(_, e)| seq_lt(e, start));
        let after = held.iter().filter(|&&(s, _)| seq_lt(stop, s));
        for &r in before.chain(std::iter::once(&(start, stop))).chain(after) {
            kept[n] = r;
            n += 1;
        }
        if self.ring.is_empty() {
            match pool.take() {
                Some(mut buf) if buf.capacity() >= self.cap => {
                    buf.resize(self.cap, 0);
                    self.ring = buf;
                }
                other => {
                    if let Some(buf) = other {
                        pool.give(buf);
                    }
                    self.overflow_bytes += data.len() as u64;
                    return;
                }
            }
        }
        // Copy into the ring at seq modulo cap (two pieces if it wraps).
        let mask = self.cap - 1;
        let at = seq as usize & mask;
        let first = data.len().min(self.cap - at);
        self.ring[at..at + first].copy_from_slice(&data[..first]);
        self.ring[..data.len() - first].copy_from_slice(&data[first..]);
        self.ranges = kept;
        self.nranges = n;
    }

    /// Delivers held ranges that are now contiguous with `next`.
    fn drain(&mut self, deliver: &mut impl FnMut(&[u8])) {
        while self.nranges > 0 && seq_le(self.ranges[0].0, self.next) {
            let (_, e) = self.ranges[0];
            if seq_lt(self.next, e) {
                let mask = self.cap - 1;
                let len = e.wrapping_sub(self.next) as usize;
                let at = self.next as usize & mask;
                let first = len.min(self.cap - at);
                deliver(&self.ring[at..at + first]);
                if first < len {
                    deliver(&self.ring[..len - first]);
                }
                self.next = e;
            }
            self.ranges.copy_within(1..self.nranges, 0);
            self.nranges -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::record::{Event, RecordReader};
    use proptest::prelude::*;

    fn collect(r: &mut Reassembler, segs: &[(u32, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (seq, d) in segs {
            r.segment(*seq, d, &mut |b| out.extend_from_slice(b));
        }
        out
    }

    #[test]
    fn test_reassembly_out_of_order_and_retransmitted() {
        let mut r = Reassembler::new(64);
        r.start(100);
        let out = collect(
            &mut r,
            &[
                (105, b"fgh"),
                (100, b"abc"),
                (100, b"abc"),
                (103, b"de"),
                (106, b"ghij"),
            ],
        );
        assert_eq!(out, b"abcdefghij");
        assert_eq!(r.next_seq(), 110);
        assert_eq!(r.duplicate_bytes, 3 + 2);
        assert_eq!(r.held(), 0);
    }

    #[test]
    fn test_reassembly_wraps_sequence_space_and_ring() {
        // Sequence space wraps: "ABCD" is MAX-2, MAX-1, MAX, 0; "EFGH" starts at 1.
        let mut r = Reassembler::new(8);
        r.start(u32::MAX - 2);
        assert_eq!(
            collect(&mut r, &[(1, b"EFGH"), (u32::MAX - 2, b"ABCD")]),
            b"ABCDEFGH"
        );
        // The ring wraps: with 8 bytes, a held range at 7..11 lies at 7, 0, 1, 2.
        let mut r = Reassembler::new(8);
        r.start(5);
        assert_eq!(collect(&mut r, &[(7, b"wxyz"), (5, b"uv")]), b"uvwxyz");
    }

    #[test]
    fn test_reassembly_bounded_and_counted() {
        let mut r = Reassembler::new(16);
        r.start(0);
        collect(&mut r, &[(10, &[1; 20])]);
        assert_eq!(r.held(), 6, "only what fits in the window of 16");
        assert_eq!(r.overflow_bytes, 14);
        let mut r = Reassembler::new(1024);
        r.start(0);
        for i in 0..10u32 {
            collect(&mut r, &[(10 + i * 10, &[1; 2])]);
        }
        assert_eq!(r.held(), 2 * MAX_RANGES);
        assert_eq!(r.overflow_bytes, 4, "ranges beyond the eighth are dropped");
    }

    #[test]
    fn test_reassembly_skip_gap() {
        let mut r = Reassembler::new(64);
        r.start(0);
        let mut out = Vec::new();
        r.segment(10, b"xyz", &mut |b| out.extend_from_slice(b));
        assert!(out.is_empty());
        assert_eq!(r.skip_gap(&mut |b| out.extend_from_slice(b)), 10);
        assert_eq!(out, b"xyz");
    }

    fn record(ct: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![ct, 3, 3];
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn observe(stream_segments: &[(u32, Vec<u8>)]) -> Vec<String> {
        let mut r = Reassembler::new(65_536);
        r.start(1000);
        let mut reader = RecordReader::new(65_536);
        let mut seen = Vec::new();
        for (seq, d) in stream_segments {
            r.segment(*seq, d, &mut |b| {
                reader.feed(b, &mut |e| {
                    seen.push(match e {
                        Event::Handshake { msg_type, body } => {
                            format!("hs {msg_type} {}", body.len())
                        }
                        other => format!("{other:?}"),
                    })
                })
            });
        }
        seen
    }

    proptest! {
        /// The property: any segmentation, reordering and retransmission of
        /// a handshake gives the same observations as the stream in one piece.
        #[test]
        fn prop_any_segmentation_and_retransmission_same_observations(
            cuts in proptest::collection::vec(1usize..1500, 0..10),
            order in proptest::collection::vec(any::<u16>(), 10),
            dups in proptest::collection::vec(any::<u16>(), 0..4),
        ) {
            let mut stream = record(22, &[&[1u8, 0, 1, 44][..], &[0x42; 300]].concat());
            stream.extend(record(22, &[&[2u8, 0, 0, 40][..], &[0x43; 40], &[11, 0, 3, 0], &[0x44; 768]].concat()));
            stream.extend(record(21, &[2, 46]));
            let whole = observe(&[(1000, stream.clone())]);
            prop_assert!(whole.iter().any(|e| e.contains("Alert")));
            let mut cuts = cuts;
            cuts.push(0);
            cuts.push(stream.len());
            cuts.sort();
            cuts.dedup();
            let mut segs: Vec<(u32, Vec<u8>)> = cuts
                .windows(2)
                .filter(|w| w[0] < w[1] && w[1] <= stream.len())
                .map(|w| (1000 + w[0] as u32, stream[w[0]..w[1]].to_vec()))
                .collect();
            // Reorder within the ring's reach, and retransmit some segments.
            let n = segs.len();
            for (i, o) in order.iter().enumerate().take(n) {
                segs.swap(i, usize::from(*o) % n);
            }
            for d in dups {
                let s = segs[usize::from(d) % n].clone();
                segs.push(s);
            }
            prop_assert_eq!(observe(&segs), whole);
        }
    }
}
