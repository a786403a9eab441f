//! End-to-end checks of `tapwatch synth`: the file is the same as the library's, the
//! TLS failure patterns it writes are judged as they are meant to be, and tshark reads
//! its TLS without malformed packets or expert errors and finds the handshake messages
//! and alerts the generator says it wrote.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use common::{bin, records, replay};
use engine::synth::{write_pcap, SynthConfig, SynthSummary};

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
    let out = bin()
        .args(["synth", "-o"])
        .arg(&path)
        .args(["--packets", &cfg.packets.to_string()])
        .args(["--concurrent", &cfg.concurrent.to_string()])
        .args(["--seed", &cfg.seed.to_string()])
        .args(["--failure-share", &cfg.failure_share.to_string()])
        .output()
        .expect("run tapwatch synth");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut mine = Vec::new();
    let summary = write_pcap(cfg, &mut mine).unwrap();
    assert!(
        std::fs::read(&path).unwrap() == mine,
        "tapwatch synth wrote other bytes"
    );
    (path, summary)
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
    let mut verdicts: HashMap<String, u64> = HashMap::new();
    for r in records(&out.stdout) {
        *verdicts
            .entry(r["verdict"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let ended = s.clean
        + s.reset_by_client
        + s.reset_by_server
        + s.rejected
        + s.no_response
        + s.cert_rejected
        + s.handshake_failure
        + s.no_server_hello;
    let cut = s.sessions - ended;
    for (verdict, written) in [
        ("client_rejected_certificate", s.cert_rejected),
        ("handshake_parameter_mismatch", s.handshake_failure),
        ("no_server_hello", s.no_server_hello),
        ("rejected", s.rejected),
    ] {
        let seen = verdicts.get(verdict).copied().unwrap_or(0);
        assert!(written > 0, "{verdict}: none written");
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

#[test]
fn test_synth_tshark_clean() {
    if Command::new("tshark").arg("-v").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "tshark is missing and CI is set: run scripts/setup.sh"
        );
        eprintln!("tshark not installed (scripts/setup.sh installs it): test skipped");
        return;
    }
    let (path, s) = synth_file("tshark", &config(4, 20_000, 100, 0.5));
    let file = path.to_str().unwrap();
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
        "tshark: malformed frames or expert errors (frame, message)"
    );
    let types = tshark_counts(file, "tls.handshake.type");
    let alerts = tshark_counts(file, "tls.alert_message.desc");
    std::fs::remove_file(&path).unwrap();
    let n = |m: &HashMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    assert_eq!(n(&types, "1"), s.client_hellos, "ClientHello");
    assert_eq!(n(&types, "2"), s.server_hellos, "ServerHello");
    assert_eq!(n(&types, "11"), s.certificates, "Certificate");
    assert_eq!(n(&types, "14"), s.certificates, "ServerHelloDone");
    assert_eq!(alerts.values().sum::<u64>(), s.plaintext_alerts, "alerts");
    assert!(s.client_hellos > 100 && s.certificates > 10 && s.plaintext_alerts > 5);
    assert!(
        n(&alerts, "40") > 0 && n(&alerts, "48") + n(&alerts, "42") > 0,
        "handshake_failure and certificate alerts: {alerts:?}"
    );
}
