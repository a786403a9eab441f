//! Per-worker memory of the two costliest readings of a handshake: the hashes of
//! the client fingerprints and the parsed server certificate.
//!
//! Both depend only on bytes that repeat across sessions on a real network: a few
//! TLS stacks make most ClientHellos (their cipher, extension and signature lists
//! are the same from session to session; Chrome shuffles its extension order, which
//! JA4 sorts away), and a few servers send most certificates. Measured with
//! callgrind on `tapwatch synth` traffic (BENCHMARKS.md, "Handshake memo"): the
//! fingerprint hashes were 21 % of all instructions of a replay and the certificate
//! 16 % (SHA-256 in software, then x509-parser).
//!
//! Exact by construction: a slot is reused only when its whole key (the hashed
//! values, or the whole Certificate message) is equal, so a hit returns what the
//! computation would have returned, and the output never depends on what was seen
//! before. Direct-mapped, so a lookup is one index and one comparison; a collision
//! just replaces the slot. Bounded: fixed slot counts, and Certificate messages
//! longer than [`CERT_MAX`] are not kept. Memory is taken when a slot is first
//! filled (the certificate bytes) and reused after that.

use std::hash::{BuildHasher, Hash};

use super::cert::{CertMessage, LeafCert};
use super::hello::ClientHello;

/// Fingerprint slots per worker.
pub const FP_SLOTS: usize = 256;
/// Longest key kept (values): a list of ciphers or extensions longer than this
/// (unusual outside hostile traffic) is hashed every time.
pub const FP_KEY: usize = 128;
/// Certificate slots per worker.
pub const CERT_SLOTS: usize = 64;
/// Longest Certificate message kept, in bytes.
pub const CERT_MAX: usize = 16 * 1024;

/// What the memo saved and missed (per worker; summed into the run's TLS stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoStats {
    pub fingerprint_hits: u64,
    pub fingerprint_misses: u64,
    pub cert_hits: u64,
    pub cert_misses: u64,
    /// ClientHellos and server certificates stored for open sessions, and how
    /// many of them found an equal one to share.
    pub hellos_stored: u64,
    pub hellos_shared: u64,
    pub leaves_stored: u64,
    pub leaves_shared: u64,
}

#[derive(Clone, Copy)]
struct FpSlot {
    /// What was hashed (see [`FpMemo::get_or`]).
    tag: u16,
    /// Key length; `u16::MAX` for an empty slot.
    len: u16,
    key: [u16; FP_KEY],
    value: [u8; 16],
}

/// Digests of `u16` lists, by the exact list.
pub struct FpMemo {
    slots: Box<[FpSlot]>,
    pub hits: u64,
    pub misses: u64,
}

impl std::fmt::Debug for FpMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FpMemo")
            .field("hits", &self.hits)
            .field("misses", &self.misses)
            .finish_non_exhaustive()
    }
}

impl Default for FpMemo {
    fn default() -> Self {
        FpMemo {
            slots: vec![
                FpSlot {
                    tag: 0,
                    len: u16::MAX,
                    key: [0; FP_KEY],
                    value: [0; 16],
                };
                FP_SLOTS
            ]
            .into_boxed_slice(),
            hits: 0,
            misses: 0,
        }
    }
}

/// A cheap, well-mixed hash of a short list (slot choice only: equality decides).
fn mix(values: impl Iterator<Item = u64>) -> u64 {
    let mut h = 0x243f_6a88_85a3_08d3u64;
    for v in values {
        h = (h ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    }
    h ^ (h >> 32)
}

/// Where `key` under `tag` is kept.
fn slot_index(tag: u16, key: &[u16]) -> usize {
    let words = key.iter().map(|&v| u64::from(v));
    mix(std::iter::once(u64::from(tag)).chain(words)) as usize % FP_SLOTS
}

impl FpMemo {
    /// The slot for `key` under `tag`.
    fn slot(&mut self, tag: u16, key: &[u16]) -> &mut FpSlot {
        &mut self.slots[slot_index(tag, key)]
    }

    /// The value remembered for `key` under `tag` (which digest of which lists),
    /// or `compute()`'s (then remembered). A key longer than [`FP_KEY`] is computed
    /// every time.
    pub fn get_or(
        &mut self,
        tag: u16,
        key: &[u16],
        compute: impl FnOnce() -> [u8; 16],
    ) -> [u8; 16] {
        if key.len() > FP_KEY {
            self.misses += 1;
            return compute();
        }
        let slot = &mut self.slots[slot_index(tag, key)];
        if slot.tag == tag && usize::from(slot.len) == key.len() && slot.key[..key.len()] == *key {
            self.hits += 1;
            return slot.value;
        }
        self.misses += 1;
        let value = compute();
        slot.tag = tag;
        slot.len = key.len() as u16;
        slot.key[..key.len()].copy_from_slice(key);
        slot.value = value;
        value
    }

    /// The value remembered for `key` under `tag`, if any (counted as a hit; a
    /// miss is not counted: the caller computes through [`FpMemo::get_or`] on
    /// another key, which counts it, then [`FpMemo::put`]s the value here).
    pub fn get(&mut self, tag: u16, key: &[u16]) -> Option<[u8; 16]> {
        if key.len() > FP_KEY {
            return None;
        }
        let slot = self.slot(tag, key);
        let found = (slot.tag == tag
            && usize::from(slot.len) == key.len()
            && slot.key[..key.len()] == *key)
            .then_some(slot.value);
        self.hits += u64::from(found.is_some());
        found
    }

    /// Remembers `value` for `key` under `tag` (nothing for a key longer than
    /// [`FP_KEY`]).
    pub fn put(&mut self, tag: u16, key: &[u16], value: [u8; 16]) {
        if key.len() > FP_KEY {
            return;
        }
        let slot = self.slot(tag, key);
        slot.tag = tag;
        slot.len = key.len() as u16;
        slot.key[..key.len()].copy_from_slice(key);
        slot.value = value;
    }
}

#[derive(Debug, Default)]
struct CertSlot {
    /// The whole Certificate message body; empty for an empty slot.
    body: Vec<u8>,
    value: Option<CertMessage>,
}

/// Parsed Certificate messages, by their exact bytes.
#[derive(Debug)]
pub struct CertMemo {
    slots: Vec<CertSlot>,
    pub hits: u64,
    pub misses: u64,
}

impl Default for CertMemo {
    fn default() -> Self {
        CertMemo {
            slots: (0..CERT_SLOTS).map(|_| CertSlot::default()).collect(),
            hits: 0,
            misses: 0,
        }
    }
}

impl CertMemo {
    /// The parse of `body` remembered, or `parse(body)` (remembered if it is `Ok`
    /// and the body not longer than [`CERT_MAX`]).
    pub fn get_or<E>(
        &mut self,
        body: &[u8],
        parse: impl FnOnce(&[u8]) -> Result<CertMessage, E>,
    ) -> Result<CertMessage, E> {
        if body.is_empty() || body.len() > CERT_MAX {
            self.misses += 1;
            return parse(body);
        }
        // The slot: the length and the leaf's last bytes (its signature, unique per
        // certificate), not the message's end (an intermediate's signature, shared
        // by every leaf it signed).
        let leaf_end = (body.len() >= 6)
            .then(|| {
                6 + (usize::from(body[3]) << 16 | usize::from(body[4]) << 8 | usize::from(body[5]))
            })
            .filter(|&e| e <= body.len())
            .unwrap_or(body.len());
        let tail = &body[leaf_end.saturating_sub(16)..leaf_end];
        let words = tail
            .chunks(8)
            .map(|c| c.iter().fold(0u64, |a, &b| a << 8 | u64::from(b)));
        let i = mix(std::iter::once(body.len() as u64).chain(words)) as usize % CERT_SLOTS;
        let slot = &mut self.slots[i];
        if let Some(v) = slot.value.filter(|_| slot.body == body) {
            self.hits += 1;
            return Ok(v);
        }
        self.misses += 1;
        let value = parse(body)?;
        slot.body.clear();
        slot.body.extend_from_slice(body);
        slot.value = Some(value);
        Ok(value)
    }
}

/// "No value" for a [`Store`] index.
pub const NONE: u32 = u32::MAX;

/// Values that many open sessions share, kept once per worker: the ClientHello but
/// for its random (the same client software asking for the same server), and the
/// server certificate. A session holds an index and a reference; the value goes
/// when its last session does.
///
/// Exact: a hash index of the values held (confirmed by equality) finds an equal
/// one whenever there is one. Bounded by the number of open session points (each
/// holds at most one value of each kind); the vectors and the index grow to their
/// peak and are reused after that.
pub struct Store<T> {
    entries: Vec<(T, u32)>,
    free: Vec<u32>,
    index: hashbrown::HashTable<u32>,
    /// Values stored (shared or not) and values that found an equal one.
    pub stored: u64,
    pub shared: u64,
}

impl<T> std::fmt::Debug for Store<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("held", &(self.entries.len() - self.free.len()))
            .field("stored", &self.stored)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl<T> Default for Store<T> {
    fn default() -> Self {
        Store {
            entries: Vec::new(),
            free: Vec::new(),
            index: hashbrown::HashTable::new(),
            stored: 0,
            shared: 0,
        }
    }
}

fn hash_of<T: Hash>(v: &T) -> u64 {
    foldhash::fast::FixedState::with_seed(0).hash_one(v)
}

impl<T: Copy + Eq + Hash> Store<T> {
    /// Stores `v` (or finds it stored) and takes a reference: its index.
    pub fn put(&mut self, v: T) -> u32 {
        self.stored += 1;
        let Store {
            entries,
            free,
            index,
            ..
        } = self;
        let h = hash_of(&v);
        if let Some(&i) = index.find(h, |&i| entries[i as usize].0 == v) {
            entries[i as usize].1 += 1;
            self.shared += 1;
            return i;
        }
        let i = match free.pop() {
            Some(i) => {
                entries[i as usize] = (v, 1);
                i
            }
            None => {
                entries.push((v, 1));
                (entries.len() - 1) as u32
            }
        };
        index.insert_unique(h, i, |&j| hash_of(&entries[j as usize].0));
        i
    }

    /// The value at `i` ([`NONE`]: none).
    pub fn get(&self, i: u32) -> Option<&T> {
        self.entries
            .get(i as usize)
            .filter(|(_, refs)| *refs > 0)
            .map(|(v, _)| v)
    }

    /// Gives back a reference taken by [`Store::put`] ([`NONE`]: nothing).
    pub fn release(&mut self, i: u32) {
        let Some((v, refs)) = self.entries.get_mut(i as usize) else {
            return;
        };
        if *refs == 0 {
            return;
        }
        *refs -= 1;
        if *refs == 0 {
            if let Ok(e) = self.index.find_entry(hash_of(v), |&j| j == i) {
                e.remove();
            }
            self.free.push(i);
        }
    }

    /// Values held now.
    pub fn live(&self) -> usize {
        self.entries.len() - self.free.len()
    }
}

/// What a worker's TLS layer keeps once for all its sessions: the two memos and
/// the two stores.
#[derive(Debug, Default)]
pub struct Memo {
    pub fingerprints: FpMemo,
    pub certs: CertMemo,
    /// ClientHellos, their random zeroed.
    pub hellos: Store<ClientHello>,
    pub leaves: Store<LeafCert>,
    /// The open sessions' record-header logs and alerts.
    pub logs: super::observe::LogArena,
    pub alerts: super::observe::AlertArena,
}

impl Memo {
    pub fn stats(&self) -> MemoStats {
        MemoStats {
            fingerprint_hits: self.fingerprints.hits,
            fingerprint_misses: self.fingerprints.misses,
            cert_hits: self.certs.hits,
            cert_misses: self.certs.misses,
            hellos_stored: self.hellos.stored,
            hellos_shared: self.hellos.shared,
            leaves_stored: self.leaves.stored,
            leaves_shared: self.leaves.shared,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::cert::LeafCert;

    #[test]
    fn test_fp_memo_exact_on_collision() {
        let mut m = FpMemo::default();
        // Fill every slot with distinct keys, then read them all back: any two keys
        // sharing a slot must not answer for each other.
        let keys: Vec<Vec<u16>> = (0..4 * FP_SLOTS as u16)
            .map(|i| vec![7, i, i ^ 0x55])
            .collect();
        let value = |k: &[u16]| {
            let mut v = [0u8; 16];
            v[..2].copy_from_slice(&k[1].to_be_bytes());
            v
        };
        for k in &keys {
            assert_eq!(m.get_or(1, k, || value(k)), value(k));
        }
        for k in &keys {
            assert_eq!(m.get_or(1, k, || value(k)), value(k));
        }
        assert!(m.hits > 0, "some keys stayed in their slots");
        assert_eq!(m.hits + m.misses, 2 * keys.len() as u64);
        // A prefix of a key is another key.
        let long = [1u16, 2, 3];
        assert_eq!(m.get_or(1, &long, || [3; 16]), [3; 16]);
        assert_eq!(m.get_or(1, &long[..2], || [2; 16]), [2; 16]);
        // The same key under another tag is another key.
        assert_eq!(m.get_or(2, &long, || [4; 16]), [4; 16]);
        assert_eq!(m.get_or(1, &long, || [5; 16]), [3; 16]);
        // Longer than a slot holds: computed every time.
        let huge = vec![9u16; FP_KEY + 1];
        let before = m.misses;
        assert_eq!(m.get_or(1, &huge, || [9; 16]), [9; 16]);
        assert_eq!(m.get_or(1, &huge, || [8; 16]), [8; 16]);
        assert_eq!(m.misses, before + 2);
    }

    #[test]
    fn test_store_shares_and_frees() {
        let mut s = Store::<u64>::default();
        let a = s.put(7);
        let b = s.put(7);
        assert_eq!(a, b, "an equal value is shared");
        let c = s.put(8);
        assert_ne!(a, c);
        assert_eq!(
            (s.get(a), s.get(c), s.get(NONE)),
            (Some(&7), Some(&8), None)
        );
        s.release(a);
        assert_eq!(s.get(b), Some(&7), "one reference left");
        s.release(b);
        assert_eq!(s.get(a), None);
        assert_eq!(s.live(), 1);
        // The freed index is reused, and the value it held is found no more.
        let d = s.put(9);
        assert_eq!(d, a);
        let e = s.put(7);
        assert_ne!(e, d);
        assert_eq!((s.get(d), s.get(e)), (Some(&9), Some(&7)));
        s.release(NONE);
        assert_eq!((s.stored, s.shared), (5, 1));
        // Many values at once: each equal one is found, whatever else is held.
        let idx: Vec<u32> = (0..5000u64).map(|v| s.put(v * 3)).collect();
        for (v, &i) in (0..5000u64).zip(&idx) {
            assert_eq!(s.put(v * 3), i);
            assert_eq!(s.get(i), Some(&(v * 3)));
        }
        for &i in idx.iter().chain(&idx) {
            s.release(i);
        }
        assert_eq!(s.live(), 3, "8, 9 and 7 are still held");
        s.release(c);
        s.release(d);
        s.release(e);
        assert_eq!(s.live(), 0);
    }

    #[test]
    fn test_cert_memo_keyed_by_whole_body() {
        let leaf = |n: u16| {
            CertMessage::Leaf(LeafCert {
                chain_len: n,
                ..LeafCert::default()
            })
        };
        let mut m = CertMemo::default();
        // Same length and same leaf tail, different bytes earlier: not a hit.
        // A 20-byte leaf: the slot is chosen by the length and the leaf's last 16.
        let mut a = [0u8; 26];
        a[2] = 23;
        a[5] = 20;
        a[6..].copy_from_slice(&[3; 20]);
        let mut b = a;
        b[7] = 7;
        assert_eq!(m.get_or::<()>(&a, |_| Ok(leaf(1))), Ok(leaf(1)));
        assert_eq!(m.get_or::<()>(&b, |_| Ok(leaf(2))), Ok(leaf(2)));
        assert_eq!(
            m.get_or::<()>(&a, |_| Ok(leaf(3))),
            Ok(leaf(3)),
            "b replaced a"
        );
        assert_eq!(m.get_or::<()>(&a, |_| Ok(leaf(4))), Ok(leaf(3)), "a hit");
        assert_eq!((m.hits, m.misses), (1, 3));
        // Errors are not remembered.
        let c = [0u8, 0, 1];
        assert_eq!(m.get_or(&c, |_| Err(5)), Err(5));
        assert_eq!(m.get_or::<()>(&c, |_| Ok(leaf(6))), Ok(leaf(6)));
    }
}
