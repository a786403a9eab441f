//! End to end: capture files in, verdict records out, through the real binary.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// Name used for a capture's golden file: its path under tests/, flattened.
fn golden_name(capture: &Path) -> String {
    let rel = capture
        .strip_prefix(root().join("tests"))
        .unwrap_or(capture);
    rel.to_string_lossy().replace('/', "__") + ".jsonl"
}

/// Every shipped capture replays to exactly its golden records (field for field).
/// `UPDATE_GOLDEN=1 cargo test` rewrites them; review the diff before committing.
#[test]
fn golden_verdicts_for_every_capture() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for cap in all_captures() {
        let path = cap.to_str().unwrap();
        let out = replay(&["--workers", "1", path]);
        let got = records(&out.stdout);
        let golden_path = root().join("tests/golden").join(golden_name(&cap));
        if update {
            let text: String = got
                .iter()
                .map(|r| serde_json::to_string(r).unwrap() + "\n")
                .collect();
            std::fs::write(&golden_path, text).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&golden_path).unwrap_or_else(|_| {
            panic!(
                "no golden file {} (run with UPDATE_GOLDEN=1)",
                golden_path.display()
            )
        });
        let want: Vec<Value> = want
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if got != want {
            let first = got.iter().zip(&want).position(|(a, b)| a != b);
            failures.push(format!(
                "{}: {} records, golden has {}; first difference at record {:?}:\n got  {}\n want {}",
                cap.display(),
                got.len(),
                want.len(),
                first,
                first.map_or(String::new(), |i| got[i].to_string()),
                first.map_or(String::new(), |i| want[i].to_string()),
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Every record of every capture validates against the published JSON Schema.
#[test]
fn every_record_validates_against_the_schema() {
    let validator = schema_validator();
    let mut n = 0;
    for cap in all_captures() {
        let out = replay(&[cap.to_str().unwrap()]);
        for r in records(&out.stdout) {
            let errors: Vec<String> = validator
                .iter_errors(&r)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "{}: record {r} violates the schema: {errors:?}",
                cap.display()
            );
            n += 1;
        }
    }
    assert!(n > 100, "only {n} records checked");
}

/// The schema is not a rubber stamp: broken records fail it.
#[test]
fn schema_rejects_broken_records() {
    let validator = schema_validator();
    let out = replay(&[root().join("tests/captures/demo.pcap").to_str().unwrap()]);
    let good = records(&out.stdout).remove(0);
    assert!(validator.is_valid(&good));
    let mut bad = good.clone();
    bad["verdict"] = "mostly_fine".into();
    assert!(!validator.is_valid(&bad), "unknown verdict");
    let mut bad = good.clone();
    bad.as_object_mut().unwrap().remove("session_id");
    assert!(!validator.is_valid(&bad), "missing session_id");
    let mut bad = good.clone();
    bad["ts_start"] = "yesterday".into();
    assert!(!validator.is_valid(&bad), "bad timestamp");
}

/// The same sessions, whatever the number of workers.
#[test]
fn identical_verdicts_for_1_2_and_4_workers() {
    for cap in all_captures() {
        let path = cap.to_str().unwrap();
        let one = records(&replay(&["--workers", "1", path]).stdout);
        for w in ["2", "4"] {
            let many = records(&replay(&["--workers", w, path]).stdout);
            assert_eq!(one, many, "{}: {w} workers differ from 1", cap.display());
        }
    }
}

/// pcap little- and big-endian, microsecond, and pcapng nanosecond copies of one
/// capture give the same records; Linux cooked capture of the same traffic gives the
/// same verdicts (its frame bytes differ).
#[test]
fn formats_and_link_types_agree() {
    let run = |file: &str| {
        records(
            &replay(&[&format!(
                "demo={}",
                root().join("tests/captures").join(file).display()
            )])
            .stdout,
        )
    };
    let base = run("demo.pcap");
    assert_eq!(base.len(), 5);
    assert_eq!(run("demo-be.pcap"), base, "big-endian pcap");
    assert_eq!(run("demo.pcapng"), base, "pcapng");
    let verdicts = |rs: &[Value]| {
        rs.iter()
            .map(|r| (r["client"]["port"].clone(), r["verdict"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        verdicts(&run("demo-any.pcap")),
        verdicts(&base),
        "Linux cooked capture"
    );
}

/// The demo capture's five sessions, one per scenario, with the facts that decide
/// them (cross-checked against tshark by scripts/tshark-crosscheck.py).
#[test]
fn demo_capture_scenarios() {
    let out = replay(&[root().join("tests/captures/demo.pcap").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let rs = records(&out.stdout);
    let by_port = |port: u64| {
        rs.iter()
            .find(|r| r["client"]["port"] == port)
            .unwrap_or_else(|| panic!("no session from port {port}"))
    };
    let clean = by_port(40001);
    assert_eq!(clean["verdict"], "ok");
    assert_eq!(clean["end_reason"], "fin");
    assert_eq!(
        clean["points"]["demo"]["fin"],
        serde_json::json!(["client", "server"])
    );
    assert_eq!(by_port(40002)["verdict"], "reset_by_client");
    assert_eq!(
        by_port(40002)["points"]["demo"]["rst"],
        serde_json::json!(["client"])
    );
    assert_eq!(by_port(40003)["verdict"], "reset_by_server");
    let rejected = by_port(40004);
    assert_eq!(rejected["verdict"], "rejected");
    assert_eq!(rejected["server"]["port"], 9);
    let silent = by_port(40005);
    assert_eq!(silent["verdict"], "no_response");
    assert!(
        silent["points"]["demo"]["tcp"]["client"]["syn_count"]
            .as_u64()
            .unwrap()
            >= 2,
        "SYN retransmitted"
    );
    assert_eq!(silent["points"]["demo"]["tcp"]["server"]["packets"], 0);
}

/// Two points fed the same packets: one session each, seen identically at both.
#[test]
fn two_points_merge_into_one_session() {
    let demo = root().join("tests/captures/demo.pcap");
    let out = replay(&[
        &format!("inside={}", demo.display()),
        &format!("outside={}", demo.display()),
    ]);
    let rs = records(&out.stdout);
    assert_eq!(rs.len(), 5);
    for r in &rs {
        assert_eq!(r["points"]["inside"], r["points"]["outside"], "{r}");
    }
}

/// A capture cut anywhere: never a panic, a clear message, and the sessions that
/// ended before the cut keep their verdicts.
#[test]
fn truncated_capture_keeps_decided_verdicts() {
    let data = std::fs::read(demo()).unwrap();
    let full = demo_records();
    let dir = scratch_dir("trunc");
    let cut_path = dir.join("demo.pcap");
    let mut saw_cut_short = false;
    for cut in (0..data.len()).step_by(37) {
        std::fs::write(&cut_path, &data[..cut]).unwrap();
        let out = replay(&[cut_path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => {}
            Some(1) => {
                assert!(
                    ["cut short", "corrupt", "empty", "not a pcap"]
                        .iter()
                        .any(|m| stderr.contains(m)),
                    "cut at {cut}: {stderr}"
                );
                saw_cut_short = true;
            }
            Some(2) => assert!(stderr.contains("error"), "cut at {cut}: {stderr}"),
            other => panic!("cut at {cut}: exit {other:?}: {stderr}"),
        }
        // A session whose close is before the cut point ends the same way.
        for r in records(&out.stdout) {
            if r["end_reason"] == "fin" || r["end_reason"] == "rst" {
                let same = full
                    .iter()
                    .find(|f| f["session_id"] == r["session_id"])
                    .expect("same session in full run");
                assert_eq!(r["verdict"], same["verdict"], "cut at {cut}");
            }
        }
    }
    assert!(saw_cut_short);
    std::fs::remove_dir_all(&dir).ok();
}

/// A record length no capture can have: a clear error naming the offset, the
/// sessions read so far still judged, exit status 1.
#[test]
fn corrupt_record_length_is_reported() {
    let f = root().join("tests/corpus/suricata-verify/tls_DER-incomplete-header.pcap");
    let out = replay(&[f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let out2 = bin()
        .args(["replay", f.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out2.stderr);
    assert!(stderr.contains("record length above 262144"), "{stderr}");
    assert!(stderr.contains("at byte"), "{stderr}");
    let rs = records(&out.stdout);
    assert_eq!(rs.len(), 1, "the session seen before the damage is judged");
    assert_eq!(rs[0]["verdict"], "incomplete_capture");
}

#[test]
fn not_a_capture_is_an_error() {
    let out = replay(&[root().join("Cargo.toml").to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a pcap or pcapng file"));
    assert_eq!(out.status.code(), Some(1));
    let out = replay(&["/nonexistent/file.pcap"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open capture"));
}

/// The --stats file agrees with the records written.
#[test]
fn stats_match_records() {
    let dir = scratch_dir("stats");
    let stats_path = dir.join("stats.json");
    let cap = root().join("tests/corpus/zeek/ssl.v3.pcap");
    let out = replay(&[
        "--stats",
        stats_path.to_str().unwrap(),
        cap.to_str().unwrap(),
    ]);
    let rs = records(&out.stdout);
    let stats: Value =
        serde_json::from_str(&std::fs::read_to_string(&stats_path).unwrap()).unwrap();
    assert_eq!(stats["records_written"], rs.len() as u64);
    assert_eq!(stats["sessions"], rs.len() as u64);
    let total: u64 = stats["verdicts"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, rs.len() as u64);
    let packets: u64 = rs
        .iter()
        .flat_map(|r| r["points"].as_object().unwrap().values())
        .map(|p| p["packets"].as_u64().unwrap())
        .sum();
    assert_eq!(stats["tcp_packets"], packets);
    std::fs::remove_dir_all(&dir).ok();
}

/// Sessions beyond --max-sessions are evicted, counted, and still get a verdict (the
/// eviction order is checked in engine/src/table.rs).
#[test]
fn eviction_is_counted_and_judged() {
    let dir = scratch_dir("evict");
    let stats_path = dir.join("stats.json");
    let cap = root().join("tests/corpus/arkime/tcp_handshake_synthetic.pcap");
    let all = records(&replay(&[cap.to_str().unwrap()]).stdout);
    let out = replay(&[
        "--workers",
        "1",
        "--max-sessions",
        "2",
        "--stats",
        stats_path.to_str().unwrap(),
        cap.to_str().unwrap(),
    ]);
    let rs = records(&out.stdout);
    let stats: Value =
        serde_json::from_str(&std::fs::read_to_string(&stats_path).unwrap()).unwrap();
    assert_eq!(rs.len(), all.len(), "every session still judged");
    let evicted = rs.iter().filter(|r| r["end_reason"] == "evicted").count() as u64;
    assert!(evicted > 0);
    assert_eq!(stats["evicted"], evicted);
    assert_eq!(stats["peak_sessions"], 2);
    std::fs::remove_dir_all(&dir).ok();
}

/// Every frame cut by a snap length: 94 bytes (Ethernet, IPv4 and the longest TCP
/// header) and 54 bytes (`tcpdump -s 54`, inside the TCP options Linux sends): the
/// same sessions, the same verdicts, the same TCP facts (payload bytes come from the
/// IP lengths), and every cut frame counted per point.
#[test]
fn snaplen_cut_frames_are_followed_as_far_as_they_go() {
    use engine::capture::write::PcapWriter;
    use engine::capture::CaptureReader;

    let data = std::fs::read(demo()).unwrap();
    let full = demo_records();
    let dir = scratch_dir("snap");
    for snaplen in [94usize, 54] {
        let mut w = PcapWriter::new(Vec::new(), 1).unwrap();
        let mut cut = 0;
        for f in CaptureReader::new(&data).unwrap() {
            let f = f.unwrap();
            let keep = f.data.len().min(snaplen);
            // ARP frames (42 bytes) are never cut; count TCP ones only.
            cut += usize::from(keep < f.data.len());
            w.write_frame(f.ts, &f.data[..keep], f.wire_len).unwrap();
        }
        let path = dir.join(format!("demo-{snaplen}.pcap"));
        std::fs::write(&path, w.into_inner()).unwrap();
        let short = records(&replay(&[&format!("demo={}", path.display())]).stdout);
        assert!(cut >= 5, "{cut} frames cut at {snaplen}");
        assert_eq!(full.len(), short.len(), "snaplen {snaplen}");
        let mut cut_seen = 0;
        for (a, b) in full.iter().zip(&short) {
            assert_eq!(a["verdict"], b["verdict"], "snaplen {snaplen}");
            let (mut ta, tb) = (
                a["points"]["demo"]["tcp"].clone(),
                &b["points"]["demo"]["tcp"],
            );
            if snaplen == 54 {
                // No option byte of the SYN was captured: MSS and window scale unknown.
                for dir in ["client", "server"] {
                    let d = ta[dir].as_object_mut().unwrap();
                    d.remove("mss");
                    d.remove("wscale");
                }
            }
            assert_eq!(&ta, tb, "snaplen {snaplen}: {}", a["client"]);
            cut_seen += b["points"]["demo"]["snaplen_cut"].as_u64().unwrap_or(0);
        }
        assert_eq!(
            cut_seen, cut as u64,
            "snaplen {snaplen}: every cut TCP frame counted"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Builds a one-file pcap from (time in seconds, client port, from client, flags)
/// rows: flags is a string of S, A, F, R, P (P = 100 bytes of payload).
fn build_capture(name: &str, rows: &[(f64, u16, bool, &str)]) -> std::path::PathBuf {
    use engine::capture::write::PcapWriter;
    use engine::time::Timestamp;
    let mut w = PcapWriter::new(Vec::new(), 1).unwrap();
    let mut seq = std::collections::HashMap::new();
    for &(t, port, from_client, flags) in rows {
        let (c, s) = ([198, 18, 0, 1], [198, 18, 1, 1]);
        let (src, dst, sp, dp) = if from_client {
            (c, s, port, 443)
        } else {
            (s, c, 443, port)
        };
        let isn = if from_client { 1000u32 } else { 9000 };
        let next = seq.entry((port, from_client)).or_insert(isn);
        // A SYN always carries the ISN (a retried SYN repeats it).
        if flags.contains('S') {
            *next = isn;
        }
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, 64)
            .tcp(sp, dp, *next, 64_000);
        let b = if flags.contains('S') { b.syn() } else { b };
        let b = if flags.contains('A') { b.ack(1) } else { b };
        let b = if flags.contains('F') { b.fin() } else { b };
        let b = if flags.contains('R') { b.rst() } else { b };
        let payload: &[u8] = if flags.contains('P') {
            &[0x42; 100]
        } else {
            &[]
        };
        if !flags.contains('R') {
            *next += payload.len() as u32
                + u32::from(flags.contains('S'))
                + u32::from(flags.contains('F'));
        }
        let mut frame = Vec::new();
        b.write(&mut frame, payload).unwrap();
        w.write_frame(Timestamp((t * 1e9) as u64), &frame, frame.len() as u32)
            .unwrap();
    }
    let dir = scratch_dir("built");
    let path = dir.join(name);
    std::fs::write(&path, w.into_inner()).unwrap();
    path
}

/// Idle timeouts are exact: a session whose last packet is 120 s or more before the
/// end of the capture is a `timeout`, one just short of it is `incomplete_capture`,
/// whatever the number of workers (the timer wheel only decides when, not what).
#[test]
fn idle_timeout_verdicts_are_exact_for_any_worker_count() {
    let mut rows = vec![];
    for (port, last) in [(40001u16, 1000.0), (40002, 1000.5), (40003, 999.0)] {
        rows.push((last - 0.2, port, true, "S"));
        rows.push((last - 0.1, port, false, "SA"));
        rows.push((last, port, true, "AP"));
    }
    // Other sessions keep the capture going until 1120.2 s.
    for i in 0..200u16 {
        let t = 1000.0 + f64::from(i) * 0.6;
        rows.push((t, 50_000 + i, true, "S"));
        rows.push((t + 0.01, 50_000 + i, false, "SA"));
    }
    rows.push((1120.2, 60_000, true, "S"));
    rows.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    let path = build_capture("idle.pcap", &rows);
    let mut outcomes = Vec::new();
    for w in ["1", "2", "4"] {
        let rs = records(&replay(&["--workers", w, path.to_str().unwrap()]).stdout);
        let v = |port: u64| {
            let r = rs.iter().find(|r| r["client"]["port"] == port).unwrap();
            (
                r["verdict"].as_str().unwrap().to_string(),
                r["end_reason"].as_str().unwrap().to_string(),
            )
        };
        assert_eq!(
            v(40001),
            ("timeout".into(), "idle_timeout".into()),
            "{w} workers"
        );
        assert_eq!(
            v(40003),
            ("timeout".into(), "idle_timeout".into()),
            "{w} workers"
        );
        assert_eq!(
            v(40002),
            ("incomplete_capture".into(), "end_of_input".into()),
            "{w} workers"
        );
        outcomes.push(rs);
    }
    assert_eq!(outcomes[0], outcomes[1]);
    assert_eq!(outcomes[0], outcomes[2]);
}

/// Two points whose clocks differ by 10 ms: the outside copy of a rejected SYN is
/// seen (closed) before the inside copy arrives; still one session, seen at both.
/// And a client retrying with the same SYN is one session, not one per SYN.
#[test]
fn skewed_points_and_syn_retries_stay_one_session() {
    let inside = build_capture(
        "inside.pcap",
        &[(10.000, 40001, true, "S"), (10.001, 40001, false, "RA")],
    );
    let outside = build_capture(
        "outside.pcap",
        &[(9.990, 40001, true, "S"), (9.991, 40001, false, "RA")],
    );
    let rs = records(
        &replay(&[
            &format!("inside={}", inside.display()),
            &format!("outside={}", outside.display()),
        ])
        .stdout,
    );
    assert_eq!(rs.len(), 1, "{rs:?}");
    assert_eq!(rs[0]["verdict"], "rejected");
    assert!(rs[0]["points"]["inside"].is_object() && rs[0]["points"]["outside"].is_object());

    let retry = build_capture(
        "retry.pcap",
        &[
            (1.0, 40002, true, "S"),
            (1.05, 40002, false, "RA"),
            (1.5, 40002, true, "S"),
            (1.55, 40002, false, "RA"),
        ],
    );
    let rs = records(&replay(&[retry.to_str().unwrap()]).stdout);
    assert_eq!(
        rs.len(),
        1,
        "a retried SYN with the same ISN is the same attempt"
    );
    assert_eq!(rs[0]["points"]["retry"]["tcp"]["client"]["syn_count"], 2);
}
