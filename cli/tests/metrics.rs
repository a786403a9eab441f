//! `--metrics`: the endpoint is scraped over HTTP, its text is parsed strictly
//! (Prometheus text format 0.0.4), and its final counters equal the run's
//! `--stats` JSON.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A series: metric name and its labels, sorted.
type Series = (String, BTreeMap<String, String>);

/// A port free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP GET: status line, headers, body.
fn get(port: u16, path: &str) -> Option<(String, String, String)> {
    let mut c = TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(c, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    c.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8(buf).expect("response is UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("headers end");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let content_length: usize = headers
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .parse()
        .unwrap();
    assert_eq!(content_length, body.len(), "Content-Length is the body's");
    Some((status.to_string(), headers.to_string(), body.to_string()))
}

fn valid_name(n: &str) -> bool {
    let mut cs = n.chars();
    cs.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses the text format strictly: every line is `# HELP name text`,
/// `# TYPE name type` or `name{labels} value`; each family is declared once
/// (HELP then TYPE) before its samples; counters end in `_total`; no series twice.
fn parse(text: &str) -> BTreeMap<Series, f64> {
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helped: BTreeSet<String> = BTreeSet::new();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP has text");
            assert!(valid_name(name) && !help.is_empty(), "bad HELP: {line}");
            assert!(helped.insert(name.to_string()), "HELP twice: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a type");
            assert!(valid_name(name), "bad TYPE: {line}");
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            assert!(
                ["counter", "gauge", "summary", "histogram", "untyped"].contains(&kind),
                "bad type: {line}"
            );
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter without _total: {line}");
            }
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "TYPE twice: {line}"
            );
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "bad line: {line:?}"
        );
        // name{labels} value
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = match value {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (
                n,
                parse_labels(l.strip_suffix('}').expect("labels close"), line),
            ),
            None => (series, BTreeMap::new()),
        };
        assert!(valid_name(name), "bad metric name: {line}");
        let family = [
            name,
            name.trim_end_matches("_sum"),
            name.trim_end_matches("_count"),
        ]
        .into_iter()
        .find(|f| types.contains_key(*f))
        .unwrap_or_else(|| panic!("sample before its TYPE: {line}"));
        if family != name {
            assert_eq!(types[family], "summary", "{line}");
        }
        if types[family] == "summary" && family == name {
            assert!(
                labels.contains_key("quantile"),
                "summary sample without quantile: {line}"
            );
        }
        if types[family] == "counter" {
            assert!(
                value >= 0.0 && value.fract() == 0.0,
                "counter value: {line}"
            );
        }
        assert!(
            out.insert((name.to_string(), labels), value).is_none(),
            "series twice: {line}"
        );
    }
    out
}

/// `k="v",k2="v2"` with `\\`, `\"` and `\n` escapes.
fn parse_labels(s: &str, line: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (k, r) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad labels: {line}"));
        assert!(
            valid_name(k) && !k.starts_with("__"),
            "bad label name: {line}"
        );
        let mut v = String::new();
        let mut chars = r.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => v.push('\\'),
                    Some((_, '"')) => v.push('"'),
                    Some((_, 'n')) => v.push('\n'),
                    _ => panic!("bad escape: {line}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => v.push(c),
                None => panic!("unterminated label value: {line}"),
            }
        };
        assert!(m.insert(k.to_string(), v).is_none(), "label twice: {line}");
        rest = &r[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
        if rest.is_empty() {
            break;
        }
    }
    m
}

/// The scraped metrics, with helpers to sum a family.
struct Scrape(BTreeMap<Series, f64>);

impl Scrape {
    /// Sum of `name` over the series whose labels include `with`.
    fn sum(&self, name: &str, with: &[(&str, &str)]) -> u64 {
        let mut found = false;
        let s: f64 = self
            .0
            .iter()
            .filter(|((n, l), _)| {
                n == name
                    && with
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(v))
            })
            .map(|(_, v)| {
                found = true;
                *v
            })
            .sum();
        assert!(found, "no series {name} {with:?}");
        s as u64
    }
}

fn spawn(args: &[&str], port: u16, stats: &Path) -> Child {
    bin()
        .arg("replay")
        .arg("-q")
        .args([
            "--metrics",
            &format!("127.0.0.1:{port}"),
            "--metrics-linger",
            "120s",
        ])
        .args(["--stats", stats.to_str().unwrap(), "-o", "/dev/null"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tapwatch")
}

/// Scrapes until the run is over; every scrape on the way is checked too, and
/// counters never go back. Returns the final scrape.
fn scrape_to_the_end(child: &mut Child, port: u16) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last: Option<Scrape> = None;
    let mut scrapes = 0;
    loop {
        assert!(Instant::now() < deadline, "the run did not finish in time");
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("tapwatch exited ({status}) while lingering: {err}");
        }
        let Some((status, headers, body)) = get(port, "/metrics") else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(
            headers.contains("Content-Type: text/plain; version=0.0.4"),
            "{headers}"
        );
        let now = Scrape(parse(&body));
        scrapes += 1;
        if let Some(prev) = &last {
            for (series, v) in &prev.0 {
                if series.0.ends_with("_total") || series.0.ends_with("_count") {
                    assert!(now.0[series] >= *v, "counter went back: {series:?}");
                }
            }
        }
        let finished = now.sum("tapwatch_run_finished", &[]) == 1;
        last = Some(now);
        if finished {
            assert!(scrapes >= 1);
            return last.unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The final scrape equals the `--stats` JSON, counter for counter.
fn check_equal(m: &Scrape, s: &Value) {
    let n = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"));
    let frames: u64 = s["points"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(point, p)| {
            let l = [("point", point.as_str())];
            assert_eq!(
                m.sum("tapwatch_frames_total", &l),
                n(&p["frames"]),
                "{point} frames"
            );
            assert_eq!(
                m.sum("tapwatch_bytes_total", &l),
                n(&p["bytes"]),
                "{point} bytes"
            );
            assert_eq!(
                m.sum("tapwatch_tcp_packets_total", &l),
                n(&p["tcp_packets"]),
                "{point} tcp_packets"
            );
            assert_eq!(
                m.sum("tapwatch_skipped_total", &l),
                n(&p["skipped_total"]),
                "{point} skipped_total"
            );
            for (reason, k) in p["skipped"].as_object().unwrap() {
                assert_eq!(
                    m.sum(
                        "tapwatch_skipped_total",
                        &[("point", point), ("reason", reason)]
                    ),
                    n(k),
                    "{point} skipped {reason}"
                );
            }
            n(&p["frames"])
        })
        .sum();
    assert_eq!(frames, n(&s["frames"]));
    assert_eq!(m.sum("tapwatch_frames_total", &[]), n(&s["frames"]));
    assert_eq!(
        m.sum("tapwatch_tcp_packets_total", &[]),
        n(&s["tcp_packets"])
    );
    assert_eq!(
        m.sum("tapwatch_packets_processed_total", &[]),
        n(&s["packets_processed"])
    );
    assert_eq!(m.sum("tapwatch_workers", &[]), n(&s["workers"]));
    assert_eq!(m.sum("tapwatch_sessions_total", &[]), n(&s["sessions"]));
    assert_eq!(m.sum("tapwatch_sessions_open", &[]), 0, "all judged");
    assert_eq!(m.sum("tapwatch_sessions_peak", &[]), n(&s["peak_sessions"]));
    for (kind, k) in s["verdicts"].as_object().unwrap() {
        assert_eq!(
            m.sum("tapwatch_verdicts_total", &[("verdict", kind)]),
            n(k),
            "verdict {kind}"
        );
    }
    assert_eq!(m.sum("tapwatch_verdicts_total", &[]), n(&s["sessions"]));
    for (reason, k) in s["end_reasons"].as_object().unwrap() {
        assert_eq!(
            m.sum("tapwatch_end_reasons_total", &[("reason", reason)]),
            n(k),
            "end_reason {reason}"
        );
    }
    let drops = |cause: &str| m.sum("tapwatch_drops_total", &[("cause", cause)]);
    assert_eq!(
        drops("dispatch_ring_full"),
        n(&s["dropped"]["dispatch_ring_full"])
    );
    assert_eq!(drops("eviction"), n(&s["evicted"]));
    assert_eq!(drops("linger_cut"), n(&s["linger_cut"]));
    assert_eq!(
        drops("tls_buffers_exhausted"),
        n(&s["tls"]["buffers_exhausted"])
    );
    assert_eq!(
        m.sum("tapwatch_waits_total", &[("ring", "dispatch")]),
        n(&s["waits"]["dispatch_ring_full"])
    );
    assert_eq!(
        m.sum("tapwatch_waits_total", &[("ring", "record")]),
        n(&s["waits"]["record_ring_full"])
    );
    assert_eq!(
        m.sum("tapwatch_retransmissions_total", &[]),
        n(&s["retransmissions"])
    );
    assert_eq!(
        m.sum("tapwatch_time_went_back_total", &[]),
        n(&s["time_went_back"])
    );
    assert_eq!(
        m.sum("tapwatch_records_written_total", &[]),
        n(&s["records_written"])
    );
    assert_eq!(
        m.sum("tapwatch_tls_sessions_total", &[]),
        n(&s["tls"]["sessions"])
    );
    assert_eq!(
        m.sum("tapwatch_tls_not_tls_total", &[]),
        n(&s["tls"]["not_tls"])
    );
    assert_eq!(
        drops("tls_streams_exhausted"),
        n(&s["tls"]["streams_exhausted"])
    );
    assert_eq!(
        m.sum("tapwatch_tls_streams_exhausted_total", &[]),
        n(&s["tls"]["streams_exhausted"])
    );
    assert_eq!(
        m.sum("tapwatch_tls_streams_peak", &[]),
        n(&s["tls"]["streams_peak"])
    );
    // Every packet followed is in the processing-time summary, every record
    // written in the latency summary.
    assert_eq!(
        m.sum("tapwatch_packet_processing_seconds_count", &[]),
        n(&s["packets_processed"])
    );
    assert_eq!(
        m.sum("tapwatch_export_latency_seconds_count", &[]),
        n(&s["records_written"])
    );
    for sink in s["sinks"].as_array().into_iter().flatten() {
        let l = [("sink", sink["uri"].as_str().unwrap())];
        for (metric, key) in [
            ("tapwatch_sink_produced_total", "produced"),
            ("tapwatch_sink_delivered_total", "delivered"),
            ("tapwatch_sink_spooled_total", "spooled"),
            ("tapwatch_sink_outages_total", "outages"),
            ("tapwatch_sink_dropped_total", "dropped_total"),
        ] {
            assert_eq!(m.sum(metric, &l), n(&sink[key]), "sink {key}");
        }
    }
}

fn run_and_compare(tag: &str, args: &[&str]) -> (Scrape, Value) {
    let dir = scratch_dir(tag);
    let stats = dir.join("stats.json");
    let port = free_port();
    let mut child = spawn(args, port, &stats);
    let m = scrape_to_the_end(&mut child, port);
    // Anything but /metrics is a 404.
    let (status, _, _) = get(port, "/").expect("404 answered");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    child.kill().unwrap();
    child.wait().unwrap();
    let s: Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    check_equal(&m, &s);
    // Every metric served is documented.
    let doc = std::fs::read_to_string(root().join("docs/metrics.md")).unwrap();
    let families: BTreeSet<&str> =
        m.0.keys()
            .map(|(n, _)| n.trim_end_matches("_sum").trim_end_matches("_count"))
            .collect();
    for f in families {
        assert!(
            doc.contains(&format!("`{f}`")),
            "docs/metrics.md does not document `{f}`"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    (m, s)
}

/// A shipped capture (real stacks), two workers.
#[test]
fn metrics_equal_stats_on_demo_capture() {
    let demo = demo();
    let (m, s) = run_and_compare("metrics-demo", &["-w", "2", demo.to_str().unwrap()]);
    assert!(m.sum("tapwatch_sessions_total", &[]) > 0);
    assert!(s["sessions"].as_u64().unwrap() > 0);
}

/// A shipped two-point capture: points are labelled by name.
#[test]
fn metrics_equal_stats_on_two_points() {
    let dir = root().join("tests/captures/twopoint");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".inside.pcap"))
        .collect();
    files.sort();
    let inside = files.first().expect("a two-point capture is shipped");
    let outside = inside
        .to_string_lossy()
        .replace(".inside.pcap", ".outside.pcap");
    let (m, _) = run_and_compare(
        "metrics-twopoint",
        &[
            &format!("inside={}", inside.display()),
            &format!("outside={outside}"),
        ],
    );
    assert!(m.sum("tapwatch_frames_total", &[("point", "outside")]) > 0);
}

/// A larger synthetic run, long enough to be scraped while it goes, with a small
/// session table (evictions: a drop cause that is not zero) and a file sink.
#[test]
fn metrics_equal_stats_with_evictions_and_a_sink() {
    let dir = scratch_dir("metrics-synth");
    let pcap = dir.join("synth.pcap");
    let out = bin()
        .args([
            "synth",
            "--packets",
            "300000",
            "--concurrent",
            "3000",
            "--seed",
            "7",
        ])
        .args(["-o", pcap.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sink = format!("file:{}", dir.join("sink.jsonl").display());
    let (m, s) = run_and_compare(
        "metrics-synth-run",
        &[
            "-w",
            "2",
            "--max-sessions",
            "500",
            "--sink",
            &sink,
            pcap.to_str().unwrap(),
        ],
    );
    assert!(m.sum("tapwatch_drops_total", &[("cause", "eviction")]) > 0);
    assert_eq!(
        m.sum("tapwatch_sink_delivered_total", &[]),
        s["records_written"].as_u64().unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn metrics_bind_error_is_a_setup_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = replay(&["--metrics", &addr, demo().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--metrics") && err.lines().count() == 1,
        "{err}"
    );
    assert!(out.stdout.is_empty(), "nothing was read");
}

#[test]
fn text_parser_rejects_what_is_not_the_format() {
    for bad in [
        "foo 1\n", // no TYPE
        "# HELP a_total x\n# TYPE a_total counter\na_total{l=\"v} 1\n",
        "# HELP a x\n# TYPE a counter\na 1\n", // counter without _total
        "# HELP a_total x\n# TYPE a_total counter\na_total 1\na_total 2\n",
        "# HELP a_total x\n# TYPE a_total counter\na_total one\n",
    ] {
        let r = std::panic::catch_unwind(|| parse(bad));
        assert!(r.is_err(), "accepted: {bad:?}");
    }
}
