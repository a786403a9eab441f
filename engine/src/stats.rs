//! Counters of the capture side: what was read, decoded, skipped and dropped. Plain
//! integers owned by one thread, summed at the end; every skip has a named cause.

use crate::wire::Skip;

/// What the reader saw of one capture point (or of all, summed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReaderStats {
    /// Frames read from the capture.
    pub frames: u64,
    /// Captured bytes read (record data).
    pub bytes: u64,
    /// Frames decoded to TCP and dispatched.
    pub tcp: u64,
    /// Frames skipped, by cause ([`Skip::index`]).
    pub skipped: [u64; Skip::COUNT],
    /// TCP frames cut by the snap length (still processed as far as they go).
    pub snaplen_cut: u64,
    /// Packets dropped because a worker's ring was full (live capture only; replay
    /// waits instead).
    pub ring_full_drops: u64,
    /// Times the reader had to wait for a worker (replay backpressure).
    pub ring_full_waits: u64,
}

impl ReaderStats {
    pub fn add(&mut self, o: &ReaderStats) {
        self.frames += o.frames;
        self.bytes += o.bytes;
        self.tcp += o.tcp;
        for (a, b) in self.skipped.iter_mut().zip(o.skipped) {
            *a += b;
        }
        self.snaplen_cut += o.snaplen_cut;
        self.ring_full_drops += o.ring_full_drops;
        self.ring_full_waits += o.ring_full_waits;
    }
    pub fn skipped_total(&self) -> u64 {
        self.skipped.iter().sum()
    }
    /// Skips with a nonzero count, by name.
    pub fn skips(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Skip::ALL
            .iter()
            .map(|s| (s.as_str(), self.skipped[s.index()]))
            .filter(|(_, n)| *n > 0)
    }
}
