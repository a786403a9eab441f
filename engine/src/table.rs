//! The per-worker flow table: a bounded slab of sessions, a hash index over them, and
//! the timers that end them.
//!
//! Memory is bounded by `capacity`: slots are reserved up front and never grow; when
//! all are taken, the caller evicts (see [`FlowTable::eviction_victim`]).
//!
//! Timers: two hashed timer wheels, one for the idle timeout of open sessions and one
//! for the linger time of closed ones, each with [`SLOTS`] slots of `timeout / 128`.
//! A session is filed under the slot of its expiry time (`activity + timeout`). A
//! packet only writes the session's `activity`: re-filing on every packet would touch
//! two neighbouring sessions at random addresses (two cache misses per packet). When
//! the wheel's cursor reaches a slot, each session in it either expires (no packet
//! for the timeout) or is re-filed under its new expiry time. Insert, touch, expire
//! and cancel are O(1) (amortised: a session is re-filed at most once per timeout);
//! a session expires at most two slot widths (1/64 of the timeout) after its exact
//! expiry time, never before. The worker makes the verdicts exact whatever the
//! timing: a packet for a session already past its expiry ends that session first,
//! and the end of the input applies the exact rule (worker.rs). Eviction takes the
//! session with the earliest expiry time, which is the least recently active one
//! (to a slot width). The lists are intrusive (indices inside [`Session`]) and never
//! allocate.

use hashbrown::HashTable;

use crate::flow::FlowKey;
use crate::session::{PointLive as PointState, Session, TimerList, NIL};
use crate::time::{Nanos, Timestamp};

#[derive(Clone, Copy, Debug, Default)]
struct ListHead {
    head: u32,
    tail: u32,
}

impl ListHead {
    const EMPTY: ListHead = ListHead {
        head: NIL,
        tail: NIL,
    };
}

/// Slots per timer wheel: the wheel spans twice the timeout.
pub const SLOTS: usize = 256;

/// `Session::slot` of a session detached from its wheel while its slot is processed.
const PENDING: u32 = u32::MAX - 1;

/// A hashed timer wheel over capture time.
#[derive(Debug)]
struct Wheel {
    slots: Vec<ListHead>,
    /// Nanoseconds per slot.
    width: u64,
    timeout: u64,
    /// Start of the next slot to visit; every slot before it has been visited.
    cursor: u64,
    /// Sessions of the slot being visited, detached from it.
    pending: ListHead,
}

impl Wheel {
    fn new(timeout: Nanos) -> Wheel {
        let timeout = timeout.0.max(1);
        Wheel {
            slots: vec![ListHead::EMPTY; SLOTS],
            width: (timeout / (SLOTS as u64 / 2)).max(1),
            timeout,
            cursor: 0,
            pending: ListHead::EMPTY,
        }
    }

    /// Whether [`FlowTable::expired`] would find nothing at `now`: no session
    /// waits in the slot being visited and the next slot's time has not come.
    #[inline(always)]
    fn nothing_due(&self, now: u64) -> bool {
        self.pending.head == NIL && self.cursor.saturating_add(self.width) > now
    }

    /// The slot for an expiry time (never one already visited).
    fn slot_of(&self, due: u64) -> u32 {
        ((due.max(self.cursor) / self.width) as usize % SLOTS) as u32
    }
}

/// Where [`FlowTable::any_resumed`] resumes: slots past each wheel's cursor known
/// to be empty.
#[derive(Clone, Copy, Debug, Default)]
pub struct Drain {
    linger: usize,
    idle: usize,
}

/// Sessions of one worker, bounded, with idle and linger timers.
#[derive(Debug)]
pub struct FlowTable {
    index: HashTable<u32>,
    sessions: Vec<Session>,
    points: Vec<PointState>,
    npoints: usize,
    capacity: usize,
    free: Vec<u32>,
    idle: Wheel,
    linger: Wheel,
    live: usize,
}

impl FlowTable {
    /// A table for at most `capacity` sessions, each followed at `npoints` points.
    /// Reserves everything now: slots are filled lazily, without reallocation.
    pub fn new(capacity: usize, npoints: usize, idle: Nanos, linger: Nanos) -> FlowTable {
        let capacity = capacity.clamp(1, NIL as usize - 1);
        let npoints = npoints.max(1);
        FlowTable {
            index: HashTable::with_capacity(capacity),
            sessions: Vec::with_capacity(capacity),
            points: Vec::with_capacity(capacity * npoints),
            npoints,
            capacity,
            free: Vec::with_capacity(capacity),
            idle: Wheel::new(idle),
            linger: Wheel::new(linger),
            live: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.live
    }
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    pub fn is_full(&self) -> bool {
        self.live >= self.capacity
    }

    /// The slot of the session with this key.
    #[inline]
    pub fn find(&self, hash: u64, key: &FlowKey) -> Option<u32> {
        let sessions = &self.sessions;
        self.index
            .find(hash, |&i| sessions[i as usize].key == *key)
            .copied()
    }

    /// Inserts a session whose key has the flow hash `hash` (on the idle list, as of
    /// `now`). `None` when full.
    pub fn insert(&mut self, mut s: Session, hash: u64, now: Timestamp) -> Option<u32> {
        if self.is_full() {
            return None;
        }
        s.list = TimerList::None;
        s.prev = NIL;
        s.next = NIL;
        let slot = if let Some(slot) = self.free.pop() {
            self.sessions[slot as usize] = s;
            let base = slot as usize * self.npoints;
            self.points[base..base + self.npoints].fill(PointState::default());
            slot
        } else {
            let slot = self.sessions.len() as u32;
            self.sessions.push(s);
            self.points
                .extend(std::iter::repeat_n(PointState::default(), self.npoints));
            slot
        };
        // The index hashes again (from the keys) only if it rehashes in place.
        let sessions = &self.sessions;
        self.index
            .insert_unique(hash, slot, |&i| sessions[i as usize].key.flow_hash());
        self.live += 1;
        self.touch(slot, now);
        Some(slot)
    }

    pub fn session(&self, slot: u32) -> &Session {
        &self.sessions[slot as usize]
    }

    pub fn points(&self, slot: u32) -> &[PointState] {
        let base = slot as usize * self.npoints;
        &self.points[base..base + self.npoints]
    }

    /// The session and its per-point state, both mutable.
    pub fn get_mut(&mut self, slot: u32) -> (&mut Session, &mut [PointState]) {
        let base = slot as usize * self.npoints;
        (
            &mut self.sessions[slot as usize],
            &mut self.points[base..base + self.npoints],
        )
    }

    /// Marks activity. A session not on a timer wheel joins the idle wheel.
    #[inline]
    pub fn touch(&mut self, slot: u32, now: Timestamp) {
        let s = &mut self.sessions[slot as usize];
        s.activity = now;
        if s.list == TimerList::None {
            let due = now.0.saturating_add(self.idle.timeout);
            self.file(slot, TimerList::Idle, due);
        }
    }

    /// Moves a session that just closed to the linger wheel, as of `now`.
    pub fn start_linger(&mut self, slot: u32, now: Timestamp) {
        if self.sessions[slot as usize].list == TimerList::Linger {
            return;
        }
        self.unlink(slot);
        self.sessions[slot as usize].activity = now;
        let due = now.0.saturating_add(self.linger.timeout);
        self.file(slot, TimerList::Linger, due);
    }

    /// A closed session with no packet for the linger time at `now`.
    #[inline]
    pub fn expired_linger(&mut self, now: Timestamp) -> Option<u32> {
        if self.linger.nothing_due(now.0) {
            return None;
        }
        self.expired(TimerList::Linger, now)
    }

    /// An open session with no packet for the idle timeout at `now`.
    #[inline]
    pub fn expired_idle(&mut self, now: Timestamp) -> Option<u32> {
        if self.idle.nothing_due(now.0) {
            return None;
        }
        self.expired(TimerList::Idle, now)
    }

    fn wheel(&mut self, list: TimerList) -> &mut Wheel {
        match list {
            TimerList::Linger => &mut self.linger,
            _ => &mut self.idle,
        }
    }

    // Out of line: the worker asks both wheels after every packet, and the answer
    // is almost always "nothing" ([`Wheel::nothing_due`], inlined at the call); the
    // call itself, saving and restoring registers, was two thirds of this function's
    // 13M instructions in the 200k-packet callgrind replay.
    #[inline(never)]
    fn expired(&mut self, list: TimerList, now: Timestamp) -> Option<u32> {
        let now = now.0;
        loop {
            let w = self.wheel(list);
            let h = w.pending.head;
            if h != NIL {
                let timeout = w.timeout;
                self.unlink(h);
                let due = self.sessions[h as usize].activity.0.saturating_add(timeout);
                if due <= now {
                    return Some(h);
                }
                self.file(h, list, due);
                continue;
            }
            if w.cursor.saturating_add(w.width) > now {
                return None;
            }
            // Far behind (a gap in the capture): skip whole turns of the wheel; every
            // slot is still visited once before the cursor passes `now`.
            let turn = w.width * SLOTS as u64;
            if now - w.cursor >= 2 * turn {
                w.cursor += ((now - w.cursor) / turn - 1) * turn;
            }
            let idx = ((w.cursor / w.width) as usize) % SLOTS;
            w.pending = std::mem::replace(&mut w.slots[idx], ListHead::EMPTY);
            w.cursor += w.width;
            let mut n = w.pending.head;
            while n != NIL {
                let s = &mut self.sessions[n as usize];
                s.slot = PENDING;
                n = s.next;
            }
        }
    }

    /// Eviction policy when the table is full: the closed session closest to its
    /// linger expiry (its verdict is already decided), else the open session with
    /// the earliest idle expiry, which is the least recently active one. Sessions
    /// found filed too early (active since) are re-filed on the way; no packet
    /// arrives during the search, so it ends within one turn of the wheel.
    pub fn eviction_victim(&mut self) -> Option<u32> {
        if let Some(h) = self.earliest(TimerList::Linger) {
            return Some(h);
        }
        let mut refiled = 0;
        while let Some(h) = self.earliest(TimerList::Idle) {
            let due = self.sessions[h as usize]
                .activity
                .0
                .saturating_add(self.idle.timeout);
            let filed = self.sessions[h as usize].slot;
            if filed == self.idle.slot_of(due) || refiled > self.live {
                return Some(h);
            }
            self.unlink(h);
            self.file(h, TimerList::Idle, due);
            refiled += 1;
        }
        None
    }

    /// The head of the first non-empty slot from the cursor on.
    fn earliest(&self, list: TimerList) -> Option<u32> {
        self.earliest_from(list, &mut 0)
    }

    /// [`FlowTable::earliest`], starting `*from` slots past the cursor and leaving
    /// `*from` at the slot found: the slots before it were empty.
    fn earliest_from(&self, list: TimerList, from: &mut usize) -> Option<u32> {
        let w = match list {
            TimerList::Linger => &self.linger,
            _ => &self.idle,
        };
        if w.pending.head != NIL {
            return Some(w.pending.head);
        }
        let start = (w.cursor / w.width) as usize;
        while *from < SLOTS {
            let h = w.slots[(start + *from) % SLOTS].head;
            if h != NIL {
                return Some(h);
            }
            *from += 1;
        }
        None
    }

    /// Any live session (closed ones first), for draining the table at the end.
    pub fn any(&self) -> Option<u32> {
        self.earliest(TimerList::Linger)
            .or_else(|| self.earliest(TimerList::Idle))
    }

    /// What [`FlowTable::any`] returns, resuming the search where the previous call
    /// with the same `d` found a session: draining a table of N sessions costs one
    /// pass over the wheels, not N (a scan of up to 2 x [`SLOTS`] heads per session
    /// was 11 % of the worker's instructions in the 200k-packet callgrind replay,
    /// which ends with 8,512 sessions open). Exact while nothing is filed behind
    /// the resumed positions, which removing sessions never does; when this finds
    /// nothing, it looks once more from the start, so it never misses a session.
    pub fn any_resumed(&self, d: &mut Drain) -> Option<u32> {
        self.earliest_from(TimerList::Linger, &mut d.linger)
            .or_else(|| self.earliest_from(TimerList::Idle, &mut d.idle))
            .or_else(|| {
                *d = Drain::default();
                self.any()
            })
    }

    /// Frees a slot: unlinks it from its timer wheel and from the index.
    pub fn remove(&mut self, slot: u32) {
        self.unlink(slot);
        // Not kept in the session (8 bytes each): hashed again, once per session.
        let key = self.sessions[slot as usize].key;
        let hash = key.flow_hash();
        if let Ok(entry) = self
            .index
            .find_entry(hash, |&i| i == slot && self.sessions[i as usize].key == key)
        {
            entry.remove();
        }
        self.free.push(slot);
        self.live -= 1;
    }

    /// Files a session under the wheel slot of its expiry time `due`.
    fn file(&mut self, slot: u32, list: TimerList, due: u64) {
        let w = self.wheel(list);
        let idx = w.slot_of(due);
        let head = &mut w.slots[idx as usize];
        let old_tail = head.tail;
        head.tail = slot;
        if old_tail == NIL {
            head.head = slot;
        } else {
            self.sessions[old_tail as usize].next = slot;
        }
        let s = &mut self.sessions[slot as usize];
        s.prev = old_tail;
        s.next = NIL;
        s.list = list;
        s.slot = idx;
    }

    fn unlink(&mut self, slot: u32) {
        let (prev, next, list, idx) = {
            let s = &self.sessions[slot as usize];
            (s.prev, s.next, s.list, s.slot)
        };
        if list == TimerList::None {
            return;
        }
        let w = self.wheel(list);
        let head = if idx == PENDING {
            &mut w.pending
        } else {
            &mut w.slots[idx as usize]
        };
        if prev == NIL {
            head.head = next;
        }
        if next == NIL {
            head.tail = prev;
        }
        if prev != NIL {
            self.sessions[prev as usize].next = next;
        }
        if next != NIL {
            self.sessions[next as usize].prev = prev;
        }
        let s = &mut self.sessions[slot as usize];
        s.prev = NIL;
        s.next = NIL;
        s.list = TimerList::None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Endpoint;

    fn sess(port: u16) -> Session {
        let (key, _) = FlowKey::from_packet(
            Endpoint::v4([198, 18, 0, 1], port),
            Endpoint::v4([198, 18, 1, 1], 443),
        );
        Session {
            key,
            ..Session::default()
        }
    }

    /// Inserts `sess(port)` as of `ts`.
    fn put(t: &mut FlowTable, port: u16, ts: Timestamp) -> Option<u32> {
        let s = sess(port);
        t.insert(s, s.key.flow_hash(), ts)
    }

    const S: u64 = 1_000_000_000;

    fn table(cap: usize) -> FlowTable {
        FlowTable::new(cap, 2, Nanos(128 * S), Nanos(128 * S / 64))
    }

    #[test]
    fn test_insert_find_remove_reuse() {
        let mut t = table(2);
        let a = put(&mut t, 1, Timestamp(1)).unwrap();
        let b = put(&mut t, 2, Timestamp(2)).unwrap();
        assert!(put(&mut t, 3, Timestamp(3)).is_none(), "full");
        assert_eq!(t.find(sess(1).key.flow_hash(), &sess(1).key), Some(a));
        assert_eq!(t.find(sess(3).key.flow_hash(), &sess(3).key), None);
        t.get_mut(a).1[1].snaplen_cut = 7;
        t.remove(a);
        assert_eq!(t.find(sess(1).key.flow_hash(), &sess(1).key), None);
        let c = put(&mut t, 3, Timestamp(4)).unwrap();
        assert_eq!(c, a, "slot reused");
        assert_eq!(t.points(c)[1].snaplen_cut, 0, "point state reset on reuse");
        assert_eq!(t.find(sess(2).key.flow_hash(), &sess(2).key), Some(b));
        assert_eq!(t.len(), 2);
    }

    /// Expiry follows the last activity, and is at most two slot widths late.
    #[test]
    fn test_idle_expiry_follows_activity() {
        let mut t = table(8);
        let a = put(&mut t, 1, Timestamp(10 * S)).unwrap();
        let b = put(&mut t, 2, Timestamp(20 * S)).unwrap();
        t.touch(a, Timestamp(30 * S));
        let width = t.idle.width;
        assert_eq!(
            t.expired_idle(Timestamp(147 * S)),
            None,
            "nothing before 148 s"
        );
        let mut at = 148 * S;
        while t.expired_idle(Timestamp(at)).is_none() {
            at += width / 4;
        }
        assert!(
            at <= 148 * S + 2 * width,
            "b expired {} ns late",
            at - 148 * S
        );
        t.remove(b);
        assert_eq!(
            t.expired_idle(Timestamp(157 * S)),
            None,
            "a was active at 30 s"
        );
        let mut at = 158 * S;
        let got = loop {
            if let Some(s) = t.expired_idle(Timestamp(at)) {
                break s;
            }
            at += width / 4;
        };
        assert_eq!(got, a);
        assert!(at <= 158 * S + 2 * width);
    }

    /// A long gap in capture time: every session still expires, once.
    #[test]
    fn test_expiry_after_a_long_gap() {
        let mut t = table(64);
        for p in 0..50 {
            let s = put(&mut t, p, Timestamp((p as u64) * S)).unwrap();
            t.touch(s, Timestamp((p as u64 + 1) * S));
        }
        let mut seen = std::collections::HashSet::new();
        while let Some(s) = t.expired_idle(Timestamp(1_000_000 * S)) {
            assert!(seen.insert(s), "expired twice");
            t.remove(s);
        }
        assert_eq!(seen.len(), 50);
        assert!(t.is_empty());
    }

    #[test]
    fn test_linger_and_eviction_order() {
        let mut t = table(8);
        let a = put(&mut t, 1, Timestamp(10 * S)).unwrap();
        let b = put(&mut t, 2, Timestamp(20 * S)).unwrap();
        let c = put(&mut t, 3, Timestamp(30 * S)).unwrap();
        t.touch(a, Timestamp(40 * S));
        assert_eq!(
            t.eviction_victim(),
            Some(b),
            "least recently active (a was touched at 40 s)"
        );
        t.start_linger(c, Timestamp(45 * S));
        assert_eq!(t.eviction_victim(), Some(c), "closed sessions go first");
        t.touch(c, Timestamp(46 * S));
        assert_eq!(
            t.expired_linger(Timestamp(47 * S)),
            None,
            "linger counts from the last packet"
        );
        assert_eq!(t.expired_linger(Timestamp(49 * S)), Some(c));
        t.remove(c);
        assert_eq!(t.any(), Some(b));
    }
}

#[cfg(test)]
mod drain_tests {
    use super::*;
    use crate::flow::Endpoint;

    const S: u64 = 1_000_000_000;

    /// A table with sessions spread over both wheels and many slots, some
    /// expired into the pending lists.
    fn filled() -> FlowTable {
        let mut t = FlowTable::new(400, 1, Nanos(128 * S), Nanos(2 * S));
        for i in 0..300u16 {
            let (key, _) = FlowKey::from_packet(
                Endpoint::v4([198, 18, 0, 1], 1024 + i),
                Endpoint::v4([198, 18, 1, 1], 443),
            );
            let s = Session {
                key,
                ..Session::default()
            };
            let at = Timestamp(u64::from(i) * S / 3);
            let slot = t.insert(s, key.flow_hash(), at).unwrap();
            if i % 3 == 0 {
                t.start_linger(slot, at);
            }
        }
        // Move the linger wheel on: the expired sessions are judged (removed), and
        // sessions of the slot it stopped in wait in its pending list.
        while let Some(s) = t.expired_linger(Timestamp(20 * S)) {
            t.remove(s);
        }
        t
    }

    #[test]
    fn resumed_drain_takes_the_order_of_repeated_any() {
        let mut a = filled();
        let mut want = Vec::new();
        while let Some(s) = a.any() {
            want.push(s);
            a.remove(s);
        }
        let mut b = filled();
        let mut got = Vec::new();
        let mut d = Drain::default();
        while let Some(s) = b.any_resumed(&mut d) {
            got.push(s);
            b.remove(s);
        }
        assert!(want.len() > 250, "{}", want.len());
        assert_eq!(got, want);
        assert!(b.is_empty());
    }

    #[test]
    fn resumed_drain_finds_a_session_filed_behind_it() {
        let mut t = filled();
        let mut d = Drain::default();
        let first = t.any_resumed(&mut d).unwrap();
        t.remove(first);
        // Drain everything but one, then file a new session: still found.
        while t.len() > 1 {
            let s = t.any_resumed(&mut d).unwrap();
            t.remove(s);
        }
        let (key, _) = FlowKey::from_packet(
            Endpoint::v4([198, 18, 9, 9], 4000),
            Endpoint::v4([198, 18, 1, 1], 443),
        );
        let fresh = t
            .insert(
                Session {
                    key,
                    ..Session::default()
                },
                key.flow_hash(),
                Timestamp(0),
            )
            .unwrap();
        let mut seen = Vec::new();
        while let Some(s) = t.any_resumed(&mut d) {
            seen.push(s);
            t.remove(s);
        }
        assert!(seen.contains(&fresh), "{seen:?}");
        assert!(t.is_empty());
    }
}
