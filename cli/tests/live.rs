//! `tapwatch live` end to end (root; in CI these must run): network namespaces and
//! veth pairs that each test creates and always removes, addresses from
//! 198.18.0.0/15, real traffic, and the verdicts of `tapwatch live` compared with
//! those of `tapwatch replay` on a capture of the same packets.
//!
//! The lab: a SPAN port made with tc. In the namespace that sees the traffic, a
//! `clsact` filter mirrors every packet in and out of the watched interface to
//! `m0`, one end of a veth pair; `tapwatch live` runs on the other end, `m1` (XDP
//! there), and tcpdump records the same packets as they leave `m0`. Nothing is
//! attached to or changed on any interface outside the test's namespaces.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{root, scratch_dir};
use serde_json::Value;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// Root or, outside CI, a skip.
fn needs_root() -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI runs as root: this test must run there"
    );
    eprintln!("skipped: needs root (network namespaces, XDP)");
    false
}

/// Namespaces, background processes and files of one test; all removed on drop,
/// whatever happened.
struct Lab {
    tag: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    dir: PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        // TW_KEEP_LAB=1 keeps the files (captures, logs, verdicts) for a look.
        if std::env::var_os("TW_KEEP_LAB").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Lab {
    fn new(tag: &str) -> Lab {
        Lab {
            tag: format!("{tag}-{}", std::process::id()),
            namespaces: Vec::new(),
            children: Vec::new(),
            dir: scratch_dir(&format!("live-{tag}")),
        }
    }

    /// A new namespace `twlv-{name}-{tag}` with loopback up.
    fn netns(&mut self, name: &str) -> String {
        let ns = format!("twlv-{name}-{}", self.tag);
        run("ip", &["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        self.exec(&ns, &["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn exec(&self, ns: &str, cmd: &[&str]) {
        let mut args = vec!["netns", "exec", ns];
        args.extend_from_slice(cmd);
        run("ip", &args);
    }

    /// Starts `cmd` in `ns` in the background, its standard error to `log`.
    fn spawn(&mut self, ns: &str, cmd: &[&str], log: &str) -> u32 {
        let err = std::fs::File::create(self.dir.join(log)).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Waits until `log` contains `what` (a process saying it is ready).
    fn wait_for(&self, log: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(self.dir.join(log)).unwrap_or_default();
            if text.contains(what) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{log} never said {what:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `sig` to the child `pid` and waits for it; its exit code.
    fn stop(&mut self, pid: u32, sig: i32) -> Option<i32> {
        let k = self.children.iter().position(|c| c.id() == pid)?;
        let mut child = self.children.remove(k);
        // SAFETY: kill() with a pid of our own child, still unreaped.
        unsafe {
            libc::kill(pid as i32, sig);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("pid {pid} did not stop on signal {sig}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A mirror of `iface` (in `ns`): every packet in and out is copied to `mirror`0,
    /// whose peer `mirror`1 (with `queues` queues) is where tapwatch listens.
    fn span(&self, ns: &str, iface: &str, mirror: &str, queues: u32) {
        let (m0, m1, q) = (
            format!("{mirror}0"),
            format!("{mirror}1"),
            queues.to_string(),
        );
        self.exec(
            ns,
            &[
                "ip",
                "link",
                "add",
                &m0,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
                "type",
                "veth",
                "peer",
                "name",
                &m1,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
            ],
        );
        for i in [&m0, &m1] {
            self.exec(ns, &["ip", "link", "set", i, "up"]);
        }
        self.exec(ns, &["tc", "qdisc", "add", "dev", iface, "clsact"]);
        for dir in ["ingress", "egress"] {
            self.exec(
                ns,
                &[
                    "tc", "filter", "add", "dev", iface, dir, "prio", "1", "protocol", "all",
                    "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "mirror", "dev",
                    &m0,
                ],
            );
        }
    }
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `cmd` in `ns`, for traffic: its exit status does not matter (a refused
/// connection is part of the test), only that it ran.
fn client(ns: &str, cmd: &[&str]) {
    let st = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.code().is_some(), "{cmd:?} killed");
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A record without what must differ between live and replay: times (the kernel's
/// XDP timestamps vs tcpdump's), the session id made from them, and how open
/// sessions ended (`shutdown` vs `end_of_input`).
fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| {
                    !(k.as_str() == "ts"
                        || k.as_str() == "session_id"
                        || k.starts_with("ts_")
                        || k.ends_with("_ts"))
                })
                .map(|(k, v)| match (k.as_str(), v.as_str()) {
                    ("end_reason", Some("shutdown")) => (k.clone(), Value::from("end_of_input")),
                    _ => (k.clone(), normalize(v)),
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        _ => v.clone(),
    }
}

/// Records by (client, server), normalized.
fn by_session(records: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut m: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in records {
        let key = format!(
            "{}:{} -> {}:{}",
            r["client"]["ip"], r["client"]["port"], r["server"]["ip"], r["server"]["port"]
        );
        m.entry(key).or_default().push(normalize(r));
    }
    m
}

fn assert_same(live: &[Value], replayed: &[Value]) {
    let (a, b) = (by_session(live), by_session(replayed));
    let mut diffs = Vec::new();
    for k in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
        match (a.get(k), b.get(k)) {
            (Some(x), Some(y)) if x == y => {}
            (x, y) => diffs.push(format!(
                "{k}\n  live:   {}\n  replay: {}",
                serde_json::to_string(&x).unwrap(),
                serde_json::to_string(&y).unwrap()
            )),
        }
    }
    assert!(
        diffs.is_empty(),
        "{} of {} sessions differ:\n{}",
        diffs.len(),
        a.len().max(b.len()),
        diffs.join("\n")
    );
}

fn tapwatch() -> &'static str {
    env!("CARGO_BIN_EXE_tapwatch")
}

/// Starts `tapwatch live` on `points` (NAME=IFACE) in `ns` and tcpdump on each
/// mirror's sending end; returns (tapwatch pid, tcpdump pids).
fn start_capture(
    lab: &mut Lab,
    ns: &str,
    points: &[(&str, &str)],
    extra: &[&str],
) -> (u32, Vec<u32>) {
    let out = lab.path("live.jsonl");
    let stats = lab.path("live-stats.json");
    let mut cmd = vec![tapwatch(), "live"];
    let specs: Vec<String> = points.iter().map(|(n, i)| format!("{n}={i}1")).collect();
    cmd.extend(specs.iter().map(String::as_str));
    let (out, stats) = (
        out.to_str().unwrap().to_string(),
        stats.to_str().unwrap().to_string(),
    );
    cmd.extend(["--workers", "2", "-o", &out, "--stats", &stats]);
    cmd.extend_from_slice(extra);
    let tw = lab.spawn(ns, &cmd, "live.err");
    lab.wait_for("live.err", "tapwatch: capturing");
    let mut dumps = Vec::new();
    for (name, iface) in points {
        let pcap = lab.path(&format!("{name}.pcap"));
        let dev = format!("{iface}0");
        let log = format!("tcpdump-{name}.err");
        dumps.push(lab.spawn(
            ns,
            &[
                "tcpdump",
                "-i",
                &dev,
                "--immediate-mode",
                "-U",
                "-n",
                "-w",
                pcap.to_str().unwrap(),
            ],
            &log,
        ));
        lab.wait_for(&log, "listening on");
    }
    (tw, dumps)
}

/// Stops capturing (tcpdump first, so that it has every packet tapwatch saw) and
/// compares live with replay. Returns the live records.
fn finish_and_compare(
    lab: &mut Lab,
    tw: u32,
    dumps: Vec<u32>,
    points: &[(&str, &str)],
) -> Vec<Value> {
    // Let the last packets reach both readers.
    std::thread::sleep(Duration::from_millis(500));
    let code = lab.stop(tw, libc::SIGTERM);
    let err = std::fs::read_to_string(lab.path("live.err")).unwrap_or_default();
    assert_eq!(code, Some(0), "tapwatch live after SIGTERM:\n{err}");
    for pid in dumps {
        lab.stop(pid, libc::SIGINT);
    }
    let live = lines(&lab.path("live.jsonl"));
    let mut args: Vec<String> = points
        .iter()
        .map(|(n, _)| format!("{n}={}", lab.path(&format!("{n}.pcap")).display()))
        .collect();
    // Same host clock at every point: nothing to correct.
    args.extend([
        "--clock-offset".into(),
        "none".into(),
        "--workers".into(),
        "2".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = common::replay(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "replay {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed = common::records(&out.stdout);
    assert!(!live.is_empty(), "no verdicts from live:\n{err}");
    assert_same(&live, &replayed);

    // Nothing was lost, and the kernel-side counters were read after the
    // capabilities were dropped.
    let stats: Value =
        serde_json::from_str(&std::fs::read_to_string(lab.path("live-stats.json")).unwrap())
            .unwrap();
    assert_eq!(stats["dropped"]["dispatch_ring_full"], 0, "{stats:#}");
    assert_eq!(
        stats["live"]["capabilities_kept"],
        serde_json::json!([]),
        "{stats:#}"
    );
    let mut frames = 0;
    for s in stats["live"]["sockets"].as_array().unwrap() {
        frames += s["frames"].as_u64().unwrap();
        assert_eq!(s["unstamped"], 0, "{s}");
        assert_eq!(s["kernel"]["rx_dropped"], 0, "{s}");
    }
    let redirected: u64 = stats["live"]["xdp"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["counters"]["redirected"].as_u64().expect("counters read"))
        .sum();
    assert_eq!(
        frames, redirected,
        "every redirected frame was read: {stats:#}"
    );
    live
}

/// Client and server namespaces joined by a veth pair, the server side mirrored.
/// Returns (client ns, server ns).
fn two_hosts(lab: &mut Lab, net: u8, queues: u32) -> (String, String) {
    let (c, s) = (lab.netns("c"), lab.netns("s"));
    lab.exec(
        &c,
        &[
            "ip", "link", "add", "c0", "type", "veth", "peer", "name", "s0", "netns", &s,
        ],
    );
    let (ca, sa) = (format!("198.18.{net}.1/24"), format!("198.18.{net}.2/24"));
    lab.exec(&c, &["ip", "addr", "add", &ca, "dev", "c0"]);
    lab.exec(&c, &["ip", "link", "set", "c0", "up"]);
    lab.exec(&s, &["ip", "addr", "add", &sa, "dev", "s0"]);
    lab.exec(&s, &["ip", "link", "set", "s0", "up"]);
    lab.span(&s, "s0", "m", queues);
    (c, s)
}

fn cert(lab: &Lab) -> (String, String) {
    let (key, crt) = (lab.path("key.pem"), lab.path("cert.pem"));
    run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            crt.to_str().unwrap(),
            "-days",
            "2",
            "-subj",
            "/CN=live.test",
        ],
    );
    (key.to_str().unwrap().into(), crt.to_str().unwrap().into())
}

/// An HTTP server on port 8080 and a TLS server (openssl s_server, a fresh
/// self-signed certificate) on 4433 at `addr` in `ns`, given time to listen.
fn servers(lab: &mut Lab, ns: &str, addr: &str) {
    let (key, crt) = cert(lab);
    lab.spawn(
        ns,
        &["python3", "-m", "http.server", "8080", "--bind", addr],
        "http.err",
    );
    lab.spawn(
        ns,
        &[
            "openssl", "s_server", "-accept", "4433", "-cert", &crt, "-key", &key, "-www",
        ],
        "tls.err",
    );
    std::thread::sleep(Duration::from_millis(700));
}

/// Real TCP and TLS exchanges between the namespaces, and every shipped TLS capture
/// replayed onto the mirror port with tcpreplay.
/// Returns the live records, in the order written (none without root).
fn one_interface(queues: u32, net: u8, extra: &[&str]) -> Vec<Value> {
    if !needs_root() {
        return Vec::new();
    }
    let mut lab = Lab::new(&format!("q{queues}{}", extra.len()));
    let (c, s) = two_hosts(&mut lab, net, queues);
    // A SPAN port delivers frames as they were on the wire. The server's stack
    // hands its veth 64 KB TSO packets, and the mirror copies them as they are: cut
    // them at the mirror port, as a switch's wire would. (In driver mode the veth
    // does it by itself: XDP on m1 turns segmentation offload off on its peer m0.
    // In generic mode they would reach the XDP program whole, be too long for a
    // UMEM frame and be dropped, counted: docs/live.md, "Limits".)
    lab.exec(&s, &["ethtool", "-K", "m0", "tso", "off", "gso", "off"]);
    let server = format!("198.18.{net}.2");
    servers(&mut lab, &s, &server);
    let (tw, dumps) = start_capture(&mut lab, &s, &[("tap", "m")], extra);

    for i in 0..3 {
        client(
            &c,
            &[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                &format!("http://{server}:8080/?{i}"),
            ],
        );
    }
    // TLS accepted, TLS whose certificate the client rejects, a closed port.
    client(
        &c,
        &[
            "curl",
            "-sk",
            "-o",
            "/dev/null",
            &format!("https://{server}:4433/"),
        ],
    );
    client(
        &c,
        &[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            &format!("https://{server}:4433/"),
        ],
    );
    client(
        &c,
        &["curl", "-s", "-m", "2", &format!("http://{server}:9999/")],
    );
    // The shipped TLS captures (Ethernet, 198.18.3.0/24), at their own pace.
    let mut replay = vec![
        "tcpreplay".to_string(),
        "-q".into(),
        "-i".into(),
        "m0".into(),
    ];
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("tests/captures/tls"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    files.sort();
    replay.extend(files.iter().map(|p| p.display().to_string()));
    let replay: Vec<&str> = replay.iter().map(String::as_str).collect();
    lab.exec(&s, &replay);

    // Verdicts reach the output while the capture runs (the sessions closed by a
    // FIN are judged after the 2 s linger), not only at the stop.
    lab.wait_for("live.jsonl", "\"verdict\"");
    // SIGUSR1: the counters so far, and the capture goes on.
    // SAFETY: kill() with the pid of our own child, still running.
    unsafe {
        libc::kill(tw as i32, libc::SIGUSR1);
    }
    lab.wait_for("live.err", "tapwatch: counters after");
    lab.wait_for("live.err", "socket m1 queue 0");
    if let Some(i) = extra.iter().position(|a| *a == "--metrics") {
        scrape_live(&s, extra[i + 1]);
    }
    let live = finish_and_compare(&mut lab, tw, dumps, &[("tap", "m")]);
    let verdicts: Vec<&str> = live.iter().filter_map(|r| r["verdict"].as_str()).collect();
    for v in [
        "ok",
        "rejected",
        "client_rejected_certificate",
        "server_rejected_client_certificate",
    ] {
        assert!(verdicts.contains(&v), "no {v} among {verdicts:?}");
    }
    assert!(live.len() >= 6 + files.len(), "{} records", live.len());
    if queues > 1 {
        // The flows were spread over the queues (the kernel picks the veth's
        // queue by flow hash), so the workers really merged several readers.
        let stats: Value =
            serde_json::from_str(&std::fs::read_to_string(lab.path("live-stats.json")).unwrap())
                .unwrap();
        for s in stats["live"]["sockets"].as_array().unwrap() {
            assert!(s["frames"].as_u64().unwrap() > 0, "an idle queue: {s}");
        }
    }
    lines(&lab.path("live.jsonl"))
}

/// Scrapes `--metrics` at `addr` from inside `ns` while the capture runs: the
/// frames read and the sessions judged so far are counted, and the kernel's drops
/// are reported (the strict format and the final values are checked on replays in
/// cli/tests/metrics.rs).
fn scrape_live(ns: &str, addr: &str) {
    let url = format!("http://{addr}/metrics");
    let value = |text: &str, series: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "curl", "-sf", &url])
            .output()
            .expect("run curl");
        assert!(out.status.success(), "scrape {url} in {ns} failed");
        let text = String::from_utf8(out.stdout).unwrap();
        let frames = value(&text, "tapwatch_frames_total{point=\"tap\"}").expect("frames");
        let sessions: f64 = ["0", "1"]
            .iter()
            .map(|w| {
                value(&text, &format!("tapwatch_sessions_total{{worker=\"{w}\"}}"))
                    .expect("sessions per worker")
            })
            .sum();
        assert!(
            value(
                &text,
                "tapwatch_drops_total{cause=\"capture_kernel\",point=\"tap\"}"
            )
            .is_some(),
            "kernel drops reported:\n{text}"
        );
        assert_eq!(value(&text, "tapwatch_run_finished"), Some(0.0));
        if frames > 0.0 && sessions > 0.0 {
            return;
        }
        assert!(Instant::now() < deadline, "nothing counted yet:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `--metrics` during a live capture (the endpoint inside the sensor's namespace).
#[test]
fn live_metrics_scraped_while_capturing() {
    one_interface(1, 26, &["--metrics", "127.0.0.1:9464"]);
}

#[test]
fn live_equals_replay_on_one_queue() {
    one_interface(1, 20, &[]);
}

/// Live capture feeds the sinks through the same exporter as a replay: a file sink
/// (behind a spool) gets exactly what --output gets, in the same order.
#[test]
fn live_sinks_get_what_output_gets() {
    let dir = std::env::temp_dir().join(format!("tapwatch-live-sinks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sink.jsonl");
    let (sink, spool) = (
        format!("file:{}", file.display()),
        dir.join("spool").display().to_string(),
    );
    let live = one_interface(1, 25, &["--sink", &sink, "--spool", &spool]);
    if !live.is_empty() {
        assert_eq!(lines(&file), live, "the file sink differs from --output");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn live_equals_replay_on_two_queues() {
    one_interface(2, 21, &[]);
}

/// Generic (SKB) mode, where every packet reports rx queue 0, with busy polling.
#[test]
fn live_equals_replay_in_skb_mode_with_busy_poll() {
    one_interface(1, 24, &["--xdp-mode", "skb", "--busy-poll"]);
}

/// Client, firewall and server namespaces; the firewall forwards between
/// 198.18.22.0/24 and 198.18.23.0/24 and forges an RST for HTTP requests for
/// /blocked; both of its interfaces are mirrored, each to its own capture point.
#[test]
fn live_two_interfaces_as_two_points() {
    if !needs_root() {
        return;
    }
    let mut lab = Lab::new("2p");
    let (c, f, s) = (lab.netns("c"), lab.netns("f"), lab.netns("s"));
    lab.exec(
        &c,
        &[
            "ip", "link", "add", "c0", "type", "veth", "peer", "name", "fi", "netns", &f,
        ],
    );
    lab.exec(
        &s,
        &[
            "ip", "link", "add", "s0", "type", "veth", "peer", "name", "fo", "netns", &f,
        ],
    );
    for (ns, dev, addr, gw) in [
        (&c, "c0", "198.18.22.1/24", "198.18.22.254"),
        (&s, "s0", "198.18.23.1/24", "198.18.23.254"),
    ] {
        lab.exec(ns, &["ip", "addr", "add", addr, "dev", dev]);
        lab.exec(ns, &["ip", "link", "set", dev, "up"]);
        lab.exec(ns, &["ip", "route", "add", "default", "via", gw]);
    }
    for (dev, addr) in [("fi", "198.18.22.254/24"), ("fo", "198.18.23.254/24")] {
        lab.exec(&f, &["ip", "addr", "add", addr, "dev", dev]);
        lab.exec(&f, &["ip", "link", "set", dev, "up"]);
    }
    lab.exec(&f, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    lab.exec(
        &f,
        &[
            "iptables",
            "-A",
            "FORWARD",
            "-p",
            "tcp",
            "--dport",
            "8080",
            "-m",
            "string",
            "--string",
            "GET /blocked",
            "--algo",
            "bm",
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
        ],
    );
    lab.span(&f, "fi", "mi", 1);
    lab.span(&f, "fo", "mo", 1);
    servers(&mut lab, &s, "198.18.23.1");
    let points = [("inside", "mi"), ("outside", "mo")];
    let (tw, dumps) = start_capture(&mut lab, &f, &points, &[]);
    client(
        &c,
        &["curl", "-s", "-o", "/dev/null", "http://198.18.23.1:8080/"],
    );
    client(
        &c,
        &[
            "curl",
            "-s",
            "-m",
            "3",
            "-o",
            "/dev/null",
            "http://198.18.23.1:8080/blocked",
        ],
    );
    client(
        &c,
        &[
            "curl",
            "-sk",
            "-o",
            "/dev/null",
            "https://198.18.23.1:4433/",
        ],
    );
    let live = finish_and_compare(&mut lab, tw, dumps, &points);
    let verdicts: Vec<&str> = live.iter().filter_map(|r| r["verdict"].as_str()).collect();
    assert!(verdicts.contains(&"middlebox_reset"), "{verdicts:?}");
    assert!(
        live.iter()
            .all(|r| r["points"].as_object().unwrap().len() == 2),
        "every session seen at both points"
    );
}

/// A setup error: exit status 2 and one line on stderr that contains `what`.
fn assert_setup_error(out: &std::process::Output, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(what), "expected {what:?}: {err}");
}

/// Setup errors: one clear line each, a non-zero exit, nothing left behind.
#[test]
fn setup_errors_are_one_line_each() {
    let out = common::bin().args(["live", "twnosuch0"]).output().unwrap();
    assert_setup_error(&out, "no such interface \"twnosuch0\"");
    if !needs_root() {
        return;
    }
    let mut lab = Lab::new("err");
    let ns = lab.netns("e");
    lab.exec(
        &ns,
        &[
            "ip", "link", "add", "m0", "type", "veth", "peer", "name", "m1",
        ],
    );
    lab.exec(&ns, &["ip", "link", "set", "m1", "up"]);
    // Without privileges.
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
        .args([
            "--inh-caps=-all",
            "--bounding-set=-all",
            tapwatch(),
            "live",
            "m1",
        ])
        .output()
        .unwrap();
    assert_setup_error(&out, "needs CAP_NET_ADMIN");
    // Another XDP program already attached.
    let obj = root().join("ebpf/xdp_tapwatch.o");
    lab.exec(
        &ns,
        &[
            "ip",
            "link",
            "set",
            "dev",
            "m1",
            "xdpdrv",
            "obj",
            obj.to_str().unwrap(),
            "sec",
            "xdp",
        ],
    );
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            tapwatch(),
            "live",
            "m1",
            "--xdp-mode",
            "driver",
        ])
        .output()
        .unwrap();
    assert_setup_error(&out, "another XDP program is attached to m1");
}
