//! The per-worker flow table: a bounded slab of sessions, a hash index over them, and
//! the timers that end them.
//!
//! Memory is bounded by `capacity`: slots are reserved up front and never grow; when
//! all are taken, the caller evicts (see [`FlowTable::eviction_victim`]).
//!
//! Timers. Every open session has the same idle timeout and every closed one the same
//! linger time, so each timer class is one FIFO list: a session joins the tail of its
//! list when it opens (or closes), stamped with the time it was queued. A packet only
//! writes the session's `activity` time: moving it to the tail on every packet would
//! touch two neighbouring sessions at random addresses, two cache misses per packet.
//! Expiry looks at the head: if the head was queued less than a timeout ago, nothing
//! has expired; if it was active since, it gets a second chance and goes back to the
//! tail; otherwise it expires. Each session is re-queued at most once per timeout, so
//! insert, touch, expire and cancel are O(1) amortised, with no tick granularity to
//! choose. A session is judged within one timeout of its exact expiry time, and only
//! ever later, never earlier. The lists are intrusive (indices inside [`Session`]) and
//! never allocate. Eviction takes the head of the same list, after the same second
//! chance (the CLOCK approximation of least recently active).

use hashbrown::HashTable;

use crate::flow::FlowKey;
use crate::session::{PointState, Session, TimerList, NIL};
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

/// Sessions of one worker, bounded, with idle and linger timers.
#[derive(Debug)]
pub struct FlowTable {
    index: HashTable<u32>,
    sessions: Vec<Session>,
    points: Vec<PointState>,
    npoints: usize,
    capacity: usize,
    free: Vec<u32>,
    idle: ListHead,
    linger: ListHead,
    live: usize,
}

impl FlowTable {
    /// A table for at most `capacity` sessions, each followed at `npoints` points.
    /// Reserves everything now: slots are filled lazily, without reallocation.
    pub fn new(capacity: usize, npoints: usize) -> FlowTable {
        let capacity = capacity.clamp(1, NIL as usize - 1);
        let npoints = npoints.max(1);
        FlowTable {
            index: HashTable::with_capacity(capacity),
            sessions: Vec::with_capacity(capacity),
            points: Vec::with_capacity(capacity * npoints),
            npoints,
            capacity,
            free: Vec::with_capacity(capacity),
            idle: ListHead::EMPTY,
            linger: ListHead::EMPTY,
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

    /// Inserts a session (on the idle list, as of `now`). `None` when full.
    pub fn insert(&mut self, mut s: Session, now: Timestamp) -> Option<u32> {
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
        let sessions = &self.sessions;
        self.index
            .insert_unique(s.hash, slot, |&i| sessions[i as usize].hash);
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

    /// Marks activity. A session not on a timer list joins the idle list.
    #[inline]
    pub fn touch(&mut self, slot: u32, now: Timestamp) {
        let s = &mut self.sessions[slot as usize];
        s.activity = now;
        if s.list == TimerList::None {
            self.push_tail(slot, TimerList::Idle, now);
        }
    }

    /// Moves a session that just closed to the linger list, as of `now`.
    pub fn start_linger(&mut self, slot: u32, now: Timestamp) {
        if self.sessions[slot as usize].list == TimerList::Linger {
            return;
        }
        self.unlink(slot);
        self.sessions[slot as usize].activity = now;
        self.push_tail(slot, TimerList::Linger, now);
    }

    /// The oldest closed session with no packet for `linger` at `now`.
    pub fn expired_linger(&mut self, now: Timestamp, linger: Nanos) -> Option<u32> {
        self.expired(TimerList::Linger, now, linger)
    }

    /// An open session with no packet for `idle` at `now`.
    pub fn expired_idle(&mut self, now: Timestamp, idle: Nanos) -> Option<u32> {
        self.expired(TimerList::Idle, now, idle)
    }

    fn expired(&mut self, list: TimerList, now: Timestamp, timeout: Nanos) -> Option<u32> {
        loop {
            let h = self.head(list).head;
            if h == NIL {
                return None;
            }
            let s = &self.sessions[h as usize];
            if s.queued.saturating_add(timeout) > now {
                return None;
            }
            if s.activity.saturating_add(timeout) <= now {
                return Some(h);
            }
            let activity = s.activity;
            self.requeue(h, list, activity);
        }
    }

    /// Eviction policy when the table is full: the oldest closed session (it only
    /// waits for its linger time; its verdict is already decided), else the least
    /// recently active open session, by second chance: heads active since they were
    /// queued go back to the tail. No packet arrives during the search, so it ends
    /// within one pass.
    pub fn eviction_victim(&mut self) -> Option<u32> {
        if self.linger.head != NIL {
            return Some(self.linger.head);
        }
        for _ in 0..=self.live {
            let h = self.idle.head;
            if h == NIL {
                return None;
            }
            let s = &self.sessions[h as usize];
            if s.activity <= s.queued || s.next == NIL {
                return Some(h);
            }
            let activity = s.activity;
            self.requeue(h, TimerList::Idle, activity);
        }
        Some(self.idle.head)
    }

    /// Any live session (closed ones first), for draining the table at the end.
    pub fn any(&self) -> Option<u32> {
        [self.linger.head, self.idle.head]
            .into_iter()
            .find(|&h| h != NIL)
    }

    /// Moves the head of `list` to its tail, queued as of `at` (or of the current
    /// tail's time, if later: the list stays ordered by queue time).
    fn requeue(&mut self, slot: u32, list: TimerList, at: Timestamp) {
        let tail = self.head(list).tail;
        let at = if tail == NIL {
            at
        } else {
            at.max(self.sessions[tail as usize].queued)
        };
        self.unlink(slot);
        self.push_tail(slot, list, at);
    }

    fn head(&self, list: TimerList) -> ListHead {
        match list {
            TimerList::Idle => self.idle,
            TimerList::Linger => self.linger,
            TimerList::None => ListHead::EMPTY,
        }
    }

    /// Frees a slot: unlinks it from its timer list and from the index.
    pub fn remove(&mut self, slot: u32) {
        self.unlink(slot);
        let s = &self.sessions[slot as usize];
        let (hash, key) = (s.hash, s.key);
        if let Ok(entry) = self
            .index
            .find_entry(hash, |&i| i == slot && self.sessions[i as usize].key == key)
        {
            entry.remove();
        }
        self.free.push(slot);
        self.live -= 1;
    }

    fn push_tail(&mut self, slot: u32, list: TimerList, at: Timestamp) {
        let head = match list {
            TimerList::Idle => &mut self.idle,
            TimerList::Linger => &mut self.linger,
            TimerList::None => return,
        };
        let old_tail = head.tail;
        head.tail = slot;
        if old_tail == NIL {
            head.head = slot;
        }
        if old_tail != NIL {
            self.sessions[old_tail as usize].next = slot;
        }
        let s = &mut self.sessions[slot as usize];
        s.prev = old_tail;
        s.next = NIL;
        s.list = list;
        s.queued = at;
    }

    fn unlink(&mut self, slot: u32) {
        let (prev, next, list) = {
            let s = &self.sessions[slot as usize];
            (s.prev, s.next, s.list)
        };
        let head = match list {
            TimerList::Idle => &mut self.idle,
            TimerList::Linger => &mut self.linger,
            TimerList::None => return,
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
            hash: key.flow_hash(),
            ..Session::default()
        }
    }

    #[test]
    fn test_insert_find_remove_reuse() {
        let mut t = FlowTable::new(2, 2);
        let a = t.insert(sess(1), Timestamp(1)).unwrap();
        let b = t.insert(sess(2), Timestamp(2)).unwrap();
        assert!(t.insert(sess(3), Timestamp(3)).is_none(), "full");
        assert_eq!(t.find(sess(1).hash, &sess(1).key), Some(a));
        assert_eq!(t.find(sess(3).hash, &sess(3).key), None);
        t.get_mut(a).1[1].snaplen_cut = 7;
        t.remove(a);
        assert_eq!(t.find(sess(1).hash, &sess(1).key), None);
        let c = t.insert(sess(3), Timestamp(4)).unwrap();
        assert_eq!(c, a, "slot reused");
        assert_eq!(t.points(c)[1].snaplen_cut, 0, "point state reset on reuse");
        assert_eq!(t.find(sess(2).hash, &sess(2).key), Some(b));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn test_idle_expiry_follows_activity() {
        let mut t = FlowTable::new(8, 1);
        let a = t.insert(sess(1), Timestamp(10)).unwrap();
        let b = t.insert(sess(2), Timestamp(20)).unwrap();
        t.touch(a, Timestamp(30));
        let idle = Nanos(100);
        assert_eq!(t.expired_idle(Timestamp(119), idle), None);
        assert_eq!(t.expired_idle(Timestamp(120), idle), Some(b));
        t.remove(b);
        assert_eq!(t.expired_idle(Timestamp(129), idle), None);
        assert_eq!(t.expired_idle(Timestamp(130), idle), Some(a));
    }

    #[test]
    fn test_linger_and_eviction_order() {
        let mut t = FlowTable::new(8, 1);
        let a = t.insert(sess(1), Timestamp(10)).unwrap();
        let b = t.insert(sess(2), Timestamp(20)).unwrap();
        assert_eq!(t.eviction_victim(), Some(a), "least recently active");
        t.start_linger(b, Timestamp(25));
        assert_eq!(t.eviction_victim(), Some(b), "closed sessions go first");
        assert_eq!(t.expired_linger(Timestamp(35), Nanos(10)), Some(b));
        t.touch(b, Timestamp(40));
        assert_eq!(
            t.expired_linger(Timestamp(49), Nanos(10)),
            None,
            "linger counts from the last packet"
        );
        assert_eq!(t.expired_linger(Timestamp(50), Nanos(10)), Some(b));
        assert_eq!(
            t.expired_idle(Timestamp(1000), Nanos(10)),
            Some(a),
            "closed ones leave the idle list"
        );
    }
}
