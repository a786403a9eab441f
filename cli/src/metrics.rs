//! `--metrics ADDR`: the run's counters in the Prometheus text format (version
//! 0.0.4), served over HTTP/1.1 on a thread of its own. docs/metrics.md lists
//! every metric.
//!
//! What is served is read from the shares the pipeline's threads publish
//! (engine::metrics: a copy at most every 100 ms, taken with `try_lock` so that a
//! scrape never makes a worker wait), from the sinks' own state (one lock per sink
//! per scrape) and, for live capture, from the capture threads' atomics. The
//! scrape allocates; the packet path does not notice it.
//!
//! The responder is written by hand, not taken from an HTTP crate: it answers one
//! `GET /metrics` per connection and closes, which is all a Prometheus scraper
//! needs, and an HTTP server crate (hyper, tiny_http) would bring an async
//! runtime or a thread pool and a dozen dependencies for those forty lines.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use engine::metrics::{self, Share, Telemetry};
use engine::stats::ReaderStats;
use engine::verdict::{EndReason, Record, Verdict};
use engine::wire::Skip;
use hdrhistogram::Histogram;

use crate::sink;

/// Quantiles of the two summaries.
const QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];

/// What the exporter thread publishes.
#[derive(Debug)]
pub struct ExportSnapshot {
    /// Records handed to the output successfully (as `records_written`).
    pub written: u64,
    /// Wall time from a record's push on its worker's ring to the end of its write
    /// to the output and the sinks' queues, ns.
    pub latency: Histogram<u64>,
    pub latency_sum_ns: u64,
}

impl Default for ExportSnapshot {
    fn default() -> Self {
        ExportSnapshot {
            written: 0,
            latency: metrics::histogram(),
            latency_sum_ns: 0,
        }
    }
}

/// The exporter's side: records each written record's latency, publishes at the
/// cadence, and once more when dropped (the exporter thread ends).
#[derive(Debug)]
pub struct ExportProbe {
    share: Arc<Share<ExportSnapshot>>,
    written: u64,
    latency: Histogram<u64>,
    latency_sum_ns: u64,
    last_publish: Instant,
}

impl ExportProbe {
    pub fn new(share: Arc<Share<ExportSnapshot>>) -> Self {
        ExportProbe {
            share,
            written: 0,
            latency: metrics::histogram(),
            latency_sum_ns: 0,
            last_publish: Instant::now(),
        }
    }

    /// `r` was written.
    pub fn written(&mut self, r: &Record) {
        self.written += 1;
        if r.pushed_ns != 0 {
            let ns = metrics::mono_ns().saturating_sub(r.pushed_ns);
            self.latency_sum_ns += ns;
            self.latency
                .saturating_record(ns.clamp(1, metrics::HIST_MAX_NS));
        }
        let now = Instant::now();
        if now.duration_since(self.last_publish) >= metrics::PUBLISH_EVERY {
            self.publish(now, false);
        }
    }

    fn publish(&mut self, now: Instant, last: bool) {
        let g = if last {
            Some(self.share.lock())
        } else {
            self.share.try_publish()
        };
        let Some(mut g) = g else { return };
        g.written = self.written;
        g.latency_sum_ns = self.latency_sum_ns;
        // Same bounds: cannot fail, allocates nothing.
        let _ = g.latency.add(&self.latency);
        drop(g);
        self.latency.reset();
        self.last_publish = now;
    }
}

impl Drop for ExportProbe {
    fn drop(&mut self) {
        self.publish(Instant::now(), true);
    }
}

/// Per-point counters of a live run, read at scrape time.
#[derive(Debug, Default, Clone)]
pub struct LivePoints {
    pub points: Vec<ReaderStats>,
    /// Frames the kernel dropped before the sockets (rx_dropped + rx_ring_full
    /// of XDP_STATISTICS), per point.
    pub kernel_drops: Vec<u64>,
}

/// Everything a scrape reads.
pub struct Sources {
    pub names: Vec<String>,
    pub telemetry: Arc<Telemetry>,
    pub export: Arc<Share<ExportSnapshot>>,
    pub sinks: Vec<sink::Probe>,
    /// Live capture: the capture threads' counters (replay: the reader's share).
    pub live: Option<Box<dyn Fn() -> LivePoints + Send + Sync>>,
    /// The run is over and its summary written (`--metrics-linger`).
    pub finished: AtomicBool,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("names", &self.names)
            .finish()
    }
}

impl Sources {
    pub fn new(names: &[String], telemetry: Arc<Telemetry>) -> Self {
        Sources {
            names: names.to_vec(),
            telemetry,
            export: Arc::new(Share::default()),
            sinks: Vec::new(),
            live: None,
            finished: AtomicBool::new(false),
        }
    }
}

/// Binds `addr` (before any capture starts: a bad address is a setup error).
pub fn bind(addr: &str) -> Result<TcpListener> {
    let a: SocketAddr = addr
        .parse()
        .with_context(|| format!("--metrics {addr}: expected IP:PORT, e.g. 127.0.0.1:9464"))?;
    TcpListener::bind(a).with_context(|| format!("--metrics {addr}: cannot listen"))
}

/// Serves scrapes on `listener` from `sources`, on thread `tw-metrics`, until the
/// process ends.
pub fn serve(listener: TcpListener, sources: Arc<Sources>) -> Result<()> {
    thread::Builder::new()
        .name("tw-metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                // One slow or broken client costs at most the timeouts.
                let _ = answer(conn, &sources);
            }
        })
        .context("spawn metrics thread")?;
    Ok(())
}

/// One request, one response, then close.
fn answer(mut conn: TcpStream, sources: &Sources) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut req = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    // Up to the end of the headers (the request has no body); 16 KiB at most.
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16_384 {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
    }
    let line = req.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next(), parts.next());
    let path = target.map(|t| t.split('?').next().unwrap_or(t));
    let (status, ctype, body) = match (method, path) {
        (Some("GET"), Some("/metrics")) => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render(sources),
        ),
        _ => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: GET /metrics\n".to_string(),
        ),
    };
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    conn.write_all(body.as_bytes())?;
    conn.flush()
}

/// The text exposition, built in one string.
struct Text {
    out: String,
}

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"");
                for c in v.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
    /// A one-sample family.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
    /// A summary in seconds from a histogram of ns and the exact sum of ns.
    fn summary(&mut self, name: &str, help: &str, h: &Histogram<u64>, sum_ns: u64) {
        self.family(name, "summary", help);
        for q in QUANTILES {
            let v = if h.is_empty() {
                "NaN".to_string()
            } else {
                format!("{}", h.value_at_quantile(q) as f64 / 1e9)
            };
            self.sample(name, &[("quantile", &q.to_string())], v);
        }
        self.sample(&format!("{name}_sum"), &[], sum_ns as f64 / 1e9);
        self.sample(&format!("{name}_count"), &[], h.len());
    }
}

/// Every metric, from what is published now.
pub fn render(src: &Sources) -> String {
    let mut t = Text {
        out: String::with_capacity(16_384),
    };
    // Whether the run is over, read before the copies: a scrape that says finished
    // must show the final counters. Read after them, a scrape could copy a
    // snapshot, be descheduled while the run ended, and then report the stale
    // copy as final (seen once: records written 0 against 1 in --stats). Pairs with
    // the release store of `linger_metrics`, made after every final publish.
    let finished = src.finished.load(Ordering::Acquire);
    // Copies first, each lock held only for the copy.
    let workers: Vec<_> = src
        .telemetry
        .workers()
        .iter()
        .map(|w| w.lock().clone())
        .collect();
    let (points, kernel_drops) = match &src.live {
        Some(f) => {
            let l = f();
            (l.points, Some(l.kernel_drops))
        }
        None => (src.telemetry.reader.lock().points.clone(), None),
    };
    let (written, latency, latency_sum_ns) = {
        let e = src.export.lock();
        (e.written, e.latency.clone(), e.latency_sum_ns)
    };
    let sinks: Vec<_> = src
        .sinks
        .iter()
        .map(|s| (s.uri.as_str(), s.read()))
        .collect();
    let name = |i: usize| src.names.get(i).map_or("?", String::as_str);
    let ids: Vec<String> = (0..workers.len()).map(|i| i.to_string()).collect();
    let mut total = engine::worker::WorkerStats::default();
    for w in &workers {
        total.add(&w.stats);
    }

    t.single(
        "tapwatch_run_finished",
        "gauge",
        "1 once the run is over and its summary written (--metrics-linger), else 0.",
        u8::from(finished),
    );
    t.single(
        "tapwatch_workers",
        "gauge",
        "Worker threads.",
        workers.len(),
    );

    // Input, per capture point.
    let per_point = |t: &mut Text, metric: &str, help: &str, f: &dyn Fn(&ReaderStats) -> u64| {
        t.family(metric, "counter", help);
        for (i, p) in points.iter().enumerate() {
            t.sample(metric, &[("point", name(i))], f(p));
        }
    };
    per_point(&mut t, "tapwatch_frames_total", "Frames read.", &|p| {
        p.frames
    });
    per_point(
        &mut t,
        "tapwatch_bytes_total",
        "Captured bytes read (frame data).",
        &|p| p.bytes,
    );
    per_point(
        &mut t,
        "tapwatch_tcp_packets_total",
        "Frames decoded to TCP segments and handed to the workers.",
        &|p| p.tcp,
    );
    per_point(
        &mut t,
        "tapwatch_snaplen_cut_total",
        "TCP segments whose payload the snap length cut.",
        &|p| p.snaplen_cut,
    );
    t.family(
        "tapwatch_skipped_total",
        "counter",
        "Frames not followed, by reason.",
    );
    for (i, p) in points.iter().enumerate() {
        for s in Skip::ALL {
            t.sample(
                "tapwatch_skipped_total",
                &[("point", name(i)), ("reason", s.as_str())],
                p.skipped[s.index()],
            );
        }
    }

    // Workers.
    t.family(
        "tapwatch_packets_processed_total",
        "counter",
        "TCP segments the workers followed.",
    );
    for (i, w) in workers.iter().enumerate() {
        t.sample(
            "tapwatch_packets_processed_total",
            &[("worker", &ids[i])],
            w.stats.packets,
        );
    }
    t.family(
        "tapwatch_sessions_total",
        "counter",
        "Sessions judged (one verdict record each).",
    );
    for (i, w) in workers.iter().enumerate() {
        t.sample(
            "tapwatch_sessions_total",
            &[("worker", &ids[i])],
            w.stats.sessions,
        );
    }
    t.family("tapwatch_sessions_open", "gauge", "Sessions held now.");
    for (i, w) in workers.iter().enumerate() {
        t.sample(
            "tapwatch_sessions_open",
            &[("worker", &ids[i])],
            w.open_sessions,
        );
    }
    t.single(
        "tapwatch_sessions_peak",
        "gauge",
        "Most sessions held at once: the sum of each worker's peak.",
        total.peak_sessions,
    );
    t.family(
        "tapwatch_verdicts_total",
        "counter",
        "Verdict records, by verdict (docs/verdicts.md).",
    );
    for v in Verdict::ALL {
        t.sample(
            "tapwatch_verdicts_total",
            &[("verdict", v.as_str())],
            total.verdicts[v.index()],
        );
    }
    t.family(
        "tapwatch_end_reasons_total",
        "counter",
        "Verdict records, by end_reason.",
    );
    for r in EndReason::ALL {
        t.sample(
            "tapwatch_end_reasons_total",
            &[("reason", r.as_str())],
            total.end_reasons[r.index()],
        );
    }
    t.single(
        "tapwatch_retransmissions_total",
        "counter",
        "Retransmitted segments seen.",
        total.retransmissions,
    );
    t.single(
        "tapwatch_time_went_back_total",
        "counter",
        "Packets whose capture time was before the worker's clock.",
        total.time_went_back,
    );

    // Drops, by cause.
    let sum_sinks =
        |f: &dyn Fn(&sink::Counters) -> u64| sinks.iter().map(|(_, r)| f(&r.c)).sum::<u64>();
    t.family(
        "tapwatch_drops_total",
        "counter",
        "What was lost or cut short, by cause (docs/metrics.md).",
    );
    let ring_full: u64 = points.iter().map(|p| p.ring_full_drops).sum();
    t.sample(
        "tapwatch_drops_total",
        &[("cause", "dispatch_ring_full")],
        ring_full,
    );
    if let Some(k) = &kernel_drops {
        for (i, d) in k.iter().enumerate() {
            t.sample(
                "tapwatch_drops_total",
                &[("cause", "capture_kernel"), ("point", name(i))],
                d,
            );
        }
    }
    t.sample(
        "tapwatch_drops_total",
        &[("cause", "eviction")],
        total.evicted(),
    );
    t.sample(
        "tapwatch_drops_total",
        &[("cause", "linger_cut")],
        total.linger_cut,
    );
    t.sample(
        "tapwatch_drops_total",
        &[("cause", "sink_spool_full")],
        sum_sinks(&|c| c.dropped_spool_full),
    );
    t.sample(
        "tapwatch_drops_total",
        &[("cause", "sink_queue_full")],
        sum_sinks(&|c| c.dropped_queue_full),
    );
    t.sample(
        "tapwatch_drops_total",
        &[("cause", "sink_spool_error")],
        sum_sinks(&|c| c.dropped_spool_error),
    );
    t.sample(
        "tapwatch_drops_total",
        &[("cause", "sink_oversized")],
        sum_sinks(&|c| c.oversized),
    );
    t.sample(
        "tapwatch_drops_total",
        &[("cause", "tls_buffers_exhausted")],
        total.tls.buffers_exhausted,
    );
    t.sample(
        "tapwatch_drops_total",
        &[("cause", "tls_streams_exhausted")],
        total.tls.streams_exhausted,
    );
    t.sample(
        "tapwatch_drops_total",
        &[("cause", "pairing_notice_ring_full")],
        workers.iter().map(|w| w.notices_lost).sum::<u64>(),
    );
    t.family(
        "tapwatch_waits_total",
        "counter",
        "Times a thread waited for room on a full ring (nothing lost), by ring.",
    );
    t.sample(
        "tapwatch_waits_total",
        &[("ring", "dispatch")],
        points.iter().map(|p| p.ring_full_waits).sum::<u64>(),
    );
    t.sample(
        "tapwatch_waits_total",
        &[("ring", "record")],
        workers.iter().map(|w| w.record_waits).sum::<u64>(),
    );

    // Rings.
    let ring =
        |t: &mut Text, metric: &str, help: &str, f: &dyn Fn(&metrics::WorkerSnapshot) -> u64| {
            t.family(metric, "gauge", help);
            for (i, w) in workers.iter().enumerate() {
                t.sample(metric, &[("worker", &ids[i])], f(w));
            }
        };
    ring(
        &mut t,
        "tapwatch_dispatch_ring_batches",
        "Batches waiting on the worker's dispatch rings (all readers).",
        &|w| w.dispatch_ring,
    );
    ring(
        &mut t,
        "tapwatch_dispatch_ring_capacity_batches",
        "Capacity of the worker's dispatch rings (all readers), in batches.",
        &|w| w.dispatch_ring_capacity,
    );
    ring(
        &mut t,
        "tapwatch_record_ring_records",
        "Verdict records waiting on the worker's record ring.",
        &|w| w.record_ring,
    );
    ring(
        &mut t,
        "tapwatch_record_ring_capacity_records",
        "Capacity of the worker's record ring.",
        &|w| w.record_ring_capacity,
    );

    // Output and sinks.
    t.single(
        "tapwatch_records_written_total",
        "counter",
        "Verdict records delivered to the output (--output and the sinks' queues).",
        written,
    );
    let per_sink = |t: &mut Text,
                    metric: &str,
                    kind: &str,
                    help: &str,
                    f: &dyn Fn(&sink::ProbeReading) -> u64| {
        t.family(metric, kind, help);
        for (uri, r) in &sinks {
            t.sample(metric, &[("sink", uri)], f(r));
        }
    };
    per_sink(
        &mut t,
        "tapwatch_sink_produced_total",
        "counter",
        "Lines handed to the sink.",
        &|r| r.c.produced,
    );
    per_sink(
        &mut t,
        "tapwatch_sink_delivered_total",
        "counter",
        "Lines the collector took.",
        &|r| r.c.delivered,
    );
    per_sink(
        &mut t,
        "tapwatch_sink_spooled_total",
        "counter",
        "Lines written to the spool.",
        &|r| r.c.spooled,
    );
    per_sink(
        &mut t,
        "tapwatch_sink_resent_total",
        "counter",
        "Lines sent again after a reconnect.",
        &|r| r.c.resent,
    );
    per_sink(
        &mut t,
        "tapwatch_sink_outages_total",
        "counter",
        "Outages (down, then up again).",
        &|r| r.c.outages,
    );
    per_sink(
        &mut t,
        "tapwatch_sink_lost_at_exit_total",
        "counter",
        "Lines not delivered at exit and not kept.",
        &|r| r.c.lost_at_exit,
    );
    t.family(
        "tapwatch_sink_dropped_total",
        "counter",
        "Lines dropped, by sink and cause.",
    );
    for (uri, r) in &sinks {
        for (cause, n) in [
            ("spool_full", r.c.dropped_spool_full),
            ("queue_full", r.c.dropped_queue_full),
            ("spool_error", r.c.dropped_spool_error),
            ("oversized", r.c.oversized),
        ] {
            t.sample(
                "tapwatch_sink_dropped_total",
                &[("sink", uri), ("cause", cause)],
                n,
            );
        }
    }
    per_sink(
        &mut t,
        "tapwatch_sink_queue_lines",
        "gauge",
        "Lines in the sink's memory queue now.",
        &|r| r.queue_lines,
    );
    per_sink(
        &mut t,
        "tapwatch_sink_spool_lines",
        "gauge",
        "Lines in the sink's spool now.",
        &|r| r.spool_lines,
    );
    per_sink(
        &mut t,
        "tapwatch_sink_spool_bytes",
        "gauge",
        "Bytes of the sink's spool now.",
        &|r| r.spool_bytes,
    );
    per_sink(
        &mut t,
        "tapwatch_sink_up",
        "gauge",
        "1 while the collector is reachable, else 0.",
        &|r| u64::from(!r.down),
    );

    // TLS.
    t.single(
        "tapwatch_tls_sessions_total",
        "counter",
        "Sessions in which TLS was detected.",
        total.tls.sessions,
    );
    t.single(
        "tapwatch_tls_not_tls_total",
        "counter",
        "Sessions whose payload was not TLS.",
        total.tls.not_tls,
    );
    t.single(
        "tapwatch_tls_buffers_exhausted_total",
        "counter",
        "Times a split handshake message or out-of-order data found no free TLS buffer.",
        total.tls.buffers_exhausted,
    );
    t.single(
        "tapwatch_tls_streams_exhausted_total",
        "counter",
        "Times a partly read TLS stream direction found no place in the stream pool (not followed further).",
        total.tls.streams_exhausted,
    );
    t.single(
        "tapwatch_tls_streams_peak",
        "gauge",
        "Most TLS stream directions held in the stream pool at once, summed over workers.",
        total.tls.streams_peak,
    );
    t.family(
        "tapwatch_tls_memo_total",
        "counter",
        "TLS memo lookups, by kind and result.",
    );
    let m = &total.tls.memo;
    for (kind, result, n) in [
        ("fingerprint", "hit", m.fingerprint_hits),
        ("fingerprint", "miss", m.fingerprint_misses),
        ("certificate", "hit", m.cert_hits),
        ("certificate", "miss", m.cert_misses),
    ] {
        t.sample(
            "tapwatch_tls_memo_total",
            &[("kind", kind), ("result", result)],
            n,
        );
    }

    // Timings.
    let mut packet_ns = metrics::histogram();
    let mut packet_sum = 0u64;
    for w in &workers {
        let _ = packet_ns.add(&w.packet_ns);
        packet_sum += w.packet_ns_sum;
    }
    t.summary(
        "tapwatch_packet_processing_seconds",
        "Worker time per packet: each batch's wall time divided by its packets, counted once per packet (all workers).",
        &packet_ns,
        packet_sum,
    );
    t.summary(
        "tapwatch_export_latency_seconds",
        "Wall time from a verdict record's push on its worker's ring to the end of its write by the exporter.",
        &latency,
        latency_sum_ns,
    );
    t.out
}
