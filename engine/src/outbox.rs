//! A worker's output into its rings (see [`crate::pipeline`]): records on its record
//! ring, waiting for room (a verdict is never dropped, whatever the pipeline's
//! overflow policy); pairing notices on its notice ring, never waiting: a notice
//! that finds it full is counted, and if it told of a session opening, announced as
//! [`Notice::Lost`] once there is room again (until then the worker does not
//! publish its clock past that session's start).

use crate::pairing::Notice;
use crate::pipeline::Waiter;
use crate::time::Timestamp;
use crate::verdict::Record;
use crate::worker::Output;

/// A worker's output into its rings.
pub(crate) struct RingOutput<'a> {
    pub(crate) records: &'a mut rtrb::Producer<Record>,
    /// `None`: nobody takes notices.
    pub(crate) notices: Option<&'a mut rtrb::Producer<Notice>>,
    pub(crate) record_waits: &'a mut u64,
    pub(crate) notices_lost: &'a mut u64,
    /// [`Notice::Opened`] that found the ring full and are not announced yet: the
    /// earliest start among them, and how many.
    pub(crate) lost: Option<(Timestamp, u32)>,
    /// Stamp each record with the time it is pushed ([`Record::pushed_ns`]): one
    /// clock read (vDSO) per verdict, never per packet; only with `--metrics`.
    pub(crate) stamp: bool,
}

impl RingOutput<'_> {
    /// Announces the lost notices, if there is room now.
    pub(crate) fn flush_lost(&mut self) {
        if let (Some((since, count)), Some(tx)) = (self.lost, self.notices.as_mut()) {
            if tx.push(Notice::Lost { since, count }).is_ok() {
                self.lost = None;
            }
        }
    }
}

impl Output for RingOutput<'_> {
    fn record(&mut self, r: Record) {
        let mut r = r;
        if self.stamp {
            r.pushed_ns = crate::metrics::mono_ns();
        }
        let mut w = Waiter::default();
        loop {
            match self.records.push(r) {
                Ok(()) => return,
                Err(rtrb::PushError::Full(back)) => {
                    *self.record_waits += 1;
                    r = back;
                    w.wait();
                }
            }
        }
    }

    fn notice(&mut self, n: &Notice) -> bool {
        let Some(tx) = self.notices.as_mut() else {
            return false;
        };
        if self.lost.is_none() && tx.push(*n).is_ok() {
            return true;
        }
        self.flush_lost();
        if self.lost.is_none() {
            if let Some(tx) = self.notices.as_mut() {
                if tx.push(*n).is_ok() {
                    return true;
                }
            }
        }
        *self.notices_lost += 1;
        if let Notice::Opened(o) = n {
            let (since, count) = self.lost.unwrap_or((o.first, 0));
            self.lost = Some((since.min(o.first), count.saturating_add(1)));
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Endpoint;
    use crate::session::PointId;

    /// A notice that finds the ring full is counted and, if it opened a session,
    /// announced as lost once there is room again.
    #[test]
    fn test_notice_ring_full_announces_lost_sessions() {
        use crate::pairing::{Opened, Sni};
        let opened = |ms: u64| {
            Notice::Opened(Opened {
                session_id: ms,
                point: PointId(0),
                server: Endpoint::v4([198, 18, 6, 2], 443),
                sni: Sni::NotYet,
                first: Timestamp(ms),
            })
        };
        let (mut rec_tx, _rec_rx) = rtrb::RingBuffer::<Record>::new(1);
        let (mut tx, mut rx) = rtrb::RingBuffer::<Notice>::new(1);
        let (mut waits, mut lost) = (0, 0);
        let mut out = RingOutput {
            records: &mut rec_tx,
            notices: Some(&mut tx),
            record_waits: &mut waits,
            notices_lost: &mut lost,
            stamp: false,
            lost: None,
        };
        assert!(out.notice(&opened(5)));
        assert!(!out.notice(&opened(3)));
        assert!(!out.notice(&opened(7)));
        assert_eq!(out.lost, Some((Timestamp(3), 2)));
        assert_eq!(rx.pop(), Ok(opened(5)));
        // An update is not an opening: lost, but nothing to announce for it.
        out.flush_lost();
        assert!(!out.notice(&Notice::Sni {
            session_id: 3,
            sni: Sni::None
        }));
        assert_eq!(out.lost, None);
        assert_eq!(
            rx.pop(),
            Ok(Notice::Lost {
                since: Timestamp(3),
                count: 2
            })
        );
        assert_eq!(lost, 3);
    }
}
