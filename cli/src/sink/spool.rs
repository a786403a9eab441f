//! One sink's on-disk spool: the verdict lines its collector has not taken yet, in
//! order, in append-only segment files that outlive the process.
//!
//! A spool is a directory of segments named by a 20-digit sequence number
//! (`00000001000000000000.seg`); the lowest number is the oldest. Each segment
//! starts with the 8-byte magic `TWSPOOL1`, then records: a 4-byte little-endian
//! length, a 4-byte little-endian CRC-32 (IEEE) of the line, the line (one verdict,
//! its newline included). New lines go to the last segment (the open one) until it
//! reaches [`SEGMENT_BYTES`]; the delivery thread takes the first segment, delivers
//! its lines and then deletes it, so a line is on disk until its collector has it (a
//! process killed during that delivery delivers the segment again on the next run:
//! at least once). Lines that must go back in front of the spool (those a collector
//! failed to take) are written to a new segment numbered below the first.
//!
//! Durability: every record is handed to the kernel with one `write` as it is
//! spooled, so a killed process loses nothing; segments of lines put back in front
//! are `fsync`ed when written, the others at exit, never on the exporter's thread:
//! a power loss may cost what was spooled since the run began. A damaged record (a torn write, a bad
//! checksum) ends the reading of its segment; what follows it there is counted as
//! corrupt and skipped.
//!
//! The spool never grows past its bound (`--spool-max`): a line that does not fit
//! is dropped and counted. A lock file (`flock`) keeps two processes out of one spool.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The bytes every segment starts with.
pub const MAGIC: &[u8; 8] = b"TWSPOOL1";
/// A segment is sealed (and a new one opened) once it holds this many bytes.
pub const SEGMENT_BYTES: u64 = 4 << 20;
/// The sequence number of a fresh spool's first segment: room below it for lines
/// put back in front.
const FIRST_SEQ: u64 = 1_000_000_000_000;
/// Bytes a record takes beyond its line.
pub const RECORD_OVERHEAD: u64 = 8;

/// A sink's spool directory.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    /// Segment sequence numbers on disk, oldest first, with their record counts and
    /// sizes (the open one last).
    segments: std::collections::VecDeque<Segment>,
    /// The open segment's file (appended to), if any.
    open: Option<File>,
    /// Bytes of all segment files.
    pub bytes: u64,
    /// Records in all segments.
    pub lines: u64,
    pub max_bytes: u64,
    /// Records skipped as damaged when read.
    pub corrupt: u64,
    /// The next sequence numbers at the back and at the front (below every segment
    /// on disk, taken ones included).
    next_back: u64,
    next_front: u64,
    /// Sealed segments not fsynced yet.
    unsynced: Vec<u64>,
    _lock: File,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    seq: u64,
    lines: u64,
    bytes: u64,
}

/// A segment taken out of the spool for delivery: its lines, and its file (deleted
/// once they are delivered).
#[derive(Debug)]
pub struct Taken {
    pub path: PathBuf,
    pub lines: Vec<Vec<u8>>,
    pub bytes: u64,
}

fn seg_name(seq: u64) -> String {
    format!("{seq:020}.seg")
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, counting what a previous run left.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .with_context(|| format!("cannot create {}", dir.join("lock").display()))?;
        // SAFETY: flock takes the descriptor of a file this function owns and flags.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            bail!(
                "spool {} is in use by another tapwatch process ({})",
                dir.display(),
                io::Error::last_os_error()
            );
        }
        let mut seqs = Vec::new();
        for e in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let e = e?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if let Some(seq) = name
                .strip_suffix(".seg")
                .and_then(|s| s.parse::<u64>().ok())
            {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            segments: Default::default(),
            open: None,
            bytes: 0,
            lines: 0,
            max_bytes,
            corrupt: 0,
            next_back: seqs.last().map_or(FIRST_SEQ, |s| s + 1),
            next_front: seqs.first().map_or(FIRST_SEQ - 1, |s| s - 1),
            unsynced: Vec::new(),
            _lock: lock,
        };
        for seq in seqs {
            let path = spool.path(seq);
            let (lines, corrupt) = read_segment(&path)?;
            let bytes = fs::metadata(&path)?.len();
            spool.corrupt += corrupt;
            spool.bytes += bytes;
            spool.lines += lines.len() as u64;
            spool.segments.push_back(Segment {
                seq,
                lines: lines.len() as u64,
                bytes,
            });
        }
        Ok(spool)
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(seg_name(seq))
    }

    /// Appends one line at the back; `false` (and nothing written) if it does not
    /// fit under the bound.
    #[cfg(test)]
    pub fn push(&mut self, line: &[u8]) -> io::Result<bool> {
        Ok(self.push_many([line])?.0 == 1)
    }

    /// Appends lines at the back, with one `write` per segment touched; returns how
    /// many were kept and how many dropped (those that did not fit under the bound).
    pub fn push_many<'a>(
        &mut self,
        lines: impl IntoIterator<Item = &'a [u8]>,
    ) -> io::Result<(u64, u64)> {
        let (mut kept, mut dropped) = (0u64, 0u64);
        let mut buf = Vec::new();
        let mut n = 0u64;
        for line in lines {
            let need = line.len() as u64 + RECORD_OVERHEAD;
            if self.bytes + buf.len() as u64 + need + MAGIC.len() as u64 > self.max_bytes {
                dropped += 1;
                continue;
            }
            // The back segment may be sealed or one a previous run left: never
            // appended to again.
            let full = self
                .segments
                .back()
                .is_none_or(|s| s.bytes + buf.len() as u64 >= SEGMENT_BYTES);
            if self.open.is_none() || full {
                self.write_pending(&mut buf, &mut n)?;
                self.new_segment()?;
            }
            frame(&mut buf, line);
            n += 1;
            kept += 1;
        }
        self.write_pending(&mut buf, &mut n)?;
        Ok((kept, dropped))
    }

    /// Writes `buf` (`n` framed records) to the open segment.
    fn write_pending(&mut self, buf: &mut Vec<u8>, n: &mut u64) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        if let Some(f) = self.open.as_mut() {
            f.write_all(buf)?;
        }
        if let Some(s) = self.segments.back_mut() {
            s.lines += *n;
            s.bytes += buf.len() as u64;
        }
        self.bytes += buf.len() as u64;
        self.lines += *n;
        buf.clear();
        *n = 0;
        Ok(())
    }

    /// Seals the open segment and opens a new one at the back.
    fn new_segment(&mut self) -> io::Result<()> {
        self.seal()?;
        let seq = self.next_back;
        self.next_back += 1;
        let mut f = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(self.path(seq))?;
        f.write_all(MAGIC)?;
        self.open = Some(f);
        self.segments.push_back(Segment {
            seq,
            lines: 0,
            bytes: MAGIC.len() as u64,
        });
        self.bytes += MAGIC.len() as u64;
        Ok(())
    }

    /// Writes `lines` as a new first segment (they go out before everything spooled);
    /// returns how many did not fit under the bound (dropped, the newest first).
    /// `reclaim`: bytes counted in [`Spool::bytes`] that are about to go (a taken
    /// segment whose lines these are).
    pub fn push_front(&mut self, lines: &[Vec<u8>], reclaim: u64) -> io::Result<u64> {
        if lines.is_empty() {
            return Ok(0);
        }
        let room = self
            .max_bytes
            .saturating_sub((self.bytes - reclaim.min(self.bytes)) + MAGIC.len() as u64);
        let mut used = 0u64;
        let mut keep = 0;
        for l in lines {
            let need = l.len() as u64 + RECORD_OVERHEAD;
            if used + need > room {
                break;
            }
            used += need;
            keep += 1;
        }
        let dropped = (lines.len() - keep) as u64;
        if keep == 0 {
            return Ok(dropped);
        }
        let seq = self.next_front;
        self.next_front -= 1;
        let mut buf = Vec::with_capacity(used as usize + MAGIC.len());
        buf.extend_from_slice(MAGIC);
        for l in &lines[..keep] {
            frame(&mut buf, l);
        }
        let path = self.path(seq);
        let mut f = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)?;
        f.write_all(&buf)?;
        f.sync_all()?;
        self.segments.push_front(Segment {
            seq,
            lines: keep as u64,
            bytes: buf.len() as u64,
        });
        self.bytes += buf.len() as u64;
        self.lines += keep as u64;
        Ok(dropped)
    }

    /// Closes the open segment: the next push starts a new one. Not fsynced here
    /// (this runs on the exporter's thread, and an fsync per 4 MiB costs the packet
    /// path tens of milliseconds each): [`Spool::sync`] does it at exit.
    pub fn seal(&mut self) -> io::Result<()> {
        if let Some(f) = self.open.take() {
            if let Some(s) = self.segments.back() {
                self.unsynced.push(s.seq);
            }
            drop(f);
        }
        Ok(())
    }

    /// Seals the open segment and fsyncs every segment written since the last
    /// call (at exit).
    pub fn sync(&mut self) -> io::Result<()> {
        if let Some(f) = self.open.take() {
            f.sync_all()?;
        }
        for seq in std::mem::take(&mut self.unsynced) {
            // Delivered and deleted meanwhile: nothing to sync.
            if let Ok(f) = File::open(self.path(seq)) {
                f.sync_all()?;
            }
        }
        if let Ok(d) = File::open(&self.dir) {
            d.sync_all()?;
        }
        Ok(())
    }

    /// Takes the first segment out for delivery (sealing it if it is the open
    /// one). Its file stays on disk, and in [`Spool::bytes`], until [`Spool::done`].
    pub fn take(&mut self) -> io::Result<Option<Taken>> {
        let Some(seg) = self.segments.pop_front() else {
            return Ok(None);
        };
        if self.segments.is_empty() {
            self.seal()?;
        }
        let path = self.path(seg.seq);
        let (lines, corrupt) = read_segment(&path)
            .map_err(|e| io::Error::other(format!("{}: {e:#}", path.display())))?;
        self.corrupt += corrupt;
        self.lines = self.lines.saturating_sub(seg.lines);
        Ok(Some(Taken {
            path,
            lines,
            bytes: seg.bytes,
        }))
    }

    /// A taken segment is delivered (or put back in front): its file goes.
    pub fn done(&mut self, t: &Taken) -> io::Result<()> {
        fs::remove_file(&t.path)?;
        self.bytes = self.bytes.saturating_sub(t.bytes);
        Ok(())
    }
}

/// Appends one record (length, CRC-32, line) to `buf`.
fn frame(buf: &mut Vec<u8>, line: &[u8]) {
    buf.extend_from_slice(&(line.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc32(line).to_le_bytes());
    buf.extend_from_slice(line);
}

/// The records of a segment file, and how many were damaged (a torn tail counts one).
fn read_segment(path: &Path) -> Result<(Vec<Vec<u8>>, u64)> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .with_context(|| format!("cannot read spool segment {}", path.display()))?;
    Ok(parse_segment(&data))
}

fn parse_segment(data: &[u8]) -> (Vec<Vec<u8>>, u64) {
    let mut lines = Vec::new();
    if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
        return (lines, u64::from(!data.is_empty()));
    }
    let mut pos = MAGIC.len();
    while pos < data.len() {
        let Some(head) = data.get(pos..pos + 8) else {
            return (lines, 1);
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let sum = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let Some(line) = data.get(pos + 8..pos + 8 + len) else {
            return (lines, 1);
        };
        if crc32(line) != sum {
            return (lines, 1);
        }
        lines.push(line.to_vec());
        pos += 8 + len;
    }
    (lines, 0)
}

/// CRC-32 (IEEE 802.3, as zlib's `crc32`): `crc32fast` (a bytewise table cost the
/// delivery thread a sixth of a core while spooling).
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tw-spool-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn test_crc32_check_value() {
        // The CRC-32 check value of "123456789".
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn test_spool_order_survives_reopen() {
        let d = dir("order");
        {
            let mut s = Spool::open(&d, 1 << 20).unwrap();
            for i in 0..10 {
                assert!(s.push(format!("line {i}\n").as_bytes()).unwrap());
            }
            s.push_front(&[b"first\n".to_vec()], 0).unwrap();
            assert_eq!(s.lines, 11);
        }
        let mut s = Spool::open(&d, 1 << 20).unwrap();
        assert_eq!(s.lines, 11);
        let mut all = Vec::new();
        while let Some(t) = s.take().unwrap() {
            s.done(&t).unwrap();
            all.extend(t.lines);
        }
        assert_eq!(all[0], b"first\n");
        assert_eq!(all[10], b"line 9\n");
        assert_eq!(all.len(), 11);
        assert_eq!(s.bytes, 0);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn test_spool_bound_drops() {
        let d = dir("bound");
        let mut s = Spool::open(&d, 100).unwrap();
        let line = [b'x'; 30];
        let kept = (0..10).filter(|_| s.push(&line).unwrap()).count();
        // 8 (magic) + n * 38 <= 100.
        assert_eq!(kept, 2);
        assert!(s.bytes <= 100);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn test_spool_torn_tail_is_counted() {
        let mut data = MAGIC.to_vec();
        frame(&mut data, b"a\n");
        frame(&mut data, b"bb\n");
        let (lines, bad) = parse_segment(&data[..data.len() - 1]);
        assert_eq!((lines.len(), bad), (1, 1));
        data[MAGIC.len() + 8] ^= 1;
        let (lines, bad) = parse_segment(&data);
        assert_eq!((lines.len(), bad), (0, 1));
    }

    #[test]
    fn test_spool_locked_twice() {
        let d = dir("lock");
        let _a = Spool::open(&d, 1 << 20).unwrap();
        assert!(Spool::open(&d, 1 << 20).is_err());
        fs::remove_dir_all(&d).unwrap();
    }
}
