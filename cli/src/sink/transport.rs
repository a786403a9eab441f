//! The transports behind each sink kind: how a batch of verdict lines reaches a
//! collector, and what "delivered" can mean there.
//!
//! - stdout, file: delivered once written to the kernel (the file is not fsynced).
//! - tcp (JSON lines), syslog over TCP (RFC 5424, octet-counting framing, RFC 6587
//!   3.4.1): delivered once written to the socket. TCP gives no application
//!   acknowledgement, so lines the collector's kernel accepted but its process never
//!   read are lost when it dies; to cover them, the lines still in the socket's send
//!   queue (SIOCOUTQ) and `resend` bytes of lines before them are sent again after a
//!   reconnect (at least once: they may arrive twice).
//! - syslog over UDP and `syslog:` (a local datagram socket such as /dev/log): one
//!   datagram per line; a collector that is down is noticed only when the kernel
//!   says so (ECONNREFUSED after an ICMP port unreachable, ENOENT, ECONNREFUSED on a
//!   socket without a reader), so a datagram or two may vanish when an outage
//!   begins; reconnecting over UDP probes with an empty datagram. A line over the
//!   datagram limit is dropped and counted (`oversized`).
//! - redis: every command's reply is read, so a line is delivered when Redis has
//!   answered for it; commands without a reply when the connection broke are sent
//!   again (a Redis that executed one and died before answering holds it twice).
//!
//! Redis is spoken with a minimal RESP2 client (the four commands, their replies)
//! over a blocking socket: the `redis` crate would bring a dependency tree and
//! connection management of its own for what is ~80 lines here, and a delivery
//! thread needs neither an async runtime nor a pool.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use super::{Kind, RedisMode};

/// How long a connect, a write or a Redis reply may take before the collector is
/// taken for down.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Redis commands sent before their replies are read.
const REDIS_PIPELINE: usize = 256;
/// The largest UDP payload over IPv4 (65,535 - 8 - 20).
const UDP_MAX: usize = 65_507;

/// What a transport counted during its last `send`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub resent: u64,
    pub oversized: u64,
}

pub trait Transport: Send {
    /// Sends `lines` (each ends with a newline) in order. `Err((n, e))`: the first
    /// `n` were delivered, the rest were not.
    fn send(&mut self, lines: &[Vec<u8>]) -> Result<(), (usize, io::Error)>;
    /// (Re)connects if not connected: a probe while the collector is down.
    fn connect(&mut self) -> io::Result<()>;
    /// Counters since the last call.
    fn take_stats(&mut self) -> Stats {
        Stats::default()
    }
    /// An error after which retrying makes no sense (stdout closed).
    fn is_permanent(&self, _e: &io::Error) -> bool {
        false
    }
}

pub fn open(kind: &Kind) -> Result<Box<dyn Transport>> {
    Ok(match kind {
        Kind::Stdout => Box::new(Stdout),
        Kind::File {
            path,
            rotate_size,
            rotate_interval,
        } => Box::new(FileSink::open(
            path.clone(),
            *rotate_size,
            *rotate_interval,
        )?),
        Kind::Tcp { addr, resend } => Box::new(Stream::new(addr.clone(), None, *resend)),
        Kind::Syslog {
            addr,
            tcp: true,
            facility,
            resend,
        } => Box::new(Stream::new(
            addr.clone(),
            Some(Syslog::new(*facility)),
            *resend,
        )),
        Kind::Syslog {
            addr,
            tcp: false,
            facility,
            ..
        } => Box::new(Datagram {
            to: DatagramTo::Udp(addr.clone()),
            sock: None,
            syslog: Syslog::new(*facility),
            stats: Stats::default(),
        }),
        Kind::SyslogLocal { path, facility } => Box::new(Datagram {
            to: DatagramTo::Unix(path.clone()),
            sock: None,
            syslog: Syslog::new(*facility),
            stats: Stats::default(),
        }),
        Kind::Redis {
            addr,
            key,
            mode,
            maxlen,
        } => Box::new(Redis {
            addr: addr.clone(),
            key: key.clone(),
            mode: *mode,
            maxlen: *maxlen,
            conn: None,
        }),
    })
}

fn connect_tcp(addr: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{addr}: no address"));
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, IO_TIMEOUT) {
            Ok(s) => {
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                s.set_read_timeout(Some(IO_TIMEOUT))?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The line without its newline.
fn body(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

struct Stdout;

impl Transport for Stdout {
    fn send(&mut self, lines: &[Vec<u8>]) -> Result<(), (usize, io::Error)> {
        let mut out = io::stdout().lock();
        for (i, l) in lines.iter().enumerate() {
            out.write_all(l).map_err(|e| (i, e))?;
        }
        out.flush().map_err(|e| (0, e))
    }
    fn connect(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn is_permanent(&self, e: &io::Error) -> bool {
        e.kind() == io::ErrorKind::BrokenPipe
    }
}

/// JSON lines appended to a file, rotated by size and by time: the file is
/// renamed `PATH.YYYYMMDDTHHMMSSZ` (`-0001`, `-0002`, ... added if taken, so the
/// names sort in order) and a new `PATH` opened.
struct FileSink {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    size: u64,
    opened: Instant,
    rotate_size: Option<u64>,
    rotate_interval: Option<Duration>,
}

impl FileSink {
    fn open(
        path: PathBuf,
        rotate_size: Option<u64>,
        rotate_interval: Option<Duration>,
    ) -> Result<FileSink> {
        let mut f = FileSink {
            path,
            out: None,
            size: 0,
            opened: Instant::now(),
            rotate_size,
            rotate_interval,
        };
        f.connect()
            .with_context(|| format!("cannot open {}", f.path.display()))?;
        Ok(f)
    }

    fn rotate(&mut self) -> io::Result<()> {
        if let Some(mut o) = self.out.take() {
            o.flush()?;
        }
        let stamp = utc_compact(SystemTime::now());
        let mut to = PathBuf::from(format!("{}.{stamp}", self.path.display()));
        let mut n = 1;
        while to.exists() {
            // Sorts after the plain name and in order: `-0001`, `-0002`, ...
            to = PathBuf::from(format!("{}.{stamp}-{n:04}", self.path.display()));
            n += 1;
        }
        fs::rename(&self.path, &to)?;
        self.connect()
    }
}

impl Transport for FileSink {
    fn send(&mut self, lines: &[Vec<u8>]) -> Result<(), (usize, io::Error)> {
        for (i, l) in lines.iter().enumerate() {
            let due_size = self
                .rotate_size
                .is_some_and(|m| self.size > 0 && self.size + l.len() as u64 > m);
            let due_time = self
                .rotate_interval
                .is_some_and(|d| self.size > 0 && self.opened.elapsed() >= d);
            if due_size || due_time {
                self.rotate().map_err(|e| (i, e))?;
            }
            self.connect().map_err(|e| (i, e))?;
            let Some(o) = self.out.as_mut() else {
                unreachable!("connected")
            };
            if let Err(e) = o.write_all(l) {
                self.out = None;
                return Err((i, e));
            }
            self.size += l.len() as u64;
        }
        if let Some(o) = self.out.as_mut() {
            if let Err(e) = o.flush() {
                self.out = None;
                // What the buffer held is unknown: the batch goes again.
                return Err((0, e));
            }
        }
        Ok(())
    }

    fn connect(&mut self) -> io::Result<()> {
        if self.out.is_none() {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = f.metadata()?.len();
            self.opened = Instant::now();
            self.out = Some(BufWriter::with_capacity(1 << 16, f));
        }
        Ok(())
    }
}

/// RFC 5424 framing of a verdict for syslog.
struct Syslog {
    facility: u8,
    host: String,
    pid: u32,
}

impl Syslog {
    fn new(facility: u8) -> Syslog {
        let mut buf = [0u8; 256];
        // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        let host = if rc == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            String::from_utf8_lossy(&buf[..end]).into_owned()
        } else {
            "-".to_string()
        };
        Syslog {
            facility,
            host: if host.is_empty() { "-".into() } else { host },
            pid: std::process::id(),
        }
    }

    /// PRI: the facility, severity informational (6).
    fn pri(&self) -> u32 {
        u32::from(self.facility) * 8 + 6
    }

    /// `<PRI>1 TIMESTAMP HOSTNAME tapwatch PROCID verdict - JSON` (RFC 5424 6.);
    /// APP-NAME tapwatch, MSGID `verdict`, no structured data, the JSON line as MSG.
    fn rfc5424(&self, out: &mut Vec<u8>, line: &[u8]) {
        out.extend_from_slice(
            format!(
                "<{}>1 {} {} tapwatch {} verdict - ",
                self.pri(),
                utc_rfc3339(SystemTime::now()),
                self.host,
                self.pid
            )
            .as_bytes(),
        );
        out.extend_from_slice(body(line));
    }

    /// The local form (glibc's syslog(3), what /dev/log readers such as rsyslog's
    /// imuxsock and journald parse): `<PRI>Mmm dd hh:mm:ss tapwatch[PID]: JSON`.
    fn local(&self, out: &mut Vec<u8>, line: &[u8]) {
        out.extend_from_slice(
            format!(
                "<{}>{} tapwatch[{}]: ",
                self.pri(),
                utc_bsd(SystemTime::now()),
                self.pid
            )
            .as_bytes(),
        );
        out.extend_from_slice(body(line));
    }
}

/// A TCP connection carrying JSON lines or octet-counted syslog messages.
struct Stream {
    addr: String,
    syslog: Option<Syslog>,
    conn: Option<BufWriter<TcpStream>>,
    /// The last lines written: those the peer's TCP has not acknowledged yet (the
    /// socket's send queue, SIOCOUTQ, after the last flush) plus `resend` bytes
    /// more (what the collector may have received and not read). Sent again after
    /// a reconnect.
    recent: VecDeque<Vec<u8>>,
    recent_bytes: u64,
    resend: u64,
    /// Bytes in the socket's send queue after the last flush.
    unacked: u64,
    /// Whether `recent` must go again before anything else.
    resend_due: bool,
    stats: Stats,
    frame: Vec<u8>,
}

impl Stream {
    fn new(addr: String, syslog: Option<Syslog>, resend: u64) -> Stream {
        Stream {
            addr,
            syslog,
            conn: None,
            recent: VecDeque::new(),
            recent_bytes: 0,
            resend,
            unacked: 0,
            resend_due: false,
            stats: Stats::default(),
            frame: Vec::new(),
        }
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "not connected"));
        };
        match &self.syslog {
            None => conn.write_all(line),
            Some(s) => {
                self.frame.clear();
                s.rfc5424(&mut self.frame, line);
                // Octet counting (RFC 6587 3.4.1): MSG-LEN SP SYSLOG-MSG.
                write!(conn, "{} ", self.frame.len())?;
                conn.write_all(&self.frame)
            }
        }
    }

    fn remember(&mut self, line: &[u8]) {
        self.recent.push_back(line.to_vec());
        self.recent_bytes += line.len() as u64;
    }

    /// Keeps in `recent` only the lines within the window.
    fn trim(&mut self) {
        let window = self.unacked + self.resend;
        while self.recent_bytes > window {
            match self.recent.front() {
                // Drop a line only if all of it is past the window.
                Some(l) if self.recent_bytes - (l.len() as u64) >= window => {
                    self.recent_bytes -= l.len() as u64;
                    self.recent.pop_front();
                }
                _ => break,
            }
        }
    }

    /// Bytes written to the socket and not yet acknowledged by the peer's TCP.
    fn send_queue(&self) -> u64 {
        use std::os::fd::AsRawFd;
        let Some(c) = self.conn.as_ref() else {
            return 0;
        };
        let mut n: libc::c_int = 0;
        // SAFETY: TIOCOUTQ (SIOCOUTQ for TCP sockets) writes one int through the
        // pointer, which points to `n`; the descriptor is the open socket.
        let rc = unsafe { libc::ioctl(c.get_ref().as_raw_fd(), libc::TIOCOUTQ, &mut n) };
        if rc == 0 {
            u64::try_from(n).unwrap_or(0)
        } else {
            0
        }
    }
}

impl Transport for Stream {
    fn send(&mut self, lines: &[Vec<u8>]) -> Result<(), (usize, io::Error)> {
        self.connect().map_err(|e| (0, e))?;
        let result = (|| {
            if self.resend_due {
                let recent: Vec<Vec<u8>> = self.recent.iter().cloned().collect();
                for l in &recent {
                    self.write_line(l)?;
                }
                self.stats.resent += recent.len() as u64;
                self.resend_due = false;
            }
            for l in lines {
                self.write_line(l)?;
            }
            match self.conn.as_mut() {
                Some(c) => c.flush(),
                None => Ok(()),
            }
        })();
        match result {
            Ok(()) => {
                for l in lines {
                    self.remember(l);
                }
                self.unacked = self.send_queue();
                self.trim();
                Ok(())
            }
            Err(e) => {
                // The buffer's fate is unknown: the batch goes again, after the
                // lines remembered from before it.
                self.conn = None;
                self.resend_due = !self.recent.is_empty();
                Err((0, e))
            }
        }
    }

    fn connect(&mut self) -> io::Result<()> {
        if self.conn.is_none() {
            let s = connect_tcp(&self.addr)?;
            self.conn = Some(BufWriter::with_capacity(1 << 16, s));
        }
        Ok(())
    }

    fn take_stats(&mut self) -> Stats {
        std::mem::take(&mut self.stats)
    }
}

enum DatagramTo {
    Udp(String),
    Unix(PathBuf),
}

enum DatagramSock {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

/// Syslog datagrams: RFC 5424 over UDP, the local form over a unix socket.
struct Datagram {
    to: DatagramTo,
    sock: Option<DatagramSock>,
    syslog: Syslog,
    stats: Stats,
}

impl Transport for Datagram {
    fn send(&mut self, lines: &[Vec<u8>]) -> Result<(), (usize, io::Error)> {
        self.connect().map_err(|e| (0, e))?;
        let mut msg = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            msg.clear();
            let r = match self.sock.as_ref() {
                Some(DatagramSock::Udp(s)) => {
                    self.syslog.rfc5424(&mut msg, l);
                    if msg.len() > UDP_MAX {
                        self.stats.oversized += 1;
                        continue;
                    }
                    s.send(&msg)
                }
                Some(DatagramSock::Unix(s)) => {
                    self.syslog.local(&mut msg, l);
                    s.send(&msg)
                }
                None => Err(io::Error::new(io::ErrorKind::NotConnected, "not connected")),
            };
            match r {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => self.stats.oversized += 1,
                Err(e) => {
                    self.sock = None;
                    return Err((i, e));
                }
            }
        }
        Ok(())
    }

    fn connect(&mut self) -> io::Result<()> {
        if self.sock.is_some() {
            return Ok(());
        }
        self.sock = Some(match &self.to {
            DatagramTo::Udp(addr) => {
                let to = addr.to_socket_addrs()?.next().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, format!("{addr}: no address"))
                })?;
                let s = UdpSocket::bind(if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
                s.connect(to)?;
                // A probe: an empty datagram (syslog receivers skip it). A port
                // nobody listens on answers with an ICMP port unreachable, which
                // the socket reports as ECONNREFUSED; without it, every reconnection
                // attempt would lose the verdict that found out.
                s.send(&[])?;
                std::thread::sleep(Duration::from_millis(20));
                if let Some(e) = s.take_error()? {
                    return Err(e);
                }
                DatagramSock::Udp(s)
            }
            DatagramTo::Unix(path) => {
                let s = UnixDatagram::unbound()?;
                s.connect(path)?;
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                DatagramSock::Unix(s)
            }
        });
        Ok(())
    }

    fn take_stats(&mut self) -> Stats {
        std::mem::take(&mut self.stats)
    }
}

/// A Redis connection (RESP2) pushing each line with the mode's command.
struct Redis {
    addr: String,
    key: String,
    mode: RedisMode,
    maxlen: u64,
    conn: Option<(BufWriter<TcpStream>, BufReader<TcpStream>)>,
}

/// Appends a RESP array of bulk strings (a command) to `buf`.
fn resp_command(buf: &mut Vec<u8>, args: &[&[u8]]) {
    buf.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        buf.extend_from_slice(a);
        buf.extend_from_slice(b"\r\n");
    }
}

/// Reads one reply; an error reply (`-ERR ...`) becomes an error.
fn resp_reply(r: &mut impl BufRead) -> io::Result<()> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "redis closed the connection",
        ));
    }
    let text = String::from_utf8_lossy(line.strip_suffix(b"\r\n").unwrap_or(&line)).into_owned();
    match text.as_bytes().first() {
        Some(b'+') | Some(b':') => Ok(()),
        Some(b'-') => Err(io::Error::other(format!("redis replied {text}"))),
        Some(b'$') => {
            let n: i64 = text[1..]
                .parse()
                .map_err(|_| io::Error::other(format!("bad redis reply {text:?}")))?;
            if n >= 0 {
                let mut skip = vec![0u8; n as usize + 2];
                io::Read::read_exact(r, &mut skip)?;
            }
            Ok(())
        }
        _ => Err(io::Error::other(format!("unexpected redis reply {text:?}"))),
    }
}

impl Redis {
    fn command(&self, buf: &mut Vec<u8>, line: &[u8]) {
        let key = self.key.as_bytes();
        let line = body(line);
        match self.mode {
            RedisMode::Lpush => resp_command(buf, &[b"LPUSH", key, line]),
            RedisMode::Rpush => resp_command(buf, &[b"RPUSH", key, line]),
            RedisMode::Publish => resp_command(buf, &[b"PUBLISH", key, line]),
            // As Suricata: XADD KEY MAXLEN ~ N * eve LINE.
            RedisMode::Xadd if self.maxlen > 0 => {
                let n = self.maxlen.to_string();
                resp_command(
                    buf,
                    &[
                        b"XADD",
                        key,
                        b"MAXLEN",
                        b"~",
                        n.as_bytes(),
                        b"*",
                        b"eve",
                        line,
                    ],
                )
            }
            RedisMode::Xadd => resp_command(buf, &[b"XADD", key, b"*", b"eve", line]),
        }
    }
}

impl Transport for Redis {
    fn send(&mut self, lines: &[Vec<u8>]) -> Result<(), (usize, io::Error)> {
        self.connect().map_err(|e| (0, e))?;
        let mut done = 0;
        let mut buf = Vec::new();
        for chunk in lines.chunks(REDIS_PIPELINE) {
            buf.clear();
            for l in chunk {
                self.command(&mut buf, l);
            }
            let Some((w, r)) = self.conn.as_mut() else {
                return Err((
                    done,
                    io::Error::new(io::ErrorKind::NotConnected, "not connected"),
                ));
            };
            let mut result = w.write_all(&buf).and_then(|()| w.flush());
            if result.is_ok() {
                for _ in chunk {
                    result = resp_reply(r);
                    if result.is_err() {
                        break;
                    }
                    done += 1;
                }
            }
            if let Err(e) = result {
                self.conn = None;
                return Err((done, e));
            }
        }
        Ok(())
    }

    fn connect(&mut self) -> io::Result<()> {
        if self.conn.is_none() {
            let s = connect_tcp(&self.addr)?;
            let r = BufReader::new(s.try_clone()?);
            let mut w = BufWriter::with_capacity(1 << 16, s);
            let mut r = r;
            // A PING first: a port that accepts but is not Redis fails here.
            let mut buf = Vec::new();
            resp_command(&mut buf, &[b"PING"]);
            w.write_all(&buf)?;
            w.flush()?;
            resp_reply(&mut r)?;
            self.conn = Some((w, r));
        }
        Ok(())
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's
/// `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

struct Utc {
    y: i64,
    mo: u32,
    d: u32,
    h: u64,
    mi: u64,
    s: u64,
    us: u32,
}

fn utc(t: SystemTime) -> Utc {
    let dur = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = dur.as_secs();
    let (y, mo, d) = civil((secs / 86_400) as i64);
    let sod = secs % 86_400;
    Utc {
        y,
        mo,
        d,
        h: sod / 3600,
        mi: sod / 60 % 60,
        s: sod % 60,
        us: dur.subsec_micros(),
    }
}

/// `2026-11-29T19:55:01.123456Z` (RFC 5424's TIMESTAMP).
fn utc_rfc3339(t: SystemTime) -> String {
    let u = utc(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        u.y, u.mo, u.d, u.h, u.mi, u.s, u.us
    )
}

/// `20261129T195501Z`, for rotated file names.
fn utc_compact(t: SystemTime) -> String {
    let u = utc(t);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        u.y, u.mo, u.d, u.h, u.mi, u.s
    )
}

/// `Nov 29 19:55:01` (RFC 3164's TIMESTAMP, here in UTC).
fn utc_bsd(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let u = utc(t);
    format!(
        "{} {:>2} {:02}:{:02}:{:02}",
        MONTHS[(u.mo - 1) as usize],
        u.d,
        u.h,
        u.mi,
        u.s
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_utc_formats() {
        let t = UNIX_EPOCH + Duration::from_micros(1_796_500_501_500_000);
        assert_eq!(utc_rfc3339(t), "2026-12-05T19:55:01.500000Z");
        assert_eq!(utc_compact(UNIX_EPOCH), "19700101T000000Z");
        assert_eq!(
            utc_bsd(UNIX_EPOCH + Duration::from_secs(86_400 * 59)),
            "Mar  1 00:00:00"
        );
    }

    #[test]
    fn test_rfc5424_frame() {
        let s = Syslog {
            facility: 16,
            host: "h".into(),
            pid: 7,
        };
        let mut out = Vec::new();
        s.rfc5424(&mut out, b"{\"a\":1}\n");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("<134>1 "), "{text}");
        assert!(
            text.ends_with(" h tapwatch 7 verdict - {\"a\":1}"),
            "{text}"
        );
    }

    #[test]
    fn test_resp_command_and_replies() {
        let mut buf = Vec::new();
        resp_command(&mut buf, &[b"RPUSH", b"k", b"v w"]);
        assert_eq!(buf, b"*3\r\n$5\r\nRPUSH\r\n$1\r\nk\r\n$3\r\nv w\r\n");
        let mut r =
            io::Cursor::new(b":1\r\n$15\r\n1700000000000-0\r\n+OK\r\n-WRONGTYPE x\r\n".to_vec());
        assert!(resp_reply(&mut r).is_ok());
        assert!(resp_reply(&mut r).is_ok());
        assert!(resp_reply(&mut r).is_ok());
        assert!(resp_reply(&mut r).is_err());
        assert!(resp_reply(&mut r).is_err());
    }
}
