//! `tapwatch`: the command-line front end. Parses flags, maps capture files, runs the
//! engine's pipeline and reports. All I/O and all user-facing text live here.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use engine::capture::CaptureReader;
use engine::clock::{self, ClockConfig, ClockEstimate, Method};
use engine::correlate::CorrelateConfig;
use engine::pairing::PairConfig;
use engine::pipeline::{self, Overflow, PipelineConfig, Progress, ReplayReport, ReplaySource};
use engine::session::{PointId, MAX_POINTS};
use engine::time::Nanos;
use engine::tls::TlsConfig;
use engine::worker::WorkerConfig;

mod check;
mod input;
mod live;
mod metrics;
mod sink;
mod summary;

use input::MappedCapture;

/// Passive TLS-failure sensor: follows every TCP session at one or more capture
/// points and writes one verdict per session saying why it ended.
#[derive(Parser, Debug)]
#[command(name = "tapwatch", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Replay capture files (pcap, pcapng) and write one JSON verdict per session.
    Replay(ReplayArgs),
    /// Capture live with AF_XDP on one or more interfaces (each a capture point) and
    /// write one JSON verdict per session as sessions end. Needs root (CAP_NET_ADMIN,
    /// CAP_BPF, CAP_IPC_LOCK); `tapwatch check IFACE` tells what is missing. SIGUSR1
    /// prints the counters; SIGINT or SIGTERM judges the open sessions (end_reason
    /// `shutdown`), writes the last verdicts and the summary, and exits 0.
    Live(LiveArgs),
    /// Read capture files without analysing them: the floor for benchmarks, and a
    /// quick integrity check (frames, bytes, first error).
    Read(ReadArgs),
    /// Write a synthetic capture of many concurrent TCP sessions (for benchmarks).
    Synth(SynthArgs),
    /// Check whether this machine can run live capture: kernel, BPF and AF_XDP,
    /// capabilities and memlock limit, and per interface its driver, XDP modes,
    /// zero-copy support and receive queues. Exit status 0 if all checks pass, 1 if
    /// not; every failed check says what to do.
    Check(CheckArgs),
}

#[derive(Args, Debug)]
struct CheckArgs {
    /// Interfaces to check (in the current network namespace).
    #[arg(value_name = "IFACE")]
    ifaces: Vec<String>,
}

#[derive(Args, Debug)]
struct ReplayArgs {
    /// Capture files, one per capture point: `NAME=PATH`, or `PATH` to name the
    /// point after the file stem. Packets of all points are merged by timestamp.
    #[arg(value_name = "[NAME=]PATH", required = true)]
    inputs: Vec<String>,

    #[command(flatten)]
    analysis: AnalysisArgs,

    /// Correct the clocks of the capture points against the client-side point's:
    /// `auto` estimates each point's offset from packets seen at both points (the
    /// default), `none` corrects nothing, `NAME=SECONDS` gives how far point NAME's
    /// clock is ahead (`outside=-0.250`: 250 ms behind). NAME=SECONDS may be
    /// repeated, and overrides `auto` or `none` for that point.
    #[arg(long, value_name = "auto|none|NAME=SECONDS", value_parser = parse_clock_offset)]
    clock_offset: Vec<ClockOffsetArg>,

    /// No progress bar (it is shown only when standard error is a terminal).
    #[arg(long)]
    no_progress: bool,
}

#[derive(Args, Debug)]
struct LiveArgs {
    /// Interfaces, one per capture point: `NAME=IFACE`, or `IFACE` to name the point
    /// after the interface. Every receive queue of each gets an AF_XDP socket and a
    /// capture thread.
    #[arg(value_name = "[NAME=]IFACE", required = true)]
    ifaces: Vec<String>,

    #[command(flatten)]
    analysis: AnalysisArgs,

    /// Where the XDP program runs: `driver` (native, fast; fails if the driver has
    /// no XDP), `skb` (generic, any interface, slower), `auto` (driver, else skb
    /// with a warning).
    #[arg(long, value_enum, default_value = "auto")]
    xdp_mode: live::xdp::ModeArg,

    /// How sockets are bound: `zero` (zero-copy: the NIC writes into tapwatch's
    /// memory; needs driver support and driver mode), `copy` (the kernel copies each
    /// frame), `auto` (zero-copy where the driver has it, else copy).
    #[arg(long, value_enum, default_value = "auto")]
    bind_mode: live::xsk::BindMode,

    /// Frames in each socket's UMEM (power of two, 4 KiB each): what absorbs a
    /// capture thread's pauses. 4,096 ran dry on these machines whenever the reader
    /// was descheduled; 16,384 (64 MiB per queue) did not.
    #[arg(long, value_name = "N", default_value_t = 16_384)]
    umem_frames: u32,

    /// Busy polling: the driver's receive work runs from the capture threads instead
    /// of interrupts (lower latency, one core busy per queue while idle).
    #[arg(long)]
    busy_poll: bool,

    /// What the XDP program does with packets that are not for tapwatch (not TCP,
    /// outside --port): `drop` for a tap or SPAN port, `pass` on a host that needs
    /// its own traffic.
    #[arg(long, value_enum, default_value = "drop")]
    not_matched: live::xdp::NotMatched,

    /// Only TCP with this port at either end (repeatable, up to 8); default: all TCP.
    #[arg(long, value_name = "PORT")]
    port: Vec<u16>,

    /// Stop after this long, as SIGTERM would (for tests and benchmarks).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    duration: Option<Nanos>,
}

/// What the analysis needs, whatever the packets come from (replay or live).
#[derive(Args, Debug)]
struct AnalysisArgs {
    /// Worker threads (sessions are spread over them by a symmetric flow hash).
    /// Default: the number of cores.
    #[arg(short, long, value_name = "N")]
    workers: Option<usize>,

    /// Most sessions followed at once, over all workers. When full, a closed session
    /// still waiting for its linger time is judged at once; failing that, the least
    /// recently active open session is judged early (end_reason `evicted`).
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    max_sessions: usize,

    /// An open session with no packet for this long (capture time) ends as `timeout`.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
    idle_timeout: Nanos,

    /// How long (capture time) a closed session is kept before it is judged, so that
    /// late packets and the other points' copies are still counted.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    linger: Nanos,

    /// Bytes of one TLS buffer: the longest handshake message read (a longer one,
    /// such as a huge certificate chain, is skipped and counted) and how far past a
    /// missing segment out-of-order data is kept.
    #[arg(long, value_name = "BYTES", default_value_t = 65_536)]
    tls_buffer: usize,

    /// TLS buffers per worker, for each of the two uses (split handshake messages,
    /// out-of-order data). A buffer is held only while needed; when all are busy the
    /// message or segment is skipped and counted (`tls.buffers_exhausted`). Also
    /// sizes the pool of streams partly read: 4 x N places, at least 16,384 (full:
    /// that direction is no longer followed, `tls.streams_exhausted`).
    #[arg(long, value_name = "N", default_value_t = 1024)]
    tls_buffers: usize,

    /// Follow TCP only: no TLS facts and no TLS verdicts (for comparison, or when
    /// speed matters more).
    #[arg(long)]
    no_tls: bool,

    /// The capture point on the clients' side of the middlebox: the reference clock,
    /// and the inside of the comparison between points. Default: the first point.
    #[arg(long, value_name = "NAME")]
    client_side: Option<String>,

    /// How far apart in capture time (after clock correction) the copies of a reset
    /// or FIN at two points may be and still match: milliseconds (`50`, `2.5`) or a
    /// duration (`50ms`, `1s`).
    #[arg(long, value_name = "MS", default_value = "50", value_parser = parse_millis)]
    match_window: Nanos,

    /// How long (capture time) a session seen at one of the two points only waits
    /// for the other leg that a proxy opened for it from its own address (another
    /// 5-tuple): legs are paired by server endpoint, SNI and time. `0s` turns
    /// pairing off.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pair_window: Nanos,

    /// Write verdicts (JSON lines) here instead of standard output. With --sink and
    /// no --output, verdicts go to the sinks only.
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,

    /// Also stream verdicts to this collector (repeatable): `stdout`,
    /// `file:PATH[?rotate-size=100MiB&rotate-interval=1h]`, `tcp://HOST:PORT` (JSON
    /// lines), `syslog://HOST:PORT[?transport=udp|tcp&facility=local0]` (RFC 5424),
    /// `syslog:[SOCKET]` (default /dev/log), `redis://HOST:PORT/KEY[?mode=list|rpush|channel|stream]`.
    /// A slow or down sink never slows the capture: its lines wait in memory
    /// (--sink-queue), then in the spool (--spool). See docs/sinks.md.
    #[arg(long = "sink", value_name = "URI", value_parser = parse_sink)]
    sinks: Vec<sink::Spec>,

    /// Read more sink URIs from this file, one per line (`#` starts a comment).
    #[arg(long, value_name = "PATH")]
    sinks_file: Option<PathBuf>,

    /// Spool directory: lines a sink cannot take now are kept here (a subdirectory
    /// per sink) and delivered first, in order, when it is back, in this run or the
    /// next one. Without it, a sink that is down loses what its memory queue cannot hold.
    #[arg(long, value_name = "DIR")]
    spool: Option<PathBuf>,

    /// Most bytes of each sink's spool; past it, lines are dropped and counted.
    #[arg(long, value_name = "BYTES", default_value = "1GiB", value_parser = sink::parse_size)]
    spool_max: u64,

    /// Lines held in memory per sink before spooling (or, without --spool, dropping).
    #[arg(long, value_name = "LINES", default_value_t = 16_384)]
    sink_queue: usize,

    /// At the end of the run, how long to wait for the sinks to deliver what they
    /// hold; what is left stays in the spool (without one, it is lost and counted).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    sink_drain_timeout: Nanos,

    /// Also write the run's counters as one JSON object to this file.
    #[arg(long, value_name = "PATH")]
    stats: Option<PathBuf>,

    /// Serve the run's counters in the Prometheus text format at
    /// http://ADDR/metrics (e.g. 127.0.0.1:9464): packets, sessions, verdicts,
    /// drops by cause, ring occupancy, sinks, and quantiles of processing time and
    /// export latency. See docs/metrics.md.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,

    /// With --metrics: after the run (its summary and --stats written), keep
    /// serving the final counters this long before exiting, so that a scraper
    /// gets them (`tapwatch_run_finished` is then 1).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    metrics_linger: Nanos,

    /// No summary on standard error.
    #[arg(short, long)]
    quiet: bool,
}

impl AnalysisArgs {
    /// Binds `--metrics` (a setup error if it cannot), before anything is read.
    fn metrics_listener(&self) -> Result<Option<std::net::TcpListener>> {
        self.metrics.as_deref().map(metrics::bind).transpose()
    }

    /// Starts serving `--metrics` for a run of points `names`, with the sinks of
    /// `outs`; `live` reads the capture threads' counters (replay: None).
    fn serve_metrics(
        listener: Option<std::net::TcpListener>,
        names: &[String],
        outs: &Outputs,
        live: Option<Box<dyn Fn() -> metrics::LivePoints + Send + Sync>>,
    ) -> Result<Option<std::sync::Arc<metrics::Sources>>> {
        let Some(listener) = listener else {
            return Ok(None);
        };
        let mut src = metrics::Sources::new(names, Default::default());
        src.sinks = outs
            .fanout
            .as_ref()
            .map_or_else(Vec::new, sink::FanOut::probes);
        src.live = live;
        let src = std::sync::Arc::new(src);
        metrics::serve(listener, std::sync::Arc::clone(&src))?;
        Ok(Some(src))
    }

    /// After the run: marks it finished and serves for `--metrics-linger`.
    fn linger_metrics(&self, src: Option<&metrics::Sources>) {
        if let Some(src) = src {
            src.finished.store(true, Ordering::Release);
            std::thread::sleep(std::time::Duration::from_nanos(self.metrics_linger.0));
        }
    }

    /// The pipeline for `points` capture points, the client side at `client_side`.
    fn pipeline(&self, points: usize, client_side: usize) -> Result<PipelineConfig> {
        let workers = self
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if workers == 0 || workers > 256 {
            bail!("--workers must be between 1 and 256");
        }
        if self.max_sessions == 0 {
            bail!("--max-sessions must be at least 1");
        }
        if !(1024..=16 << 20).contains(&self.tls_buffer) {
            bail!("--tls-buffer must be between 1024 and 16777216 bytes");
        }
        Ok(PipelineConfig {
            workers,
            worker: WorkerConfig {
                max_sessions: self.max_sessions,
                points,
                idle_timeout: self.idle_timeout,
                linger: self.linger,
                tls: TlsConfig {
                    buf_cap: self.tls_buffer,
                    buffers: self.tls_buffers,
                    enabled: !self.no_tls,
                    ..TlsConfig::default()
                },
                correlate: CorrelateConfig {
                    client_side: PointId(client_side as u8),
                    window: self.match_window,
                },
                ..WorkerConfig::default()
            },
            overflow: Overflow::Wait,
            pairing: PairConfig {
                window: self.pair_window,
                ..PairConfig::default()
            },
            ..PipelineConfig::default()
        })
    }

    /// The client-side point's index among `names`.
    fn client_side(&self, names: &[String]) -> Result<usize> {
        match &self.client_side {
            Some(name) => point_index(names, name, "--client-side"),
            None => Ok(0),
        }
    }

    /// Where verdicts go: `--output` (created now), or standard output; nothing
    /// when sinks are given without `--output`.
    fn output(&self) -> Result<Option<BufWriter<Box<dyn Write + Send>>>> {
        let out: Box<dyn Write + Send> = match &self.output {
            Some(p) if p.as_os_str() != "-" => {
                Box::new(File::create(p).with_context(|| format!("cannot create {}", p.display()))?)
            }
            Some(_) => Box::new(io::stdout()),
            None if !self.sinks.is_empty() || self.sinks_file.is_some() => return Ok(None),
            None => Box::new(io::stdout()),
        };
        Ok(Some(BufWriter::with_capacity(1 << 20, out)))
    }

    /// The sinks, started (spools opened, delivery threads running); `None` if
    /// there are none.
    fn sinks(&self) -> Result<Option<sink::FanOut>> {
        let mut specs = self.sinks.clone();
        if let Some(path) = &self.sinks_file {
            for uri in sink::read_sinks_file(path)? {
                specs.push(
                    sink::Spec::parse(&uri)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
                );
            }
        }
        if specs.is_empty() {
            return Ok(None);
        }
        let opts = sink::Options {
            spool: self.spool.clone(),
            spool_max: self.spool_max,
            queue: self.sink_queue,
            drain_timeout: std::time::Duration::from_nanos(self.sink_drain_timeout.0),
        };
        Ok(Some(sink::FanOut::start(&specs, &opts)?))
    }
}

/// Where each verdict line goes: `--output` (or standard output) and the sinks.
struct Outputs {
    out: Option<BufWriter<Box<dyn Write + Send>>>,
    fanout: Option<sink::FanOut>,
    /// An `--output` error while the sinks are still fed (they must not stop with it).
    out_error: Option<io::Error>,
}

impl Outputs {
    fn new(an: &AnalysisArgs) -> Result<Outputs> {
        Ok(Outputs {
            fanout: an.sinks()?,
            out: an.output()?,
            out_error: None,
        })
    }

    /// One line to every destination. Without sinks, an `--output` error is returned
    /// (the exporter stops writing, as it always has); with sinks, it is kept for the
    /// end and the sinks go on.
    fn write(&mut self, line: &[u8]) -> io::Result<()> {
        if let Some(f) = &self.fanout {
            f.send(line);
        }
        if let Some(o) = self.out.as_mut() {
            if let Err(e) = o.write_all(line) {
                if self.fanout.is_none() {
                    return Err(e);
                }
                self.out = None;
                self.out_error = Some(e);
            }
        }
        Ok(())
    }

    /// Flushes `--output` (a live run does so whenever the exporter goes idle).
    fn flush(&mut self) -> io::Result<()> {
        match self.out.as_mut() {
            Some(o) => o.flush().or_else(|e| {
                if self.fanout.is_none() {
                    return Err(e);
                }
                self.out = None;
                self.out_error = Some(e);
                Ok(())
            }),
            None => Ok(()),
        }
    }

    /// Flushes `--output` and waits for the sinks (bounded): how the output went and
    /// each sink's counters.
    fn finish(mut self, quiet: bool) -> (io::Result<()>, Vec<sink::Report>) {
        let flushed = match self.out.as_mut() {
            Some(o) => o.flush(),
            None => Ok(()),
        };
        let flushed = match self.out_error.take() {
            Some(e) => Err(e),
            None => flushed,
        };
        let reports = self
            .fanout
            .take()
            .map_or_else(Vec::new, |f| f.finish(quiet));
        (flushed, reports)
    }
}

#[derive(Args, Debug)]
struct ReadArgs {
    /// Capture files.
    #[arg(value_name = "PATH", required = true)]
    inputs: Vec<PathBuf>,
}

#[derive(Args, Debug)]
struct SynthArgs {
    /// Output pcap file; with --two-point, the prefix of the two files
    /// (PATH.inside.pcap and PATH.outside.pcap; a trailing .pcap is dropped first).
    #[arg(short, long, value_name = "PATH")]
    output: PathBuf,
    /// Write the traffic as seen on both sides of a transparent TLS-inspecting
    /// middlebox, one file per capture point (replay them as `inside=... outside=...`).
    /// --packets counts the inside file's frames; --failure-share is the share of TLS
    /// sessions the middlebox breaks: a client that pins the certificate rejects the
    /// re-signed one, a server that wants a client certificate gets none, or the SNI
    /// is blocked by forged RSTs.
    #[arg(long)]
    two_point: bool,
    /// Packets to write.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    packets: u64,
    /// Sessions open at the same time.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    concurrent: u32,
    /// Seed: the same seed and flags always give the same file.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of sessions that fail, 0 to 1: resets, rejected or unanswered SYNs, and for
    /// TLS (30 % of it TLS 1.2 with a real certificate chain) certificates rejected by a
    /// client alert, handshake_failure alerts and ClientHellos never answered.
    #[arg(long, value_name = "SHARE", default_value_t = 0.1)]
    failure_share: f64,
}

fn parse_duration(s: &str) -> Result<Nanos, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(Nanos((secs * 1e9) as u64));
        }
        return Err(format!("invalid duration {s:?}"));
    }
    humantime::parse_duration(s)
        .map(|d| Nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)))
        .map_err(|e| format!("invalid duration {s:?}: {e} (examples: 120s, 2m, 500ms, 1.5)"))
}

fn parse_sink(s: &str) -> Result<sink::Spec, String> {
    sink::Spec::parse(s)
}

/// Like [`parse_duration`], but a plain number counts milliseconds.
fn parse_millis(s: &str) -> Result<Nanos, String> {
    if let Ok(ms) = s.parse::<f64>() {
        if ms.is_finite() && ms >= 0.0 {
            return Ok(Nanos((ms * 1e6).round() as u64));
        }
        return Err(format!("invalid milliseconds {s:?}"));
    }
    humantime::parse_duration(s)
        .map(|d| Nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)))
        .map_err(|e| format!("invalid duration {s:?}: {e} (examples: 50, 2.5, 50ms, 1s)"))
}

/// One `--clock-offset` value.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ClockOffsetArg {
    Auto,
    None,
    /// Point `name`'s clock is `offset_ns` ahead of the client side's.
    Given {
        name: String,
        offset_ns: i64,
    },
}

fn parse_clock_offset(s: &str) -> Result<ClockOffsetArg, String> {
    match s {
        "auto" => return Ok(ClockOffsetArg::Auto),
        "none" => return Ok(ClockOffsetArg::None),
        _ => {}
    }
    let Some((name, secs)) = s.split_once('=').filter(|(n, _)| !n.is_empty()) else {
        return Err(format!(
            "invalid clock offset {s:?}: expected auto, none or NAME=SECONDS (e.g. outside=-0.250)"
        ));
    };
    let ns = secs
        .parse::<f64>()
        .ok()
        .map(|v| (v * 1e9).round())
        // Within the i64 range of nanoseconds (292 years).
        .filter(|ns| ns.is_finite() && ns.abs() < 9.2e18)
        .ok_or_else(|| {
            format!(
                "invalid clock offset {s:?}: SECONDS must be signed decimal seconds (e.g. -0.250)"
            )
        })?;
    Ok(ClockOffsetArg::Given {
        name: name.to_string(),
        offset_ns: ns as i64,
    })
}

/// The index of point `name` for flag `flag`, or an error naming the points.
fn point_index(names: &[String], name: &str, flag: &str) -> Result<usize> {
    names.iter().position(|n| n == name).with_context(|| {
        format!(
            "{flag}: there is no capture point {name:?}; the points are {}",
            names
                .iter()
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// Each point's clock offset from the client side's (`reference`), as the
/// `--clock-offset` values say: given, estimated (`auto`, the default) or none.
fn clock_offsets(
    specs: &[ClockOffsetArg],
    names: &[String],
    reference: usize,
    captures: &[&[u8]],
) -> Result<(summary::ClockMode, Vec<ClockEstimate>)> {
    let mut mode = None;
    let mut given = vec![None; names.len()];
    for spec in specs {
        let (name, offset_ns) = match spec {
            ClockOffsetArg::Given { name, offset_ns } => (name, *offset_ns),
            ClockOffsetArg::Auto | ClockOffsetArg::None => {
                let this = match spec {
                    ClockOffsetArg::None => summary::ClockMode::None,
                    _ => summary::ClockMode::Auto,
                };
                if mode.is_some_and(|m| m != this) {
                    bail!("--clock-offset auto and --clock-offset none exclude each other");
                }
                mode = Some(this);
                continue;
            }
        };
        let i = point_index(names, name, "--clock-offset")?;
        if i == reference {
            bail!(
                "--clock-offset: {name:?} is the client-side point, the reference clock: \
                 its offset is 0 (choose another with --client-side)"
            );
        }
        if given[i].replace(offset_ns).is_some() {
            bail!("--clock-offset: point {name:?} is given twice");
        }
    }
    let mode = mode.unwrap_or(summary::ClockMode::Auto);
    let estimate = mode == summary::ClockMode::Auto
        && (0..names.len()).any(|i| i != reference && given[i].is_none());
    let estimated = if estimate {
        clock::estimate(captures, reference, &ClockConfig::default())
    } else {
        Vec::new()
    };
    let clocks = (0..names.len())
        .map(|i| match (i == reference, given[i], estimated.get(i)) {
            (true, _, _) => ClockEstimate::REFERENCE,
            (false, Some(ns), _) => ClockEstimate::fixed(ns, Method::Given),
            (false, None, Some(e)) => *e,
            (false, None, None) => ClockEstimate::OFF,
        })
        .collect();
    Ok((mode, clocks))
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(args) => replay(args),
        Command::Live(args) => live::run(args),
        Command::Read(args) => read(args),
        Command::Synth(args) => synth(args),
        Command::Check(args) => check::run(&args.ifaces, &mut io::stdout().lock())
            .map(|ok| if ok { 0 } else { 1 })
            .map_err(Into::into),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("tapwatch: error: {e:#}");
            std::process::exit(2);
        }
    }
}

/// Splits `NAME=PATH`; a bare path is named after its file stem.
fn point_spec(spec: &str) -> (String, PathBuf) {
    if let Some((name, path)) = spec.split_once('=') {
        if !name.is_empty() && !name.contains('/') {
            return (name.to_string(), PathBuf::from(path));
        }
    }
    let path = PathBuf::from(spec);
    let name = path
        .file_stem()
        .map_or_else(|| spec.to_string(), |s| s.to_string_lossy().into_owned());
    (name, path)
}

fn replay(args: ReplayArgs) -> Result<i32> {
    if args.inputs.len() > MAX_POINTS {
        bail!(
            "at most {MAX_POINTS} capture points are supported, {} given",
            args.inputs.len()
        );
    }
    let listener = args.analysis.metrics_listener()?;
    let mut names: Vec<String> = Vec::new();
    let mut captures = Vec::new();
    for spec in &args.inputs {
        let (name, path) = point_spec(spec);
        if names.contains(&name) {
            bail!("capture point {name:?} is named twice: name the points with NAME=PATH");
        }
        captures.push(MappedCapture::open(&path)?);
        names.push(name);
    }
    let an = &args.analysis;
    let client_side = an.client_side(&names)?;
    let data: Vec<&[u8]> = captures.iter().map(MappedCapture::bytes).collect();
    let (clock_mode, clocks) = clock_offsets(&args.clock_offset, &names, client_side, &data)?;
    for (name, c) in names.iter().zip(&clocks) {
        if c.method == Method::NoMatch {
            eprintln!(
                "tapwatch: warning: no packet was seen at both point {name} and the client side \
                 ({}) in the first {} frames of each: the clock of {name} is not corrected \
                 (give --clock-offset {name}=SECONDS if it differs)",
                names[client_side],
                ClockConfig::default().max_frames
            );
        }
    }
    let cfg = an.pipeline(names.len(), client_side)?;
    let workers = cfg.workers;
    let mut outs = Outputs::new(an)?;
    let sources: Vec<ReplaySource<'_>> = captures
        .iter()
        .zip(&names)
        .zip(&clocks)
        .map(|((c, n), clock)| ReplaySource {
            name: n.clone(),
            data: c.bytes(),
            clock_offset: clock.offset_ns,
        })
        .collect();
    let total_bytes: u64 = captures.iter().map(|c| c.bytes().len() as u64).sum();

    let served = AnalysisArgs::serve_metrics(listener, &names, &outs, None)?;
    let progress = Progress {
        telemetry: served.as_ref().map(|s| std::sync::Arc::clone(&s.telemetry)),
        ..Progress::default()
    };
    let mut export_probe = served
        .as_ref()
        .map(|s| metrics::ExportProbe::new(std::sync::Arc::clone(&s.export)));
    let done = AtomicBool::new(false);
    let show_progress = !args.no_progress && !an.quiet && io::stderr().is_terminal();
    let started = Instant::now();
    let report: ReplayReport<io::Error> = std::thread::scope(|scope| {
        if show_progress {
            scope.spawn(|| summary::progress_bar(&progress, &done, total_bytes));
        }
        let report = pipeline::replay(
            &cfg,
            &sources,
            {
                // One buffer for every record: the exporter allocates nothing per
                // record beyond its evidence text.
                let mut line = Vec::with_capacity(4096);
                let outs = &mut outs;
                let names = &names;
                move |r| {
                    line.clear();
                    engine::json::record_to(&mut line, r, names);
                    outs.write(&line)?;
                    if let Some(p) = export_probe.as_mut() {
                        p.written(r);
                    }
                    Ok(())
                }
            },
            &progress,
        );
        done.store(true, Ordering::Relaxed);
        report
    });
    let elapsed = started.elapsed();
    let (flushed, sink_reports) = outs.finish(an.quiet);

    // Capture errors are printed even with --quiet: they mean the verdicts cover
    // only part of a file.
    for (point, e) in &report.errors {
        eprintln!(
            "tapwatch: point {} ({}): {e}; reading of this point stopped there",
            names[*point],
            captures[*point].path.display()
        );
    }
    let sources: Vec<String> = captures
        .iter()
        .map(|c| c.path.display().to_string())
        .collect();
    let points = summary::Points {
        names: &names,
        sources: &sources,
        client_side,
        match_window: an.match_window,
        pair_window: an.pair_window,
        clock_mode,
        clocks: &clocks,
    };
    let mut summary = summary::Summary::new(&report, &points, elapsed, workers);
    if !sink_reports.is_empty() {
        summary.insert("sinks", sink::reports_json(&sink_reports));
    }
    if !an.quiet {
        let mut err = io::stderr().lock();
        summary.print(&mut err);
        sink::print_reports(&mut err, &sink_reports);
    }
    if let Some(path) = &an.stats {
        summary.write_json(path)?;
    }
    an.linger_metrics(served.as_deref());
    output_result(&report.export, flushed, an.quiet)?;
    Ok(if report.errors.is_empty() { 0 } else { 1 })
}

/// How writing the verdicts went: an error unless every verdict was written or the
/// reader went away (`| head`: as for any Unix filter, not an error).
fn output_result(
    export: &pipeline::ExportReport<io::Error>,
    flushed: io::Result<()>,
    quiet: bool,
) -> Result<()> {
    let Some(e) = export
        .error
        .as_ref()
        .map(|e| e.kind())
        .or(flushed.err().map(|e| e.kind()))
    else {
        return Ok(());
    };
    if e == io::ErrorKind::BrokenPipe {
        // The summary counted verdicts the reader never took.
        if !quiet {
            eprintln!(
                "tapwatch: the output was closed early (broken pipe): not every verdict was delivered"
            );
        }
        return Ok(());
    }
    bail!(
        "writing verdicts failed: {e}; {} verdict(s) not written",
        export.unwritten.max(1)
    );
}

fn read(args: ReadArgs) -> Result<i32> {
    let mut status = 0;
    for path in &args.inputs {
        let cap = MappedCapture::open(path)?;
        let started = Instant::now();
        let (mut frames, mut bytes, mut sum) = (0u64, 0u64, 0u64);
        let mut error = None;
        match CaptureReader::new(cap.bytes()) {
            Ok(reader) => {
                for f in reader {
                    match f {
                        Ok(f) => {
                            frames += 1;
                            bytes += f.data.len() as u64;
                            // Touch the frame as a decoder would: its first bytes.
                            sum = sum.wrapping_add(u64::from(f.data.first().copied().unwrap_or(0)));
                        }
                        Err(e) => error = Some(e.to_string()),
                    }
                }
            }
            Err(e) => error = Some(e.to_string()),
        }
        let secs = started.elapsed().as_secs_f64();
        std::hint::black_box(sum);
        let mut stdout = io::stdout().lock();
        writeln!(
            stdout,
            "{}: {frames} frames, {bytes} bytes in {secs:.3} s ({:.2} Mpps)",
            path.display(),
            frames as f64 / secs.max(1e-9) / 1e6,
        )?;
        if let Some(e) = error {
            eprintln!("tapwatch: {}: {e}", path.display());
            status = 1;
        }
    }
    Ok(status)
}

fn synth(args: SynthArgs) -> Result<i32> {
    if !(0.0..=1.0).contains(&args.failure_share) {
        bail!("--failure-share must be between 0 and 1");
    }
    let cfg = engine::synth::SynthConfig {
        seed: args.seed,
        packets: args.packets,
        concurrent: args.concurrent.max(1),
        failure_share: args.failure_share,
        ..engine::synth::SynthConfig::default()
    };
    if args.two_point {
        return synth_two_point(&args, &cfg);
    }
    let file = File::create(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    let started = Instant::now();
    let summary = engine::synth::write_pcap(&cfg, BufWriter::with_capacity(1 << 20, file))
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!(
        "tapwatch synth: {} packets, {} bytes, {} sessions ({} TLS 1.3, {} TLS 1.2) in {:.2} s -> {}",
        summary.packets,
        summary.bytes,
        summary.sessions,
        summary.tls13,
        summary.tls12,
        started.elapsed().as_secs_f64(),
        args.output.display()
    );
    Ok(0)
}

/// The two files `tapwatch synth --two-point -o PATH` writes: PATH.inside.pcap and
/// PATH.outside.pcap, after dropping a trailing `.pcap` from PATH.
fn two_point_paths(output: &std::path::Path) -> (PathBuf, PathBuf) {
    let mut prefix = output.as_os_str().to_owned();
    if let Some(stem) = output
        .to_str()
        .and_then(|p| p.strip_suffix(".pcap"))
        .filter(|s| !s.is_empty() && !s.ends_with('/'))
    {
        prefix = stem.into();
    }
    let with = |suffix: &str| {
        let mut p = prefix.clone();
        p.push(suffix);
        PathBuf::from(p)
    };
    (with(".inside.pcap"), with(".outside.pcap"))
}

fn synth_two_point(args: &SynthArgs, cfg: &engine::synth::SynthConfig) -> Result<i32> {
    let (inside, outside) = two_point_paths(&args.output);
    let create = |path: &PathBuf| {
        File::create(path).with_context(|| format!("cannot create {}", path.display()))
    };
    let (fin, fout) = (create(&inside)?, create(&outside)?);
    let started = Instant::now();
    let s = engine::synth::write_two_point(cfg, fin, fout)
        .with_context(|| format!("writing {} and {}", inside.display(), outside.display()))?;
    eprintln!(
        "tapwatch synth: {} sessions ({} TLS 1.3, {} TLS 1.2): {} clean, {} certificate rejected by a pinning client, {} client certificate required, {} SNI blocked, {} cut by the end in {:.2} s\n  inside:  {} packets, {} bytes -> {}\n  outside: {} packets, {} bytes -> {}",
        s.sessions,
        s.tls13,
        s.tls12,
        s.clean,
        s.pin_rejected,
        s.client_cert_required,
        s.sni_blocked,
        s.sessions - s.clean - s.pin_rejected - s.client_cert_required - s.sni_blocked,
        started.elapsed().as_secs_f64(),
        s.inside.packets,
        s.inside.bytes,
        inside.display(),
        s.outside.packets,
        s.outside.bytes,
        outside.display(),
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_two_point_paths() {
        let p = |s: &str| {
            let (a, b) = two_point_paths(std::path::Path::new(s));
            (a.display().to_string(), b.display().to_string())
        };
        let both = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            p("/tmp/x"),
            both("/tmp/x.inside.pcap", "/tmp/x.outside.pcap")
        );
        assert_eq!(p("x.pcap"), both("x.inside.pcap", "x.outside.pcap"));
        assert_eq!(p(".pcap"), both(".pcap.inside.pcap", ".pcap.outside.pcap"));
        assert_eq!(
            p("d/.pcap"),
            both("d/.pcap.inside.pcap", "d/.pcap.outside.pcap")
        );
    }

    #[test]
    fn test_parse_clock_offset_exact_nanoseconds() {
        let given = |s: &str| match parse_clock_offset(s) {
            Ok(ClockOffsetArg::Given { name, offset_ns }) => (name, offset_ns),
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(given("outside=-0.250"), ("outside".into(), -250_000_000));
        assert_eq!(given("b=3.7"), ("b".into(), 3_700_000_000));
        assert_eq!(given("b=+1"), ("b".into(), 1_000_000_000));
        assert_eq!(given("b=0.000000001"), ("b".into(), 1));
        assert_eq!(given("b=-86400.000437"), ("b".into(), -86_400_000_437_000));
        assert_eq!(parse_clock_offset("auto"), Ok(ClockOffsetArg::Auto));
        assert_eq!(parse_clock_offset("none"), Ok(ClockOffsetArg::None));
        for bad in ["", "=1", "b=", "b=x", "b=1e19", "b=NaN", "b=inf", "later"] {
            assert!(parse_clock_offset(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn test_parse_millis() {
        assert_eq!(parse_millis("50"), Ok(Nanos::from_millis(50)));
        assert_eq!(parse_millis("2.5"), Ok(Nanos(2_500_000)));
        assert_eq!(parse_millis("50ms"), Ok(Nanos::from_millis(50)));
        assert_eq!(parse_millis("1s"), Ok(Nanos::from_secs(1)));
        for bad in ["-1", "NaN", "inf", "", "soon"] {
            assert!(parse_millis(bad).is_err(), "{bad}");
        }
    }
}
