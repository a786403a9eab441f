//! The end-of-run summary (standard error, and optionally a JSON file) and the
//! progress bar.

use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use engine::clock::{ClockConfig, ClockEstimate};
use engine::pipeline::{Progress, ReplayReport};
use engine::time::Nanos;
use engine::verdict::{EndReason, Verdict};
use serde_json::{json, Map, Value};

/// `--clock-offset` for the points not given an offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockMode {
    /// Estimate each point's offset (the default).
    Auto,
    /// Correct nothing.
    None,
}

impl ClockMode {
    fn as_str(self) -> &'static str {
        match self {
            ClockMode::Auto => "auto",
            ClockMode::None => "none",
        }
    }
}

/// The capture points of the run and how they are set against each other.
#[derive(Debug)]
pub struct Points<'a> {
    pub names: &'a [String],
    /// Per point, where its packets came from (a file's path, an interface).
    pub sources: &'a [String],
    /// Index of the client-side point: the reference clock.
    pub client_side: usize,
    pub match_window: Nanos,
    /// `--pair-window`.
    pub pair_window: Nanos,
    pub clock_mode: ClockMode,
    /// Per point, its clock offset from the client side's.
    pub clocks: &'a [ClockEstimate],
}

/// Everything the run counted, ready to print or serialise.
#[derive(Debug)]
pub struct Summary {
    json: Value,
}

impl Summary {
    pub fn new(
        report: &ReplayReport<io::Error>,
        run: &Points<'_>,
        elapsed: Duration,
        workers: usize,
    ) -> Summary {
        let (names, sources) = (run.names, run.sources);
        let secs = elapsed.as_secs_f64().max(1e-9);
        let mut points = Map::new();
        let mut frames = 0;
        let mut tcp = 0;
        for (i, (st, name)) in report.points.iter().zip(names).enumerate() {
            frames += st.frames;
            tcp += st.tcp;
            let skipped: Map<String, Value> =
                st.skips().map(|(k, v)| (k.to_string(), json!(v))).collect();
            let errors: Vec<String> = report
                .errors
                .iter()
                .filter(|(p, _)| *p == i)
                .map(|(_, e)| e.to_string())
                .collect();
            points.insert(
                name.clone(),
                json!({
                    "source": sources[i],
                    "frames": st.frames,
                    "bytes": st.bytes,
                    "tcp_packets": st.tcp,
                    "skipped": skipped,
                    "skipped_total": st.skipped_total(),
                    "snaplen_cut": st.snaplen_cut,
                    "errors": errors,
                }),
            );
        }
        let w = &report.workers;
        let verdicts: Map<String, Value> = Verdict::ALL
            .iter()
            .map(|v| (v.as_str().to_string(), json!(w.verdicts[v.index()])))
            .collect();
        let ends: Map<String, Value> = EndReason::ALL
            .iter()
            .map(|e| (e.as_str().to_string(), json!(w.end_reasons[e.index()])))
            .collect();
        let drops: u64 = report.points.iter().map(|p| p.ring_full_drops).sum();
        let waits: u64 = report.points.iter().map(|p| p.ring_full_waits).sum();
        let clocks: Map<String, Value> = names
            .iter()
            .zip(run.clocks)
            .map(|(name, c)| {
                (
                    name.clone(),
                    json!({
                        "offset_ns": c.offset_ns,
                        "offset_ms": c.offset_ns as f64 / 1e6,
                        "samples": c.samples,
                        "spread_ns": c.spread_ns,
                        "method": c.method.as_str(),
                    }),
                )
            })
            .collect();
        let json = json!({
            "frames": frames,
            "tcp_packets": tcp,
            "packets_processed": w.packets,
            "elapsed_s": secs,
            "mpps": frames as f64 / secs / 1e6,
            "workers": workers,
            "points": points,
            "sessions": w.sessions,
            "peak_sessions": w.peak_sessions,
            "verdicts": verdicts,
            "end_reasons": ends,
            "evicted": w.evicted(),
            "linger_cut": w.linger_cut,
            "retransmissions": w.retransmissions,
            "tls": {
                "sessions": w.tls.sessions,
                "not_tls": w.tls.not_tls,
                "buffers_exhausted": w.tls.buffers_exhausted,
                "buffers_made": w.tls.buffers_peak,
                "streams_exhausted": w.tls.streams_exhausted,
                "streams_peak": w.tls.streams_peak,
                "memo": {
                    "fingerprint_hits": w.tls.memo.fingerprint_hits,
                    "fingerprint_misses": w.tls.memo.fingerprint_misses,
                    "cert_hits": w.tls.memo.cert_hits,
                    "cert_misses": w.tls.memo.cert_misses,
                    "hellos_stored": w.tls.memo.hellos_stored,
                    "hellos_shared": w.tls.memo.hellos_shared,
                    "certs_stored": w.tls.memo.leaves_stored,
                    "certs_shared": w.tls.memo.leaves_shared,
                },
            },
            "time_went_back": w.time_went_back,
            "records_written": report.export.written,
            "records_unwritten": report.export.unwritten,
            "dropped": {
                "dispatch_ring_full": drops,
            },
            "waits": {
                "dispatch_ring_full": waits,
                "record_ring_full": report.record_waits,
            },
            "clock": {
                "reference": names.get(run.client_side),
                "mode": run.clock_mode.as_str(),
                "max_frames": ClockConfig::default().max_frames,
                "points": clocks,
            },
            "correlate": {
                "client_side": names.get(run.client_side),
                "match_window_ms": run.match_window.0 as f64 / 1e6,
                "rsts_not_compared": w.rsts_not_compared,
            },
            "pairing": {
                "window_s": run.pair_window.0 as f64 / 1e9,
                "legs_joined": report.export.pairing.joined,
                "ambiguous": report.export.pairing.ambiguous,
                "unproven": report.export.pairing.unproven,
                "overflow": report.export.pairing.overflow,
                "waited": report.export.pairing.waited,
                "peak_held": report.export.pairing.peak_held,
                "peak_open": report.export.pairing.peak_open,
                "open_full": report.export.pairing.open_full,
                "notices_lost": report.notices_lost,
            },
            "first_ts": report.first_ts.map(|t| t.to_string()),
            "last_ts": report.last_ts.map(|t| t.to_string()),
        });
        Summary { json }
    }

    /// Adds a section (the live capture's counters, say).
    pub fn insert(&mut self, key: &str, value: Value) {
        if let Some(m) = self.json.as_object_mut() {
            m.insert(key.to_string(), value);
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.json.get(key)
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.json)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn print(&self, out: &mut impl Write) {
        let _ = self.print_inner(out);
    }

    fn print_inner(&self, out: &mut impl Write) -> io::Result<()> {
        let j = &self.json;
        writeln!(
            out,
            "tapwatch: {} frames ({} TCP) in {:.3} s: {:.2} Mpps with {} worker(s)",
            j["frames"],
            j["tcp_packets"],
            j["elapsed_s"].as_f64().unwrap_or(0.0),
            j["mpps"].as_f64().unwrap_or(0.0),
            j["workers"]
        )?;
        for (name, p) in j["points"].as_object().into_iter().flatten() {
            writeln!(
                out,
                "  point {name} ({}): {} frames, {} TCP, skipped: {}{}",
                p["source"].as_str().unwrap_or("?"),
                p["frames"],
                p["tcp_packets"],
                nonzero(&p["skipped"]),
                if p["snaplen_cut"].as_u64().unwrap_or(0) > 0 {
                    format!(
                        "; {} cut by the snap length (processed as far as they go)",
                        p["snaplen_cut"]
                    )
                } else {
                    String::new()
                }
            )?;
        }
        if let Some(line) = clock_line(&j["clock"]) {
            writeln!(out, "  clock: {line}")?;
        }
        let p = &j["pairing"];
        if p["peak_held"].as_u64().unwrap_or(0) > 0 {
            writeln!(
                out,
                "  proxied legs: {} joined into their client's session (the counts below are per connection, before joining); {} left unjoined as ambiguous; {} handed on early for lack of room (peak held {}); {} waited for their other leg",
                p["legs_joined"], p["ambiguous"], p["overflow"], p["peak_held"], p["waited"]
            )?;
            let lost = ["unproven", "open_full", "notices_lost"]
                .iter()
                .map(|k| p[k].as_u64().unwrap_or(0))
                .collect::<Vec<_>>();
            if lost.iter().any(|&n| n > 0) {
                writeln!(
                    out,
                    "  proxied legs NOT joined for lack of room to follow open sessions: {} (notices lost: {} on full rings, {} on a full table)",
                    lost[0], lost[2], lost[1]
                )?;
            }
        }
        writeln!(
            out,
            "  sessions: {} (peak held at once: {}, the sum of each worker's peak)",
            j["sessions"], j["peak_sessions"]
        )?;
        writeln!(out, "  verdicts: {}", nonzero(&j["verdicts"]))?;
        writeln!(out, "  ended by: {}", nonzero(&j["end_reasons"]))?;
        writeln!(
            out,
            "  evicted: {}, closed sessions judged early to make room: {}, retransmissions: {}",
            j["evicted"], j["linger_cut"], j["retransmissions"]
        )?;
        writeln!(
            out,
            "  TLS: {} session(s), {} with other payload; buffers made: {}, busy when needed: {}{}",
            j["tls"]["sessions"],
            j["tls"]["not_tls"],
            j["tls"]["buffers_made"],
            j["tls"]["buffers_exhausted"],
            match j["tls"]["streams_exhausted"].as_u64().unwrap_or(0) {
                0 => String::new(),
                n => format!(", streams not followed for want of room: {n}"),
            }
        )?;
        writeln!(
            out,
            "  dropped: {}; verdicts written: {}{}",
            nonzero(&j["dropped"]),
            j["records_written"],
            if j["records_unwritten"].as_u64().unwrap_or(0) > 0 {
                format!(", NOT written: {}", j["records_unwritten"])
            } else {
                String::new()
            }
        )
    }
}

/// The non-zero counters of a JSON object as `name count, ...` (or `none`).
pub fn nonzero(m: &Value) -> String {
    let parts: Vec<String> = m
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| v.as_u64().unwrap_or(0) > 0)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// The clock correction of each point but the reference, in one line; `None` with
/// a single point.
fn clock_line(clock: &Value) -> Option<String> {
    let points = clock["points"].as_object()?;
    if points.len() < 2 {
        return None;
    }
    let reference = clock["reference"].as_str().unwrap_or("?");
    let mut parts = vec![format!("reference {reference} (client side)")];
    for (name, c) in points {
        let ms = c["offset_ms"].as_f64().unwrap_or(0.0);
        let method = c["method"].as_str().unwrap_or("?");
        parts.push(match method {
            "reference" => continue,
            "handshake" | "segments" => format!(
                "{name} {ms:+.3} ms, estimated from {} packets seen at both ({method}), spread {:.3} ms",
                c["samples"],
                c["spread_ns"].as_f64().unwrap_or(0.0) / 1e6
            ),
            "given" => format!("{name} {ms:+.3} ms (given)"),
            "no_match" => format!("{name} not corrected (no packet seen at both points)"),
            _ => format!("{name} not corrected (--clock-offset none)"),
        });
    }
    Some(parts.join("; "))
}

/// Draws a progress bar from the pipeline's counters until `done`.
pub fn progress_bar(progress: &Progress, done: &AtomicBool, total_bytes: u64) {
    let bar = indicatif::ProgressBar::new(total_bytes);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    while !done.load(Ordering::Relaxed) {
        bar.set_position(progress.bytes.load(Ordering::Relaxed));
        bar.set_message(format!(
            "{} frames",
            progress.frames.load(Ordering::Relaxed)
        ));
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
}
