//! Two capture points around a real middlebox: the captures of
//! tests/captures/twopoint (scripts/make-twopoint-captures.sh: iptables and
//! mitmproxy in a firewall namespace, tcpdump on both of its interfaces), replayed
//! as `inside=` and `outside=`. The expectations come from the facts listed per
//! scenario in tests/captures/twopoint/README.md, checked there with tshark.

mod common;

use common::{records, replay, root, schema_validator};
use serde_json::Value;

const SCENARIOS: [&str; 15] = [
    "fw-pass-tls13",
    "fw-reset-sni",
    "fw-reset-established-tls",
    "fw-reset-established-http",
    "mitm-tls13-ok",
    "mitm-downgrade-tls12",
    "mitm-tls12-client-rejects",
    "mitm-tls13-client-rejects",
    "mitm-tls12-mtls",
    "mitm-tls13-mtls",
    "mitm-upstream-tls10",
    "mitm-upstream-cipher",
    "mitm-tls13-pinned",
    "mitm-tls12-pinned",
    "fw-reset-syn",
];

fn run(scenario: &str, extra: &[&str]) -> Vec<Value> {
    let dir = root().join("tests/captures/twopoint");
    let inside = format!(
        "inside={}",
        dir.join(format!("{scenario}.inside.pcap")).display()
    );
    let outside = format!(
        "outside={}",
        dir.join(format!("{scenario}.outside.pcap")).display()
    );
    let mut args = vec!["--workers", "1"];
    args.extend_from_slice(extra);
    args.push(&inside);
    args.push(&outside);
    let out = replay(&args);
    assert!(
        out.status.success(),
        "{scenario}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    records(&out.stdout)
}

/// The record of the session from the client's port `port` (the capture script
/// fixes one per scenario), judged first.
fn session(rs: &[Value], port: u64) -> &Value {
    rs.iter()
        .find(|r| r["client"]["port"] == port)
        .unwrap_or_else(|| panic!("no session from port {port} in {rs:#?}"))
}

fn points(r: &Value) -> Vec<&str> {
    r["points"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

#[test]
fn golden_records_and_schema_for_every_scenario() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let validator = schema_validator();
    let mut failures = Vec::new();
    for sc in SCENARIOS {
        let got = run(sc, &[]);
        for r in &got {
            let errors: Vec<String> = validator.iter_errors(r).map(|e| e.to_string()).collect();
            assert!(
                errors.is_empty(),
                "{sc}: {r} violates the schema: {errors:?}"
            );
        }
        let path = root().join(format!("tests/golden/twopoint__{sc}.jsonl"));
        if update {
            let text: String = got
                .iter()
                .map(|r| serde_json::to_string(r).unwrap() + "\n")
                .collect();
            std::fs::write(&path, text).unwrap();
            continue;
        }
        let want: Vec<Value> = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("no golden {} (UPDATE_GOLDEN=1)", path.display()))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if got != want {
            failures.push(format!(
                "{sc}: records differ from {}:\n got  {got:?}\n want {want:?}",
                path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn transparent_firewall_passing_tls_is_one_clean_session() {
    let rs = run("fw-pass-tls13", &[]);
    assert_eq!(rs.len(), 1, "{rs:#?}");
    let r = &rs[0];
    assert_eq!(points(r), ["inside", "outside"]);
    assert_eq!(r["verdict"], "ok");
    assert_eq!(r["injected_rst"], serde_json::json!([]));
    assert_eq!(r["absorbed_rst"], serde_json::json!([]));
    // Same ClientHello and certificate at both points: not intercepted.
    assert_eq!(r["intercepted"], false);
    assert_eq!(r["downgrade"], Value::Null);
    assert_eq!(r["failed_leg"], Value::Null);
}

/// iptables REJECT --reject-with tcp-reset: an RST in the server's name inside
/// (TTL 64, IP ID 0, where the server's packets arrive with TTL 63), nothing
/// outside.
fn assert_forged_toward_client(r: &Value, what: &str) {
    assert_eq!(r["verdict"], "middlebox_reset", "{what}: {r:#}");
    assert_eq!(r["pan_end_reason"], "policy-deny", "{what}");
    let inj = r["injected_rst"].as_array().unwrap();
    assert_eq!(inj.len(), 1, "{what}: {inj:?}");
    assert_eq!(inj[0]["point"], "inside", "{what}");
    assert_eq!(inj[0]["toward"], "client", "{what}");
    assert_eq!(inj[0]["ttl"], 64, "{what}");
    assert_eq!(inj[0]["ip_id"], 0, "{what}");
    assert_eq!(inj[0]["confidence"], "high", "{what}");
    assert_eq!(r["absorbed_rst"], serde_json::json!([]), "{what}");
    let first = r["evidence"][0].as_str().unwrap();
    assert!(
        first.starts_with("inside: RST toward the client (TTL 64, the server's packets came with 63) never seen at outside"),
        "{what}: {first}"
    );
}

#[test]
fn sni_block_by_forged_reset() {
    let rs = run("fw-reset-sni", &[]);
    let r = session(&rs, 40502);
    assert_forged_toward_client(r, "fw-reset-sni");
    // The ClientHello the reset answered never left the firewall.
    assert_eq!(r["sni"], "server.test");
    assert!(r["points"]["outside"]["tls_version"].is_null());
    let ev: Vec<&str> = r["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        ev.contains(
            &"inside: ClientHello answered by no ServerHello: the server reset the connection"
        ),
        "{ev:?}"
    );
}

#[test]
fn established_sessions_killed_by_forged_reset() {
    for (sc, port) in [
        ("fw-reset-established-tls", 40503),
        ("fw-reset-established-http", 40504),
    ] {
        let rs = run(sc, &[]);
        let r = session(&rs, port);
        assert_forged_toward_client(r, sc);
        assert_eq!(points(r), ["inside", "outside"], "{sc}");
    }
    // Before the rule was inserted, TLS 1.3 completed through the firewall at both
    // points, with the same hellos.
    let rs = run("fw-reset-established-tls", &[]);
    let r = session(&rs, 40503);
    assert_eq!(r["intercepted"], false);
    for p in ["inside", "outside"] {
        assert_eq!(r["points"][p]["handshake"], "complete", "{p}");
    }
}

/// iptables REJECT --reject-with tcp-reset on the SYN: the session is seen inside
/// only (SYN, forged RST/ACK), the outside capture is empty. After pairing found no
/// proxy connection for it, the RST is reported forged, with medium confidence
/// (the outside capture may have missed the session); alone, or with pairing off,
/// the session is `rejected`.
#[test]
fn syn_refused_by_forged_reset_that_the_server_side_never_saw() {
    let rs = run("fw-reset-syn", &[]);
    assert_eq!(rs.len(), 1, "{rs:#?}");
    let r = session(&rs, 40515);
    assert_eq!(points(r), ["inside"]);
    assert_eq!(r["verdict"], "middlebox_reset", "{r:#}");
    assert_eq!(r["pan_end_reason"], "policy-deny");
    assert_eq!(r["pairing"], Value::Null);
    let inj = r["injected_rst"].as_array().unwrap();
    assert_eq!(inj.len(), 1, "{inj:?}");
    assert_eq!(inj[0]["point"], "inside");
    assert_eq!(inj[0]["toward"], "client");
    assert_eq!(
        (inj[0]["ttl"].as_u64(), inj[0]["ip_id"].as_u64()),
        (Some(64), Some(0))
    );
    assert_eq!(inj[0]["confidence"], "medium");
    assert_eq!(
        r["evidence"][0],
        "inside: RST toward the client (TTL 64) never seen at outside: outside saw nothing of this session and no proxy connection for it; sent by the middlebox in the server's name, unless outside's capture missed the session"
    );
    assert_eq!(
        r["evidence"][1],
        "inside: server answered the SYN with an RST"
    );
    let rs = run("fw-reset-syn", &["--pair-window", "0s"]);
    assert_eq!(rs[0]["verdict"], "rejected");
    assert_eq!(rs[0]["injected_rst"], serde_json::json!([]));
}

/// mitmproxy re-originates the session from the firewall's address: the outside
/// leg has another 5-tuple (198.18.6.1:4105x-4112x) and is joined into the client's
/// session by server endpoint, SNI and time. The verdict is the failing leg's.
#[test]
fn proxy_legs_are_joined_and_the_failing_leg_decides() {
    for (sc, port, verdict, failed_leg, legs) in [
        ("mitm-tls13-ok", 40505, "ok", None, 1),
        ("mitm-downgrade-tls12", 40506, "ok", None, 1),
        (
            "mitm-tls12-client-rejects",
            40507,
            "client_rejected_certificate",
            Some("inside"),
            1,
        ),
        (
            "mitm-tls13-client-rejects",
            40508,
            "client_rejected_certificate",
            Some("inside"),
            1,
        ),
        (
            "mitm-tls12-mtls",
            40509,
            "server_rejected_client_certificate",
            Some("outside"),
            1,
        ),
        // mitmproxy retried: two connections outside, both refused.
        (
            "mitm-tls13-mtls",
            40510,
            "server_rejected_client_certificate",
            Some("outside"),
            2,
        ),
        (
            "mitm-upstream-tls10",
            40511,
            "handshake_parameter_mismatch",
            Some("outside"),
            1,
        ),
        (
            "mitm-upstream-cipher",
            40512,
            "handshake_parameter_mismatch",
            Some("outside"),
            1,
        ),
    ] {
        let rs = run(sc, &[]);
        assert_eq!(rs.len(), 1, "{sc}: one record for the session: {rs:#?}");
        let r = session(&rs, port);
        assert_eq!(r["client"]["ip"], "198.18.5.1", "{sc}");
        assert_eq!(points(r), ["inside", "outside"], "{sc}");
        assert_eq!(r["verdict"], verdict, "{sc}: {:#?}", r["evidence"]);
        assert_eq!(r["intercepted"], true, "{sc}");
        assert_eq!(
            r["failed_leg"],
            failed_leg.map_or(Value::Null, Value::from),
            "{sc}"
        );
        let p = &r["pairing"];
        assert_eq!(p["confidence"], "high", "{sc}");
        assert_eq!(p["point"], "outside", "{sc}");
        let l = p["legs"].as_array().unwrap();
        assert_eq!(l.len(), legs, "{sc}");
        for leg in l {
            assert_eq!(leg["client"]["ip"], "198.18.6.1", "{sc}");
        }
        // Resets are not compared across legs of another 5-tuple.
        assert_eq!(r["injected_rst"], serde_json::json!([]), "{sc}");
    }
}

/// TLS 1.2 shows both certificates: mitmproxy's inside, the real one outside.
#[test]
fn interception_names_both_issuers() {
    let rs = run("mitm-tls12-client-rejects", &[]);
    let i = &rs[0]["interception"];
    assert_eq!(i["client_random_differs"], true);
    assert_eq!(i["leaf_cert_differs"], true);
    assert_eq!(i["leaf_cert_issuer"]["inside"], "CN=mitmproxy, O=mitmproxy");
    assert_eq!(i["leaf_cert_issuer"]["outside"], "CN=tapwatch test CA");
    // mitmproxy capped at TLS 1.2 toward the client, 1.3 toward the server.
    let rs = run("mitm-downgrade-tls12", &[]);
    assert_eq!(
        rs[0]["downgrade"],
        serde_json::json!({"inside": "1.2", "outside": "1.3"})
    );
}

/// Without pairing (a pair window of zero), the legs stay apart, each judged alone.
#[test]
fn a_zero_pair_window_keeps_legs_apart() {
    let rs = run("mitm-tls12-mtls", &["--pair-window", "0s"]);
    assert_eq!(rs.len(), 2, "{rs:#?}");
    assert!(rs.iter().all(|r| r["pairing"].is_null()));
    let outside = rs
        .iter()
        .find(|r| r["client"]["ip"] == "198.18.6.1")
        .unwrap();
    assert_eq!(outside["verdict"], "server_rejected_client_certificate");
}

/// One point only: the forged resets still leave marks (`suspect_rst`), reported
/// with a confidence, never as a verdict.
#[test]
fn single_point_signs_of_forged_resets() {
    let one = |path: &str| {
        let out = replay(&["--workers", "1", root().join(path).to_str().unwrap()]);
        assert!(out.status.success());
        records(&out.stdout)
    };
    // The inside capture alone: iptables' RST has TTL 64 where the server's
    // packets arrive with 63.
    let rs = one("tests/captures/twopoint/fw-reset-sni.inside.pcap");
    let r = session(&rs, 40502);
    assert_eq!(r["verdict"], "no_server_hello");
    let s = &r["suspect_rst"][0];
    assert_eq!(s["from"], "server");
    assert_eq!(s["signs"], serde_json::json!(["ttl"]));
    assert_eq!(s["confidence"], "medium");
    assert_eq!(
        (s["ttl"].as_u64(), s["usual_ttl"].as_u64()),
        (Some(64), Some(63))
    );
    // Zeek's injected-RST trace: an RST with another TTL (46, the server's SYN-ACK
    // has 49) and the IP ID of the client's SYN.
    let rs = one("tests/corpus/zeek/rst-inject-rae.pcap");
    let s = &rs[0]["suspect_rst"][0];
    assert_eq!(s["confidence"], "high");
    assert_eq!(s["signs"], serde_json::json!(["ttl", "ip_id_copied"]));
    // A healthy session that ends with an RST after close_notify: nothing.
    let rs = one("tests/captures/tls/tls13-ok-rst-after-close-notify.pcap");
    assert_eq!(rs[0]["suspect_rst"], serde_json::json!([]));
}

/// A client that pins the real server's certificate: it completes the handshake
/// with mitmproxy, sees another certificate, and closes without sending data
/// (TLS 1.3: an RST, with the session tickets unread; TLS 1.2: a FIN). Both legs
/// completed: `client_abandoned_handshake`, intercepted, no failed leg. The TLS 1.2
/// client offered 1.2 only: 1.2 inside and 1.3 outside is not a downgrade.
#[test]
fn pinning_client_abandons_an_intercepted_session() {
    for (sc, port) in [("mitm-tls13-pinned", 40513), ("mitm-tls12-pinned", 40514)] {
        let rs = run(sc, &[]);
        assert_eq!(rs.len(), 1, "{sc}: {rs:#?}");
        let r = session(&rs, port);
        assert_eq!(r["verdict"], "client_abandoned_handshake", "{sc}");
        assert_eq!(r["intercepted"], true, "{sc}");
        assert_eq!(r["failed_leg"], Value::Null, "{sc}");
        assert_eq!(r["downgrade"], Value::Null, "{sc}");
        assert_eq!(r["pairing"]["confidence"], "high", "{sc}");
        for p in ["inside", "outside"] {
            assert_eq!(r["points"][p]["handshake"], "complete", "{sc} {p}");
        }
        assert_eq!(
            r["evidence"][0],
            "inside: handshake complete, then the client closed without sending application data",
            "{sc}"
        );
    }
    let rs = run("mitm-tls12-pinned", &[]);
    assert_eq!(
        rs[0]["interception"]["leaf_cert_issuer"]["inside"],
        "CN=mitmproxy, O=mitmproxy"
    );
}

/// `copies` copies of a capture, `step` seconds apart, the TCP port `port` of the
/// k-th copy rewritten to `base + k` (Ethernet, IPv4, microsecond pcap: as the
/// twopoint captures are).
fn copies(path: &std::path::Path, n: u16, step: u32, port: u16, base: u16) -> Vec<u8> {
    let data = std::fs::read(path).unwrap();
    let mut out = data[..24].to_vec();
    for k in 0..n {
        let mut at = 24;
        while at + 16 <= data.len() {
            let caplen = u32::from_le_bytes(data[at + 8..at + 12].try_into().unwrap()) as usize;
            let mut rec = data[at..at + 16 + caplen].to_vec();
            let secs = u32::from_le_bytes(rec[..4].try_into().unwrap()) + u32::from(k) * step;
            rec[..4].copy_from_slice(&secs.to_le_bytes());
            let ip = 16 + 14;
            let tcp = ip + usize::from(rec[ip] & 0x0f) * 4;
            for off in [tcp, tcp + 2] {
                if u16::from_be_bytes([rec[off], rec[off + 1]]) == port {
                    rec[off..off + 2].copy_from_slice(&(base + k).to_be_bytes());
                }
            }
            out.extend_from_slice(&rec);
            at += 16 + caplen;
        }
    }
    out
}

/// Legs of one session are judged by different workers, at different times: the
/// exporter holds them until every worker has got past them, so pairing does not
/// depend on the number of workers (it did, before: legs left before their other
/// leg, still on a slower worker, arrived).
#[test]
fn pairing_is_the_same_for_any_worker_count() {
    let dir = common::scratch_dir("pairing-workers");
    let src = root().join("tests/captures/twopoint");
    let inside = dir.join("inside.pcap");
    let outside = dir.join("outside.pcap");
    std::fs::write(
        &inside,
        copies(&src.join("mitm-tls13-ok.inside.pcap"), 60, 5, 40505, 20000),
    )
    .unwrap();
    std::fs::write(
        &outside,
        copies(&src.join("mitm-tls13-ok.outside.pcap"), 60, 5, 41054, 30000),
    )
    .unwrap();
    let args = |w: &'static str| {
        vec![
            "--workers".to_string(),
            w.to_string(),
            format!("inside={}", inside.display()),
            format!("outside={}", outside.display()),
        ]
    };
    let mut first: Option<Vec<Value>> = None;
    for w in ["1", "2", "4", "8"] {
        let a = args(w);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let out = replay(&a);
        assert!(out.status.success());
        let rs = records(&out.stdout);
        assert_eq!(rs.len(), 60, "{w} workers: every session one record");
        assert!(
            rs.iter().all(
                |r| r["pairing"]["legs"][0]["client"]["port"].as_u64().unwrap()
                    == r["client"]["port"].as_u64().unwrap() + 10_000
            ),
            "{w} workers: each client leg joined with its own proxy leg"
        );
        match &first {
            None => first = Some(rs),
            Some(f) => assert_eq!(f, &rs, "{w} workers"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
