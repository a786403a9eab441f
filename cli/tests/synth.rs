//! End-to-end checks of `tapwatch synth`: the file is the same as the library's, the
//! TLS failure patterns it writes are judged as they are meant to be, and tshark reads
//! its TLS without malformed packets or expert errors and finds the handshake messages
//! and alerts the generator says it wrote. The same for `tapwatch synth --two-point`,
//! its two files replayed as `inside=… outside=…`.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use common::{bin, records, replay};
use engine::synth::{write_pcap, write_two_point, SynthConfig, SynthSummary, TwoPointSummary};
use serde_json::Value;

fn config(seed: u64, packets: u64, concurrent: u32, failure_share: f64) -> SynthConfig {
    SynthConfig {
        seed,
        packets,
        concurrent,
        failure_share,
        ..SynthConfig::default()
    }
}

/// Writes `cfg` with `tapwatch synth` to a file of the temp dir, checks it holds the
/// same bytes as the library writes, and returns its path and the library's summary.
fn synth_file(name: &str, cfg: &SynthConfig) -> (PathBuf, SynthSummary) {
    let path = std::env::temp_dir().join(format!("tapwatch-{}-{name}.pcap", std::process::id()));
    run_synth(&path, cfg, &[]);
    let mut mine = Vec::new();
    let summary = write_pcap(cfg, &mut mine).unwrap();
    assert!(
        std::fs::read(&path).unwrap() == mine,
        "tapwatch synth wrote other bytes"
    );
    (path, summary)
}

/// Runs `tapwatch synth -o PATH` with `cfg` and `extra` flags.
fn run_synth(path: &std::path::Path, cfg: &SynthConfig, extra: &[&str]) {
    let out = bin()
        .args(["synth", "-o"])
        .arg(path)
        .args(["--packets", &cfg.packets.to_string()])
        .args(["--concurrent", &cfg.concurrent.to_string()])
        .args(["--seed", &cfg.seed.to_string()])
        .args(["--failure-share", &cfg.failure_share.to_string()])
        .args(extra)
        .output()
        .expect("run tapwatch synth");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes `cfg` with `tapwatch synth --two-point -o PREFIX.pcap` to the temp dir,
/// checks that the two files are PREFIX.inside.pcap and PREFIX.outside.pcap with the
/// library's bytes, and returns their paths and the library's summary.
fn synth_two_point(name: &str, cfg: &SynthConfig) -> ([PathBuf; 2], TwoPointSummary) {
    let prefix = std::env::temp_dir().join(format!("tapwatch-{}-{name}", std::process::id()));
    run_synth(&prefix.with_extension("pcap"), cfg, &["--two-point"]);
    let paths = ["inside", "outside"].map(|p| prefix.with_extension(format!("{p}.pcap")));
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    let summary = write_two_point(cfg, &mut inside, &mut outside).unwrap();
    assert!(
        std::fs::read(&paths[0]).unwrap() == inside,
        "tapwatch synth --two-point wrote other bytes inside"
    );
    assert!(
        std::fs::read(&paths[1]).unwrap() == outside,
        "tapwatch synth --two-point wrote other bytes outside"
    );
    (paths, summary)
}

/// The TLS failure patterns come out as the verdicts they imitate. Sessions cut by the
/// end of the file are not in the summary's outcomes, so a verdict count may exceed
/// its pattern's count by at most the number of cut sessions.
#[test]
fn test_synth_tls_failures_judged() {
    let (path, s) = synth_file("verdicts", &config(9, 60_000, 100, 0.6));
    let out = replay(&["-w", "1", path.to_str().unwrap()]);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(out.status.code(), Some(0));
    let verdicts = verdict_counts(&records(&out.stdout));
    let ended = s.clean
        + s.reset_by_client
        + s.reset_by_server
        + s.rejected
        + s.no_response
        + s.cert_rejected
        + s.handshake_failure
        + s.no_server_hello;
    assert_judged(
        &verdicts,
        s.sessions - ended,
        &[
            ("client_rejected_certificate", s.cert_rejected),
            ("handshake_parameter_mismatch", s.handshake_failure),
            ("no_server_hello", s.no_server_hello),
            ("rejected", s.rejected),
        ],
    );
}

/// Counts records by verdict.
fn verdict_counts(records: &[Value]) -> HashMap<String, u64> {
    let mut verdicts: HashMap<String, u64> = HashMap::new();
    for r in records {
        *verdicts
            .entry(r["verdict"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    verdicts
}

/// Each `(verdict, written)`: some sessions were written with that pattern, and
/// tapwatch judged as many that way, or at most `cut` more (sessions cut by the end
/// of the file are not in the generator's outcome counts and may end up as anything).
fn assert_judged(verdicts: &HashMap<String, u64>, cut: u64, expected: &[(&str, u64)]) {
    for &(verdict, written) in expected {
        let seen = verdicts.get(verdict).copied().unwrap_or(0);
        assert!(written > 10, "{verdict}: only {written} written");
        assert!(
            (written..=written + cut).contains(&seen),
            "{verdict}: {seen} judged, {written} written, {cut} cut; all: {verdicts:?}"
        );
    }
}

/// Counts each value of a tshark field over all frames (a frame may list several,
/// comma-separated).
fn tshark_counts(file: &str, field: &str) -> HashMap<String, u64> {
    let out = Command::new("tshark")
        .args(["-n", "-r", file, "-o", "tcp.desegment_tcp_streams:TRUE"])
        .args(["-Y", field, "-T", "fields", "-e", field])
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut counts = HashMap::new();
    for v in String::from_utf8(out.stdout).unwrap().split([',', '\n']) {
        if !v.is_empty() {
            *counts.entry(v.to_string()).or_default() += 1;
        }
    }
    counts
}

/// Whether tshark is there; without it a test is skipped, unless CI is set.
fn have_tshark() -> bool {
    if Command::new("tshark").arg("-v").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "tshark is missing and CI is set: run scripts/setup.sh"
        );
        eprintln!("tshark not installed (scripts/setup.sh installs it): test skipped");
        return false;
    }
    true
}

/// tshark finds no malformed frame and no expert error in `file`.
fn assert_tshark_clean(file: &str) {
    let out = Command::new("tshark")
        .args(["-n", "-r", file, "-o", "tcp.desegment_tcp_streams:TRUE"])
        .args(["-Y", "_ws.malformed || _ws.expert.severity == error"])
        .args([
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "_ws.expert.message",
        ])
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "tshark: malformed frames or expert errors in {file} (frame, message)"
    );
}

/// Checks `path` with tshark (clean, and the ClientHellos, ServerHellos, Certificates,
/// ServerHelloDones and plaintext alerts that `s` counts), removes it, and returns
/// tshark's handshake types and alert descriptions.
fn tshark_check(path: &std::path::Path, s: &SynthSummary) -> [HashMap<String, u64>; 2] {
    let file = path.to_str().unwrap();
    assert_tshark_clean(file);
    let types = tshark_counts(file, "tls.handshake.type");
    let alerts = tshark_counts(file, "tls.alert_message.desc");
    std::fs::remove_file(path).unwrap();
    let n = |k: &str| types.get(k).copied().unwrap_or(0);
    assert_eq!(n("1"), s.client_hellos, "{file}: ClientHello");
    assert_eq!(n("2"), s.server_hellos, "{file}: ServerHello");
    let certificates = s.certificates + s.client_certificates;
    assert_eq!(n("11"), certificates, "{file}: Certificate");
    assert_eq!(n("14"), s.certificates, "{file}: ServerHelloDone");
    assert_eq!(
        alerts.values().sum::<u64>(),
        s.plaintext_alerts,
        "{file}: alerts"
    );
    assert!(s.client_hellos > 100 && s.certificates > 10 && s.plaintext_alerts > 5);
    [types, alerts]
}

fn count(m: &HashMap<String, u64>, k: &str) -> u64 {
    m.get(k).copied().unwrap_or(0)
}

#[test]
fn test_synth_tshark_clean() {
    if !have_tshark() {
        return;
    }
    let (path, s) = synth_file("tshark", &config(4, 20_000, 100, 0.5));
    let [_, alerts] = tshark_check(&path, &s);
    let n = count;
    assert!(
        n(&alerts, "40") > 0 && n(&alerts, "48") + n(&alerts, "42") > 0,
        "handshake_failure and certificate alerts: {alerts:?}"
    );
}

/// Every pattern of `tapwatch synth --two-point` comes out, replayed as
/// `inside=… outside=…`, as the verdict tapwatch gives the real middleboxes of
/// tests/captures/twopoint: a pinning client's rejection `client_rejected_certificate`,
/// a client certificate the middlebox did not send `server_rejected_client_certificate`,
/// a blocked SNI `middlebox_reset`, the rest `ok`; with the middlebox's forged RSTs
/// found, TLS interception seen (both randoms, and the issuers in TLS 1.2), and the
/// two clocks found to agree. A verdict count may exceed its pattern's by at most the
/// number of sessions cut by the end of the files (then `incomplete_capture` or
/// another verdict).
#[test]
fn test_synth_two_point_verdicts() {
    let ([inside, outside], s) = synth_two_point("tp-verdicts", &config(6, 60_000, 200, 0.5));
    let stats = inside.with_extension("stats.json");
    let out = replay(&[
        "-w",
        "2",
        "--stats",
        stats.to_str().unwrap(),
        &format!("inside={}", inside.display()),
        &format!("outside={}", outside.display()),
    ]);
    let stats_json: Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    for p in [&inside, &outside, &stats] {
        std::fs::remove_file(p).unwrap();
    }
    assert_eq!(out.status.code(), Some(0));
    let records = records(&out.stdout);
    let verdicts = verdict_counts(&records);
    let ended = s.clean + s.pin_rejected + s.client_cert_required + s.sni_blocked;
    let cut = s.sessions - ended;
    assert_eq!(records.len() as u64, s.sessions, "one record per session");
    assert_judged(
        &verdicts,
        cut,
        &[
            ("ok", s.clean),
            ("client_rejected_certificate", s.pin_rejected),
            ("server_rejected_client_certificate", s.client_cert_required),
            ("middlebox_reset", s.sni_blocked),
        ],
    );
    let judged: u64 = verdicts.values().sum();
    assert!(judged - ended <= cut, "{verdicts:?}");

    let point = |r: &Value, p: &str, f: &str| r["points"][p][f].clone();
    let forged = |r: &Value, at: &str, toward: &str| {
        r["injected_rst"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["point"] == at && i["toward"] == toward)
    };
    let mut issuers = HashMap::new();
    for r in &records {
        let both_tls = !point(r, "inside", "client_random").is_null()
            && !point(r, "outside", "client_random").is_null();
        if both_tls {
            assert_eq!(r["intercepted"], true, "{r}");
            assert_ne!(
                point(r, "inside", "client_random"),
                point(r, "outside", "client_random")
            );
            assert_ne!(point(r, "inside", "ja4"), point(r, "outside", "ja4"));
        }
        for p in ["inside", "outside"] {
            if let Some(issuer) = point(r, p, "leaf_cert_issuer").as_str() {
                *issuers.entry((p, issuer.to_string())).or_insert(0u64) += 1;
            }
        }
        match r["verdict"].as_str().unwrap() {
            "client_rejected_certificate" => {
                assert_eq!(point(r, "inside", "alerts")[0]["from"], "client", "{r}");
                assert!(forged(r, "inside", "client"), "{r}");
                assert!(forged(r, "outside", "server"), "{r}");
            }
            "server_rejected_client_certificate" => {
                assert_eq!(point(r, "outside", "alerts")[0]["from"], "server", "{r}");
                assert!(forged(r, "inside", "client"), "{r}");
            }
            "middlebox_reset" => {
                assert!(forged(r, "inside", "client"), "{r}");
                assert_eq!(point(r, "outside", "tls_version"), Value::Null, "{r}");
            }
            _ => {}
        }
    }
    // TLS 1.2 shows the certificates: the middlebox's inside, the server's outside.
    let issuer_count = |p: &str, name: &str| {
        issuers
            .iter()
            .filter(|((at, i), _)| *at == p && i.contains(name))
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    assert!(
        issuer_count("inside", "Synth Inspection CA") > 10,
        "{issuers:?}"
    );
    assert!(issuer_count("outside", "Synth Test CA") > 10, "{issuers:?}");
    assert_eq!(issuers.len(), 2, "{issuers:?}");
    // The middlebox's latency is symmetric: the clocks agree.
    let clock = &stats_json["clock"]["points"]["outside"];
    assert_eq!(clock["method"], "handshake", "{clock}");
    assert!(
        clock["offset_ns"]
            .as_i64()
            .is_some_and(|ns| ns.abs() < 200_000),
        "outside clock offset: {clock}"
    );
}

/// tshark reads both files of `tapwatch synth --two-point` without malformed frames
/// or expert errors, and finds in each the handshake messages and alerts the
/// generator wrote there; the CertificateRequests only outside.
#[test]
fn test_synth_two_point_tshark_clean() {
    if !have_tshark() {
        return;
    }
    let (paths, s) = synth_two_point("tp-tshark", &config(8, 20_000, 100, 0.6));
    for (path, leg, name) in [
        (&paths[0], &s.inside, "inside"),
        (&paths[1], &s.outside, "outside"),
    ] {
        let [types, alerts] = tshark_check(path, leg);
        let n = count;
        if name == "inside" {
            assert_eq!(n(&types, "13"), 0, "a CertificateRequest inside");
            assert_eq!(leg.client_certificates, 0);
            assert!(n(&alerts, "48") + n(&alerts, "42") > 0, "{alerts:?}");
        } else {
            assert!(
                leg.client_certificates > 0,
                "no empty client Certificate outside"
            );
            assert!(
                (leg.client_certificates..=leg.certificates).contains(&n(&types, "13")),
                "CertificateRequests outside: {types:?}"
            );
            assert!(n(&alerts, "40") > 0, "{alerts:?}");
        }
    }
    // The blocked ClientHellos are inside only.
    assert!(s.sni_blocked > 0 && s.inside.client_hellos >= s.outside.client_hellos + s.sni_blocked);
}
