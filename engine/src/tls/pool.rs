//! Buffers for handshake messages and out-of-order segments, shared by all the
//! sessions of one worker.
//!
//! A session direction holds a buffer only while it needs one: while a handshake
//! message is split across segments or records, or while out-of-order data waits
//! for a hole to fill. Most messages arrive whole in one segment and are read in
//! place, so a worker needs far fewer buffers than it has sessions in their
//! handshake. Buffers are made on first need, up to a limit, and recycled: after
//! warm-up, taking and giving back never allocates. When all are in use the
//! caller degrades (skips the message, drops the segment) and the refusal is
//! counted.

/// Where a reader gets its buffers from.
pub trait BufSource {
    /// A cleared buffer with room for `capacity()` bytes, or `None` if none is free.
    fn take(&mut self) -> Option<Vec<u8>>;
    /// Returns a buffer taken from this source.
    fn give(&mut self, buf: Vec<u8>);
    /// Bytes each buffer holds.
    fn capacity(&self) -> usize;
}

/// A bounded, recycling pool of equal buffers.
#[derive(Debug)]
pub struct BufPool {
    free: Vec<Vec<u8>>,
    cap: usize,
    limit: usize,
    made: usize,
    /// Times a buffer was asked for while all were in use.
    pub exhausted: u64,
}

impl BufPool {
    /// At most `limit` buffers of `cap` bytes each.
    pub fn new(cap: usize, limit: usize) -> BufPool {
        BufPool {
            free: Vec::with_capacity(limit),
            cap,
            limit,
            made: 0,
            exhausted: 0,
        }
    }
    /// Buffers handed out and not yet given back.
    pub fn in_use(&self) -> usize {
        self.made - self.free.len()
    }
    /// Buffers made so far (the pool's high-water mark).
    pub fn made(&self) -> usize {
        self.made
    }
}

impl BufSource for BufPool {
    fn take(&mut self) -> Option<Vec<u8>> {
        if let Some(b) = self.free.pop() {
            return Some(b);
        }
        if self.made < self.limit {
            self.made += 1;
            return Some(Vec::with_capacity(self.cap));
        }
        self.exhausted += 1;
        None
    }
    fn give(&mut self, mut buf: Vec<u8>) {
        // `free` was reserved for `limit` buffers: this push never reallocates.
        if buf.capacity() >= self.cap && self.free.len() < self.limit {
            buf.clear();
            self.free.push(buf);
        }
    }
    fn capacity(&self) -> usize {
        self.cap
    }
}

/// Allocates a fresh buffer every time: for tests and one-off tools.
#[derive(Debug, Clone, Copy)]
pub struct Unpooled(pub usize);

impl BufSource for Unpooled {
    fn take(&mut self) -> Option<Vec<u8>> {
        Some(Vec::with_capacity(self.0))
    }
    fn give(&mut self, _buf: Vec<u8>) {}
    fn capacity(&self) -> usize {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_pool_bounded_and_recycled() {
        let mut p = BufPool::new(16, 2);
        let a = p.take().unwrap();
        let b = p.take().unwrap();
        assert!(p.take().is_none());
        assert_eq!(p.exhausted, 1);
        assert_eq!(p.in_use(), 2);
        let ptr = a.as_ptr();
        p.give(a);
        let c = p.take().unwrap();
        assert_eq!(c.as_ptr(), ptr, "the same buffer comes back");
        p.give(b);
        p.give(c);
        assert_eq!(p.in_use(), 0);
        assert_eq!(p.made(), 2);
    }
}
