//! Capture time. Every timestamp in the engine comes from the capture (the pcap record
//! or the NIC), in nanoseconds since the Unix epoch; the engine never reads a clock.

use std::fmt;

/// A capture timestamp: nanoseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

/// A capture timestamp that may not have been set: 8 bytes where an
/// `Option<Timestamp>` takes 16 (it is kept per direction of every session). The
/// last nanosecond of 2554 (`u64::MAX`) stands for "none"; a capture that claims
/// that time has it read as unset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MaybeTimestamp(u64);

impl Default for MaybeTimestamp {
    fn default() -> Self {
        MaybeTimestamp::NONE
    }
}

impl MaybeTimestamp {
    pub const NONE: MaybeTimestamp = MaybeTimestamp(u64::MAX);

    #[inline]
    pub fn get(self) -> Option<Timestamp> {
        (self.0 != u64::MAX).then_some(Timestamp(self.0))
    }

    /// Sets it to `ts` unless it is set already.
    #[inline]
    pub fn get_or_insert(&mut self, ts: Timestamp) {
        if self.0 == u64::MAX {
            self.0 = ts.0;
        }
    }
}

/// A span of capture time, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanos(pub u64);

impl Nanos {
    pub const fn from_secs(s: u64) -> Self {
        Nanos(s.saturating_mul(1_000_000_000))
    }
    pub const fn from_millis(ms: u64) -> Self {
        Nanos(ms.saturating_mul(1_000_000))
    }
}

impl Timestamp {
    pub const ZERO: Timestamp = Timestamp(0);

    pub fn from_secs_nanos(secs: u64, nanos: u64) -> Self {
        Timestamp(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
    }
    pub fn saturating_add(self, d: Nanos) -> Self {
        Timestamp(self.0.saturating_add(d.0))
    }
    pub fn saturating_sub(self, other: Timestamp) -> Nanos {
        Nanos(self.0.saturating_sub(other.0))
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard
/// Hinnant's `civil_from_days`, <https://howardhinnant.github.io/date_algorithms.html>).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097) as u32;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = i64::from(yoe) + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

thread_local! {
    /// The minute last written by [`Timestamp::rfc3339`] on this thread and its
    /// text up to the seconds, `2026-11-22T03:54:` (`u64::MAX`: none yet).
    static LAST_MINUTE: std::cell::Cell<(u64, [u8; 17])> =
        const { std::cell::Cell::new((u64::MAX, [0; 17])) };
}

/// Writes `v % 100` as two digits at `buf[at..at + 2]`.
#[inline(always)]
fn put2(buf: &mut [u8], at: usize, v: u32) {
    let i = (v % 100) as usize * 2;
    buf[at] = DIGITS2[i];
    buf[at + 1] = DIGITS2[i + 1];
}

/// `YYYY-MM-DDTHH:MM:` of the minute `minute` (minutes since the epoch).
fn minute_text(minute: u64) -> [u8; 17] {
    let (y, mo, d) = civil_from_days((minute / 1440) as i64);
    let mod_ = (minute % 1440) as u32;
    let y = y as u32;
    let mut buf = *b"0000-00-00T00:00:";
    put2(&mut buf, 0, y / 100);
    put2(&mut buf, 2, y);
    put2(&mut buf, 5, mo);
    put2(&mut buf, 8, d);
    put2(&mut buf, 11, mod_ / 60);
    put2(&mut buf, 14, mod_ % 60);
    buf
}

impl Timestamp {
    /// RFC 3339 in UTC with nanoseconds, e.g. `2026-11-22T03:54:00.123456789Z`,
    /// written two digits at a time from a table: the `time` crate's formatter cost
    /// most of the 6.7 us that writing one verdict record took (BENCHMARKS.md), and
    /// digit by digit this still took 220 instructions a call, 14 % of the
    /// exporter's (callgrind, 200k synth replay, ten timestamps a record). The text
    /// up to the minute is kept per thread and reused while the minute is the same
    /// (the timestamps of a record, and of records judged together, mostly are).
    pub fn rfc3339(&self) -> [u8; 30] {
        let secs = self.0 / 1_000_000_000;
        let nanos = (self.0 % 1_000_000_000) as u32;
        let minute = secs / 60;
        let head = LAST_MINUTE.with(|last| match last.get() {
            (m, head) if m == minute => head,
            _ => {
                let head = minute_text(minute);
                last.set((minute, head));
                head
            }
        });
        let mut buf = *b"0000-00-00T00:00:00.000000000Z";
        buf[..17].copy_from_slice(&head);
        put2(&mut buf, 17, (secs % 60) as u32);
        put2(&mut buf, 20, nanos / 10_000_000);
        put2(&mut buf, 22, nanos / 100_000);
        put2(&mut buf, 24, nanos / 1_000);
        put2(&mut buf, 26, nanos / 10);
        buf[28] = b'0' + (nanos % 10) as u8;
        buf
    }
}

/// "00" to "99", two bytes each.
pub(crate) const DIGITS2: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

impl fmt::Display for Timestamp {
    /// See [`Timestamp::rfc3339`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only ASCII digits and separators are written.
        f.write_str(std::str::from_utf8(&self.rfc3339()).map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Agrees with the `time` crate from 1970 to 2116 (a quarter of the u64 range).
    #[test]
    fn test_rfc3339_matches_time_crate() {
        const FMT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z"
        );
        let mut t: u64 = 7;
        while t < u64::MAX / 4 {
            let want = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t))
                .unwrap()
                .format(FMT)
                .unwrap();
            assert_eq!(Timestamp(t).to_string(), want);
            t = t.saturating_mul(3).saturating_add(86_399_999_999_991);
        }
    }

    /// Through the kept minute: runs of timestamps in one minute, across minute,
    /// day and year ends, back and forth, as the `time` crate writes them.
    #[test]
    fn test_rfc3339_kept_minute_matches_time_crate() {
        const FMT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z"
        );
        let want = |t: u64| {
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t))
                .unwrap()
                .format(FMT)
                .unwrap()
        };
        // 2023-12-31T23:58:30Z, then on through the minute and year ends.
        let start = 1_704_067_110u64 * 1_000_000_000;
        let mut t = start;
        for i in 0..2_000u64 {
            assert_eq!(Timestamp(t).to_string(), want(t));
            // Back to an earlier minute now and then.
            let back = start + (i % 7) * 13_000_000_000;
            assert_eq!(Timestamp(back).to_string(), want(back));
            t += 97_345_678 + i;
        }
        assert_eq!(Timestamp(0).to_string(), want(0));
        assert_eq!(Timestamp(59_999_999_999).to_string(), want(59_999_999_999));
        assert_eq!(Timestamp(60_000_000_000).to_string(), want(60_000_000_000));
    }

    #[test]
    fn test_rfc3339_nanoseconds() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            Timestamp::from_secs_nanos(1_700_000_000, 123_456_789).to_string(),
            "2023-11-14T22:13:20.123456789Z"
        );
    }
}
