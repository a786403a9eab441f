//! Sinks: where verdict lines go besides `--output`, several at once, without ever
//! making the exporter (and so the workers and the packet path) wait.
//!
//! ```text
//!  exporter ──line──> FanOut ─┬─> sink A: bounded queue ─┐
//!  (one thread)               │          (memory)        ├─> delivery thread A ──> collector
//!                             │   full or down: spool ───┘      (reconnects with backoff)
//!                             └─> sink B: ...
//! ```
//!
//! Each sink has its own delivery thread fed by a bounded in-memory queue. When the
//! queue is full (the collector is slow), the exporter moves it whole to the back of
//! the sink's on-disk spool ([`spool`]) in one write; while the collector is down, the
//! delivery thread does so every [`SPILL_TICK`]. Queued lines are therefore always
//! newer than spooled ones, and the delivery thread takes the spool first: each sink
//! receives its lines in the order the exporter produced them. Lines a collector
//! failed to take are put back in front of the spool. The spool outlives the process: the next run with the same
//! `--spool` delivers it first. A line is lost only when the spool is full (or, with
//! no spool, when the memory queue is), and every loss is counted per sink.
//!
//! The exporter's cost per line and sink is one uncontended lock and one copy; it
//! never does network I/O, and disk I/O only when a slow sink's queue fills (one
//! write for the whole queue).

pub mod spool;
mod transport;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use spool::Spool;
use transport::Transport;

/// Lines handed to a collector at once (from the queue; a spool segment goes whole).
const BATCH: usize = 512;
/// Delivered lines whose buffers a sink keeps for the exporter to fill again
/// ([`FanOut::send`]): a fresh `Vec` per line and sink was a `malloc` and a `free`
/// per verdict, 15 % of `send` (callgrind, 200k synth replay to a file sink).
const FREE_MAX: usize = 256;
/// The first wait before reconnecting; doubled after each failure up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// While its collector is down, a delivery thread moves its queue to the spool this
/// often (and whenever the queue is a quarter full).
const SPILL_TICK: Duration = Duration::from_millis(100);

/// How sinks behave, from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--spool DIR`: each sink spools under its own subdirectory.
    pub spool: Option<PathBuf>,
    /// `--spool-max`: bytes per sink's spool.
    pub spool_max: u64,
    /// `--sink-queue`: lines held in memory per sink.
    pub queue: usize,
    /// `--sink-drain-timeout`: how long the end of a run waits for delivery.
    pub drain_timeout: Duration,
}

/// What a sink URI names.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Stdout,
    File {
        path: PathBuf,
        rotate_size: Option<u64>,
        rotate_interval: Option<Duration>,
    },
    Tcp {
        addr: String,
        resend: u64,
    },
    Syslog {
        addr: String,
        tcp: bool,
        facility: u8,
        resend: u64,
    },
    SyslogLocal {
        path: PathBuf,
        facility: u8,
    },
    Redis {
        addr: String,
        key: String,
        mode: RedisMode,
        maxlen: u64,
    },
}

/// Suricata's EVE redis modes (and their aliases).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisMode {
    /// `list` or `lpush`: LPUSH (Suricata's default).
    Lpush,
    /// `rpush`: RPUSH (FIFO for a consumer that pops with BLPOP, as Logstash does).
    Rpush,
    /// `channel` or `publish`: PUBLISH.
    Publish,
    /// `stream` or `xadd`: XADD KEY [MAXLEN ~ N] * eve LINE.
    Xadd,
}

/// One `--sink` value, parsed.
#[derive(Debug, Clone)]
pub struct Spec {
    pub uri: String,
    pub kind: Kind,
}

/// Parses `1048576`, `64KiB`, `100MiB`, `1GiB`, `10MB`, `1G`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?} (examples: 65536, 64KiB, 100MiB, 1GiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => {
            return Err(format!(
                "invalid size unit in {s:?} (B, KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

fn facility(name: &str) -> Result<u8, String> {
    const NAMES: [&str; 24] = [
        "kern",
        "user",
        "mail",
        "daemon",
        "auth",
        "syslog",
        "lpr",
        "news",
        "uucp",
        "cron",
        "authpriv",
        "ftp",
        "ntp",
        "security",
        "console",
        "solaris-cron",
        "local0",
        "local1",
        "local2",
        "local3",
        "local4",
        "local5",
        "local6",
        "local7",
    ];
    NAMES
        .iter()
        .position(|n| *n == name)
        .map(|i| i as u8)
        .ok_or_else(|| {
            format!("unknown syslog facility {name:?} (local0 ... local7, daemon, user, ...)")
        })
}

/// `HOST:PORT` with a port (IPv6 as `[::1]:PORT`).
fn host_port(s: &str, uri: &str) -> Result<String, String> {
    let ok = s
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!("{uri:?}: expected HOST:PORT, got {s:?}"))
    }
}

impl Spec {
    /// Parses a sink URI (see docs/sinks.md).
    pub fn parse(uri: &str) -> Result<Spec, String> {
        let (base, query) = match uri.split_once('?') {
            Some((b, q)) => (b, q),
            None => (uri, ""),
        };
        let mut params: Vec<(String, String)> = Vec::new();
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            params.push((k.to_string(), v.to_string()));
        }
        let mut take = |key: &str| -> Option<String> {
            let i = params.iter().position(|(k, _)| k == key)?;
            Some(params.remove(i).1)
        };
        let resend = |v: Option<String>| -> Result<u64, String> {
            v.map_or(Ok(256 << 10), |v| parse_size(&v))
        };
        let kind = if base == "stdout" || base == "-" {
            Kind::Stdout
        } else if let Some(path) = base.strip_prefix("file:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(format!(
                    "{uri:?}: file: needs a path (file:/var/log/tapwatch.json)"
                ));
            }
            Kind::File {
                path: PathBuf::from(path),
                rotate_size: take("rotate-size").map(|v| parse_size(&v)).transpose()?,
                rotate_interval: take("rotate-interval")
                    .map(|v| {
                        humantime::parse_duration(&v)
                            .map_err(|e| format!("{uri:?}: rotate-interval {v:?}: {e}"))
                    })
                    .transpose()?,
            }
        } else if let Some(rest) = base.strip_prefix("tcp://") {
            Kind::Tcp {
                addr: host_port(rest, uri)?,
                resend: resend(take("resend"))?,
            }
        } else if let Some(rest) = base.strip_prefix("syslog://") {
            let tcp = match take("transport").as_deref() {
                None | Some("udp") => false,
                Some("tcp") => true,
                Some(o) => return Err(format!("{uri:?}: transport must be udp or tcp, not {o:?}")),
            };
            Kind::Syslog {
                addr: host_port(rest, uri)?,
                tcp,
                facility: facility(take("facility").as_deref().unwrap_or("local0"))?,
                resend: resend(take("resend"))?,
            }
        } else if let Some(rest) = base.strip_prefix("syslog:") {
            Kind::SyslogLocal {
                path: PathBuf::from(if rest.is_empty() { "/dev/log" } else { rest }),
                facility: facility(take("facility").as_deref().unwrap_or("local0"))?,
            }
        } else if let Some(rest) = base.strip_prefix("redis://") {
            let (hp, key) = rest.split_once('/').unwrap_or((rest, ""));
            let addr = if hp.contains(':') {
                hp.to_string()
            } else {
                format!("{hp}:6379")
            };
            let mode = match take("mode").as_deref() {
                None | Some("list") | Some("lpush") => RedisMode::Lpush,
                Some("rpush") => RedisMode::Rpush,
                Some("channel") | Some("publish") => RedisMode::Publish,
                Some("stream") | Some("xadd") => RedisMode::Xadd,
                Some(o) => {
                    return Err(format!(
                        "{uri:?}: redis mode must be list (lpush), rpush, channel (publish) or stream (xadd), not {o:?}"
                    ))
                }
            };
            Kind::Redis {
                addr: host_port(&addr, uri)?,
                key: if key.is_empty() {
                    "tapwatch".into()
                } else {
                    key.to_string()
                },
                mode,
                maxlen: take("maxlen").map_or(Ok(100_000), |v| {
                    v.parse()
                        .map_err(|_| format!("{uri:?}: maxlen {v:?} is not a number"))
                })?,
            }
        } else {
            return Err(format!(
                "unknown sink {uri:?}: expected stdout, file:PATH, tcp://HOST:PORT, syslog://HOST:PORT, syslog:[SOCKET] or redis://HOST:PORT/KEY"
            ));
        };
        if let Some((k, _)) = params.first() {
            return Err(format!("{uri:?}: unknown parameter {k:?} for this sink"));
        }
        Ok(Spec {
            uri: uri.to_string(),
            kind,
        })
    }

    /// The spool subdirectory name: the URI with every byte but `[A-Za-z0-9.-]`
    /// written `_XX` (hex), stable and readable (`tcp_3a_2f_2f127.0.0.1_3a9000`).
    pub fn spool_name(&self) -> String {
        let mut s = String::new();
        for b in self.uri.bytes() {
            if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' {
                s.push(b as char);
            } else {
                s.push_str(&format!("_{b:02x}"));
            }
        }
        s
    }
}

/// Reads a sinks file: one URI per line; blank lines and `#` comments ignored.
pub fn read_sinks_file(path: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect())
}

/// Per-sink counters, all in lines.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    /// Lines the exporter handed to this sink.
    pub produced: u64,
    /// Lines the collector took (as far as the transport can tell).
    pub delivered: u64,
    /// Of those, lines that came from the spool (this run's or a previous run's).
    pub delivered_from_spool: u64,
    /// Lines written to the spool (including lines put back in front).
    pub spooled: u64,
    /// Lines dropped because the spool was full.
    pub dropped_spool_full: u64,
    /// Lines dropped because the memory queue was full and there is no spool.
    pub dropped_queue_full: u64,
    /// Lines dropped because the spool could not be written (disk error).
    pub dropped_spool_error: u64,
    /// Lines a transport could never send (a syslog datagram over the size limit).
    pub oversized: u64,
    /// Lines sent again after a reconnect (possible duplicates at the collector).
    pub resent: u64,
    /// Lines not delivered at exit and not kept (no spool, or the sink failed for good).
    pub lost_at_exit: u64,
    /// Outages (from "down" to "up again").
    pub outages: u64,
    /// Lines in the spool when the run began (left by a previous run).
    pub spool_at_start: u64,
    /// Lines left in the spool at exit, for the next run.
    pub left_in_spool: u64,
    /// Spool bytes left at exit.
    pub left_in_spool_bytes: u64,
    /// Records found damaged in the spool and skipped.
    pub spool_corrupt: u64,
}

impl Counters {
    fn dropped(&self) -> u64 {
        self.dropped_spool_full
            + self.dropped_queue_full
            + self.dropped_spool_error
            + self.oversized
    }
}

/// What the exporter and a delivery thread share, under one lock.
#[derive(Debug)]
struct State {
    queue: VecDeque<Vec<u8>>,
    /// Emptied line buffers, at most [`FREE_MAX`].
    free: Vec<Vec<u8>>,
    spool: Option<Spool>,
    /// The collector is down (the delivery thread is between reconnections).
    down: bool,
    /// The delivery thread, waiting to reconnect, moves the queue to the spool:
    /// the exporter wakes it when the queue fills.
    spill_wanted: bool,
    /// The transport failed for good (stdout closed): lines are counted lost.
    dead: bool,
    /// The delivery thread is waiting for work.
    waiting: bool,
    /// Set by [`FanOut::finish`]: deliver what is left until the deadline, then stop.
    closing: Option<Instant>,
    c: Counters,
    spool_error_logged: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking delivery thread must not take the exporter down with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug)]
struct Sink {
    uri: String,
    shared: Arc<Shared>,
    queue_cap: usize,
    thread: Option<thread::JoinHandle<()>>,
}

/// The sinks of a run: the exporter hands each line to [`FanOut::send`].
#[derive(Debug)]
pub struct FanOut {
    sinks: Vec<Sink>,
    drain_timeout: Duration,
}

/// A sink's counters at the end of a run.
#[derive(Debug)]
pub struct Report {
    pub uri: String,
    pub c: Counters,
}

/// A sink's counters as a metrics scrape reads them (see [`FanOut::probes`]).
#[derive(Debug, Clone)]
pub struct Probe {
    pub uri: String,
    shared: Arc<Shared>,
}

/// What [`Probe::read`] gives: counters so far, and the sink's memory queue and
/// spool now.
#[derive(Debug, Clone, Default)]
pub struct ProbeReading {
    pub c: Counters,
    pub queue_lines: u64,
    pub spool_lines: u64,
    pub spool_bytes: u64,
    pub down: bool,
}

impl Probe {
    /// Takes the sink's lock once (the exporter takes it once per line anyway).
    pub fn read(&self) -> ProbeReading {
        let st = self.shared.lock();
        let (spool_lines, spool_bytes) = match &st.spool {
            Some(sp) => (sp.lines, sp.bytes),
            None => (st.c.left_in_spool, st.c.left_in_spool_bytes),
        };
        ProbeReading {
            c: st.c.clone(),
            queue_lines: st.queue.len() as u64,
            spool_lines,
            spool_bytes,
            down: st.down,
        }
    }
}

impl FanOut {
    /// One probe per sink, for `--metrics`.
    pub fn probes(&self) -> Vec<Probe> {
        self.sinks
            .iter()
            .map(|s| Probe {
                uri: s.uri.clone(),
                shared: Arc::clone(&s.shared),
            })
            .collect()
    }

    /// Opens every sink's spool and starts its delivery thread (which connects on
    /// its own: a collector that is down at start is an outage like any other).
    pub fn start(specs: &[Spec], opts: &Options) -> Result<FanOut> {
        let mut sinks = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            if specs[..i].iter().any(|s| s.uri == spec.uri) {
                bail!("--sink {} is given twice", spec.uri);
            }
            let spool = match &opts.spool {
                Some(dir) => Some(Spool::open(&dir.join(spec.spool_name()), opts.spool_max)?),
                None => None,
            };
            let mut c = Counters::default();
            if let Some(sp) = &spool {
                c.spool_at_start = sp.lines;
                c.spool_corrupt = sp.corrupt;
            }
            let transport =
                transport::open(&spec.kind).with_context(|| format!("sink {}", spec.uri))?;
            let shared = Arc::new(Shared {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    free: Vec::new(),
                    spool,
                    down: false,
                    spill_wanted: false,
                    dead: false,
                    waiting: false,
                    closing: None,
                    c,
                    spool_error_logged: false,
                }),
                cv: Condvar::new(),
            });
            let thread = {
                let shared = Arc::clone(&shared);
                let uri = spec.uri.clone();
                let has_spool = opts.spool.is_some();
                thread::Builder::new()
                    .name(format!("tw-sink-{i}"))
                    .spawn(move || deliver(&shared, transport, &uri, has_spool))
                    .context("spawn sink thread")?
            };
            sinks.push(Sink {
                uri: spec.uri.clone(),
                shared,
                queue_cap: opts.queue.max(1),
                thread: Some(thread),
            });
        }
        Ok(FanOut {
            sinks,
            drain_timeout: opts.drain_timeout,
        })
    }

    /// Hands one line (a verdict, newline included) to every sink. Never waits on a
    /// collector.
    pub fn send(&self, line: &[u8]) {
        for s in &self.sinks {
            let mut st = s.shared.lock();
            st.c.produced += 1;
            if st.dead {
                st.c.lost_at_exit += 1;
                continue;
            }
            let st = &mut *st;
            if st.queue.len() < s.queue_cap {
                let mut v = st.free.pop().unwrap_or_default();
                v.clear();
                v.extend_from_slice(line);
                st.queue.push_back(v);
                if st.spill_wanted && st.queue.len() >= s.queue_cap / 4 {
                    s.shared.cv.notify_one();
                }
            } else if let Some(sp) = st.spool.as_mut() {
                // The queue is full: it goes to the back of the spool with this
                // line, in one write (queued lines are always newer than spooled
                // ones, so order holds).
                let queued = st.queue.len() as u64 + 1;
                let result = sp.push_many(
                    st.queue
                        .iter()
                        .map(Vec::as_slice)
                        .chain(std::iter::once(line)),
                );
                st.queue.clear();
                match result {
                    Ok((kept, dropped)) => {
                        st.c.spooled += kept;
                        st.c.dropped_spool_full += dropped;
                    }
                    Err(e) => {
                        st.c.dropped_spool_error += queued;
                        if !st.spool_error_logged {
                            st.spool_error_logged = true;
                            eprintln!(
                                "tapwatch: sink {}: cannot write its spool ({e}): dropping what does not fit in memory",
                                s.uri
                            );
                        }
                    }
                }
            } else {
                st.c.dropped_queue_full += 1;
            }
            if st.waiting {
                s.shared.cv.notify_one();
                // Woken once: the lines that come before it runs need no more
                // wake-ups (each was a futex call while it was being scheduled).
                st.waiting = false;
            }
        }
    }

    /// Waits up to the drain timeout for every sink to deliver what it holds; what
    /// is left stays in the spool (or, without one, is counted lost). One line per
    /// sink says so.
    pub fn finish(mut self, quiet: bool) -> Vec<Report> {
        let deadline = Instant::now() + self.drain_timeout;
        for s in &self.sinks {
            s.shared.lock().closing = Some(deadline);
            s.shared.cv.notify_all();
        }
        let mut reports = Vec::new();
        for s in &mut self.sinks {
            if let Some(t) = s.thread.take() {
                if t.join().is_err() {
                    eprintln!("tapwatch: sink {}: its delivery thread panicked", s.uri);
                }
            }
            let mut guard = s.shared.lock();
            let st = &mut *guard;
            // Whatever a dead thread left in the queue.
            let left = st.queue.len() as u64;
            st.queue.clear();
            st.c.lost_at_exit += left;
            if let Some(sp) = st.spool.as_mut() {
                if let Err(e) = sp.sync() {
                    eprintln!("tapwatch: sink {}: cannot fsync its spool: {e}", s.uri);
                }
                st.c.left_in_spool = sp.lines;
                st.c.left_in_spool_bytes = sp.bytes;
                st.c.spool_corrupt = sp.corrupt;
            }
            let c = st.c.clone();
            if !quiet || c.left_in_spool > 0 || c.lost_at_exit > 0 {
                if c.left_in_spool > 0 {
                    eprintln!(
                        "tapwatch: sink {}: {} line(s) not delivered within {:?} are left in the spool for the next run",
                        s.uri, c.left_in_spool, self.drain_timeout
                    );
                }
                if c.lost_at_exit > 0 {
                    eprintln!(
                        "tapwatch: sink {}: {} line(s) NOT delivered and not kept (no spool, or the sink failed for good)",
                        s.uri, c.lost_at_exit
                    );
                }
            }
            reports.push(Report {
                uri: s.uri.clone(),
                c,
            });
        }
        reports
    }
}

/// The `sinks` section of the summary and `--stats`.
pub fn reports_json(reports: &[Report]) -> Value {
    Value::Array(
        reports
            .iter()
            .map(|r| {
                let c = &r.c;
                json!({
                    "uri": r.uri,
                    "produced": c.produced,
                    "delivered": c.delivered,
                    "delivered_from_spool": c.delivered_from_spool,
                    "spooled": c.spooled,
                    "spool_at_start": c.spool_at_start,
                    "left_in_spool": c.left_in_spool,
                    "left_in_spool_bytes": c.left_in_spool_bytes,
                    "dropped": {
                        "spool_full": c.dropped_spool_full,
                        "queue_full": c.dropped_queue_full,
                        "spool_error": c.dropped_spool_error,
                        "oversized": c.oversized,
                    },
                    "dropped_total": c.dropped(),
                    "lost_at_exit": c.lost_at_exit,
                    "resent": c.resent,
                    "outages": c.outages,
                    "spool_corrupt": c.spool_corrupt,
                })
            })
            .collect(),
    )
}

/// One summary line per sink.
pub fn print_reports(out: &mut impl std::io::Write, reports: &[Report]) {
    for r in reports {
        let c = &r.c;
        let _ = writeln!(
            out,
            "  sink {}: {} delivered ({} from the spool), {} spooled, {} left in the spool; dropped: spool full {}, queue full {}, spool error {}, oversized {}; lost at exit {}; {} outage(s), {} resent",
            r.uri,
            c.delivered,
            c.delivered_from_spool,
            c.spooled,
            c.left_in_spool,
            c.dropped_spool_full,
            c.dropped_queue_full,
            c.dropped_spool_error,
            c.oversized,
            c.lost_at_exit,
            c.outages,
            c.resent
        );
    }
}

/// Where the lines being delivered came from.
enum Source {
    Queue,
    Spool(spool::Taken),
}

/// A sink's delivery thread: the spool first, then the queue (queued lines are always
/// newer: the exporter moves a full queue to the back of the spool), until told to
/// close and everything is delivered or the deadline has passed.
fn deliver(shared: &Shared, mut t: Box<dyn Transport>, uri: &str, has_spool: bool) {
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut source = Source::Queue;
    let mut backoff = BACKOFF_MIN;
    let mut down_since: Option<Instant> = None;
    loop {
        if batch.is_empty() {
            let mut st = shared.lock();
            loop {
                // The spool first: queued lines are always newer than spooled ones.
                let taken = st.spool.as_mut().map(Spool::take);
                match taken {
                    Some(Ok(Some(tk))) => {
                        batch = tk.lines.clone();
                        source = Source::Spool(tk);
                        if batch.is_empty() {
                            // A segment whose records were all damaged.
                            if let (Some(sp), Source::Spool(tk)) = (st.spool.as_mut(), &source) {
                                let _ = sp.done(tk);
                            }
                            continue;
                        }
                        break;
                    }
                    Some(Err(e)) => {
                        eprintln!("tapwatch: sink {uri}: cannot read its spool: {e}");
                    }
                    _ => {}
                }
                if !st.queue.is_empty() {
                    let n = st.queue.len().min(BATCH);
                    batch.extend(st.queue.drain(..n));
                    source = Source::Queue;
                    break;
                }
                if st.closing.is_some() {
                    return;
                }
                st.waiting = true;
                st = shared.cv.wait(st).unwrap_or_else(|p| p.into_inner());
                st.waiting = false;
            }
        }
        let closing = shared.lock().closing;
        if closing.is_some_and(|d| Instant::now() >= d) {
            give_up(shared, &mut batch, &mut source);
            return;
        }
        let result = t.send(&batch);
        let stats = t.take_stats();
        let (sent, err) = match result {
            Ok(()) => (batch.len(), None),
            Err((n, e)) => (n, Some(e)),
        };
        {
            let mut st = shared.lock();
            st.c.delivered += sent as u64;
            st.c.resent += stats.resent;
            st.c.oversized += stats.oversized;
            if matches!(source, Source::Spool(_)) {
                st.c.delivered_from_spool += sent as u64;
            }
            if sent > 0 || err.is_none() {
                if let Some(since) = down_since.take() {
                    let waiting =
                        st.spool.as_ref().map_or(0, |s| s.lines) + batch.len() as u64 - sent as u64;
                    eprintln!(
                        "tapwatch: sink {uri}: up again after {:.1} s{}",
                        since.elapsed().as_secs_f64(),
                        if has_spool {
                            format!("; delivering {waiting} spooled line(s) first")
                        } else {
                            String::new()
                        }
                    );
                    st.down = false;
                    backoff = BACKOFF_MIN;
                }
            }
            let room = FREE_MAX.saturating_sub(st.free.len());
            // The drain removes all `sent` lines, kept or not.
            st.free.extend(batch.drain(..sent).take(room));
        }
        let Some(e) = err else {
            if let Source::Spool(tk) = &source {
                let mut st = shared.lock();
                if let Some(sp) = st.spool.as_mut() {
                    if let Err(e) = sp.done(tk) {
                        eprintln!(
                            "tapwatch: sink {uri}: cannot remove a delivered spool segment: {e}"
                        );
                    }
                }
            }
            source = Source::Queue;
            continue;
        };
        if t.is_permanent(&e) {
            eprintln!("tapwatch: sink {uri}: failed for good ({e}); its verdicts are counted as lost from now on");
            let mut st = shared.lock();
            st.dead = true;
            let left = batch.len() as u64 + st.queue.len() as u64;
            st.queue.clear();
            st.c.lost_at_exit += left;
            batch.clear();
            return;
        }
        if down_since.is_none() {
            down_since = Some(Instant::now());
            eprintln!(
                "tapwatch: sink {uri}: down ({e}), {}",
                if has_spool {
                    "spooling"
                } else {
                    "holding lines in memory (no --spool)"
                }
            );
            let mut st = shared.lock();
            st.c.outages += 1;
            st.down = true;
        }
        // Lines the collector did not take go back in front of the spool, with the
        // queue behind them: from now on, everything waits there in order.
        if has_spool {
            put_back(shared, &mut batch, &mut source);
        }
        // Wait, then probe the collector before touching the spool again. Only
        // closing wakes this wait early (new lines do not: `waiting` stays false, so
        // the exporter does not notify, and a dead collector costs no work per line).
        loop {
            let until = Instant::now() + backoff;
            let mut st = shared.lock();
            st.spill_wanted = has_spool;
            loop {
                // While down, lines wait in the spool, not in memory: at most a
                // tick's worth (or a quarter of the queue) dies with a killed process.
                spill_queue(&mut st);
                let end = st.closing.map_or(until, |d| d.min(until));
                let now = Instant::now();
                if now >= end {
                    break;
                }
                st = shared
                    .cv
                    .wait_timeout(st, (end - now).min(SPILL_TICK))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            st.spill_wanted = false;
            let closing = st.closing;
            drop(st);
            backoff = (backoff * 2).min(BACKOFF_MAX);
            if closing.is_some_and(|d| Instant::now() >= d) || t.connect().is_ok() {
                break;
            }
        }
        if shared.lock().closing.is_some_and(|d| Instant::now() >= d) {
            give_up(shared, &mut batch, &mut source);
            return;
        }
    }
}

/// Puts `batch` back in front of the spool (the taken segment, if the batch came
/// from one, goes: what is left of it is in the new first segment) and moves the
/// queue to its back.
fn put_back(shared: &Shared, batch: &mut Vec<Vec<u8>>, source: &mut Source) {
    let mut st = shared.lock();
    let st = &mut *st;
    let Some(sp) = st.spool.as_mut() else { return };
    // A taken segment's bytes are still counted until its file goes: they are room
    // for its lines.
    let reclaim = match source {
        Source::Spool(tk) => tk.bytes,
        Source::Queue => 0,
    };
    match sp.push_front(batch, reclaim) {
        Ok(dropped) => {
            st.c.dropped_spool_full += dropped;
            // A batch from the queue is newly spooled; a taken segment's lines were
            // counted when first spooled.
            if matches!(source, Source::Queue) {
                st.c.spooled += batch.len() as u64 - dropped;
            }
            if let Source::Spool(tk) = source {
                let _ = sp.done(tk);
            }
            *source = Source::Queue;
            batch.clear();
        }
        Err(e) => {
            // Keep them in memory and try again later.
            eprintln!("tapwatch: cannot write a spool segment ({e}); holding lines in memory");
            return;
        }
    }
    spill_queue(st);
}

/// Moves the whole queue to the back of the spool (the delivery thread, while its
/// collector is down: one write for many lines, off the exporter's thread).
fn spill_queue(st: &mut State) {
    let Some(sp) = st.spool.as_mut() else { return };
    if st.queue.is_empty() {
        return;
    }
    let n = st.queue.len() as u64;
    match sp.push_many(st.queue.iter().map(Vec::as_slice)) {
        Ok((kept, dropped)) => {
            st.c.spooled += kept;
            st.c.dropped_spool_full += dropped;
            st.queue.clear();
        }
        Err(e) => {
            if !st.spool_error_logged {
                st.spool_error_logged = true;
                eprintln!("tapwatch: cannot write a spool segment ({e}); dropping lines");
            }
            st.c.dropped_spool_error += n;
            st.queue.clear();
        }
    }
}

/// At the deadline: with a spool, what is left goes back to it for the next run;
/// without, it is counted lost.
fn give_up(shared: &Shared, batch: &mut Vec<Vec<u8>>, source: &mut Source) {
    let has_spool = shared.lock().spool.is_some();
    if has_spool {
        put_back(shared, batch, source);
    }
    let mut st = shared.lock();
    let left = batch.len() as u64 + st.queue.len() as u64;
    st.queue.clear();
    st.c.lost_at_exit += left;
    batch.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_uris() {
        let k = |u: &str| Spec::parse(u).map(|s| s.kind);
        assert_eq!(k("stdout"), Ok(Kind::Stdout));
        assert_eq!(
            k("tcp://127.0.0.1:9000"),
            Ok(Kind::Tcp {
                addr: "127.0.0.1:9000".into(),
                resend: 256 << 10
            })
        );
        assert_eq!(
            k("redis://127.0.0.1:6379/tw?mode=stream&maxlen=0"),
            Ok(Kind::Redis {
                addr: "127.0.0.1:6379".into(),
                key: "tw".into(),
                mode: RedisMode::Xadd,
                maxlen: 0
            })
        );
        assert_eq!(
            k("redis://localhost"),
            Ok(Kind::Redis {
                addr: "localhost:6379".into(),
                key: "tapwatch".into(),
                mode: RedisMode::Lpush,
                maxlen: 100_000
            })
        );
        assert_eq!(
            k("syslog://[::1]:514?transport=tcp&facility=local3"),
            Ok(Kind::Syslog {
                addr: "[::1]:514".into(),
                tcp: true,
                facility: 19,
                resend: 256 << 10
            })
        );
        assert_eq!(
            k("syslog:"),
            Ok(Kind::SyslogLocal {
                path: "/dev/log".into(),
                facility: 16
            })
        );
        assert_eq!(
            k("file:/tmp/x.json?rotate-size=100MiB&rotate-interval=1h"),
            Ok(Kind::File {
                path: "/tmp/x.json".into(),
                rotate_size: Some(100 << 20),
                rotate_interval: Some(Duration::from_secs(3600))
            })
        );
        for bad in [
            "http://x",
            "tcp://nohost",
            "tcp://h:0",
            "redis://h:1/k?mode=set",
            "tcp://h:1?bogus=1",
            "file:",
            "syslog://h:1?facility=nope",
        ] {
            assert!(Spec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn test_spool_name_is_stable_and_flat() {
        let s = Spec::parse("tcp://127.0.0.1:9000").unwrap();
        assert_eq!(s.spool_name(), "tcp_3a_2f_2f127.0.0.1_3a9000");
        assert!(!s.spool_name().contains('/'));
    }

    #[test]
    fn test_parse_size() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("1XB").is_err());
    }
}
