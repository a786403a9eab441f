//! Sinks against real collectors, started here on loopback ports and stopped
//! afterwards: redis-server (every mode), rsyslog (TCP, UDP and a local socket), and
//! a TCP listener in the test. Every verdict arrives exactly once and in the order
//! of `--output` in the same run; a collector killed for seconds in the middle of a
//! replay loses nothing; a spool left by a run is delivered first by the next; a
//! spool that fills counts exactly what it dropped.
//!
//! A test whose program is missing is skipped with a message, unless CI is set: then
//! it fails (scripts/setup.sh installs redis-server and rsyslog).

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{bin, root};
use serde_json::Value;

/// A program's path, or `None` (skip) when it is missing and CI is unset.
fn require(name: &str) -> Option<PathBuf> {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain([
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
    ]) {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return Some(p);
        }
    }
    if std::env::var_os("CI").is_some() {
        panic!("{name} is not installed, and CI is set: scripts/setup.sh installs it");
    }
    eprintln!(
        "SKIPPED: {name} is not installed (scripts/setup.sh installs it; with CI set this fails)"
    );
    None
}

/// A child process killed and reaped when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let d = common::scratch_dir(&format!("sinks-{tag}"));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    fn s(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    // Also free for UDP (rsyslog binds both kinds on its ports).
    std::net::UdpSocket::bind(("127.0.0.1", port)).map_or_else(|_| free_port(), |_| port)
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A synthetic capture with many short sessions (every session fails: few packets
/// each, so many verdicts per megabyte).
fn synth(dir: &Scratch, packets: u64) -> String {
    let path = dir.s("synth.pcap");
    let out = bin()
        .args([
            "synth",
            "-o",
            &path,
            "--failure-share",
            "1",
            "--concurrent",
            "2000",
        ])
        .args(["--packets", &packets.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

fn stats(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The sink `uri`'s counters in a `--stats` file.
fn sink_stats(st: &Value, uri: &str) -> Value {
    st["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["uri"] == uri)
        .unwrap_or_else(|| panic!("no sink {uri} in {st}"))
        .clone()
}

fn n(v: &Value) -> usize {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}")) as usize
}

/// Runs `tapwatch replay -q ARGS`, checking it succeeded.
fn replay(args: &[&str]) -> (String, Value) {
    let stats_at = args
        .iter()
        .position(|a| *a == "--stats")
        .map(|i| PathBuf::from(args[i + 1]));
    let out = bin().arg("replay").arg("-q").args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "tapwatch failed: {stderr}");
    (stderr, stats_at.map_or(Value::Null, |p| stats(&p)))
}

/// Checks that `got` holds every line of `want`, in order, none missing and nothing
/// else; duplicates (a line sent again after an outage) are allowed only where
/// `max_dups` says, and counted.
fn assert_no_loss_in_order(got: &[String], want: &[String], max_dups: usize, what: &str) -> usize {
    let mut seen = HashSet::new();
    let firsts: Vec<&String> = got.iter().filter(|g| seen.insert(g.as_str())).collect();
    let want_set: HashSet<&str> = want.iter().map(String::as_str).collect();
    let strangers = got
        .iter()
        .filter(|g| !want_set.contains(g.as_str()))
        .count();
    assert_eq!(
        strangers, 0,
        "{what}: lines that were never produced arrived"
    );
    assert_eq!(
        firsts.len(),
        want.len(),
        "{what}: {} of {} verdicts arrived",
        firsts.len(),
        want.len()
    );
    if let Some(i) = firsts.iter().zip(want).position(|(g, w)| *g != w) {
        panic!("{what}: order differs first at line {i}");
    }
    let dups = got.len() - want.len();
    assert!(
        dups <= max_dups,
        "{what}: {dups} duplicates, at most {max_dups} allowed"
    );
    dups
}

// ---------------------------------------------------------------- redis

/// A reply, as much of RESP2 as the tests need.
#[derive(Debug)]
enum Resp {
    Ok,
    Int(i64),
    Bulk(Option<String>),
    Array(Vec<Resp>),
}

fn read_resp(r: &mut impl BufRead) -> std::io::Result<Resp> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let line = line.trim_end();
    let (t, rest) = line.split_at(1);
    Ok(match t {
        "+" => Resp::Ok,
        ":" => Resp::Int(rest.parse().unwrap()),
        // An error reply is an error, not a panic: a restarted redis-server answers
        // `-LOADING` (PING included) until it has read its append-only file, and the
        // readiness wait in start_redis must go on waiting then.
        "-" => return Err(std::io::Error::other(format!("redis error {rest}"))),
        "$" => {
            let n: i64 = rest.parse().unwrap();
            if n < 0 {
                Resp::Bulk(None)
            } else {
                let mut b = vec![0u8; n as usize + 2];
                r.read_exact(&mut b)?;
                b.truncate(n as usize);
                Resp::Bulk(Some(String::from_utf8(b).unwrap()))
            }
        }
        "*" => {
            let n: i64 = rest.parse().unwrap();
            let mut v = Vec::new();
            for _ in 0..n.max(0) {
                v.push(read_resp(r)?);
            }
            Resp::Array(v)
        }
        _ => panic!("unexpected reply {line:?}"),
    })
}

fn write_cmd(w: &mut impl Write, args: &[&str]) {
    let mut b = format!("*{}\r\n", args.len());
    for a in args {
        b.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    w.write_all(b.as_bytes()).unwrap();
}

fn redis_cmd(port: u16, args: &[&str]) -> std::io::Result<Resp> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut w = s.try_clone()?;
    write_cmd(&mut w, args);
    read_resp(&mut BufReader::new(s))
}

fn bulk_strings(r: Resp) -> Vec<String> {
    match r {
        Resp::Array(v) => v
            .into_iter()
            .map(|x| match x {
                Resp::Bulk(Some(s)) => s,
                other => panic!("not a string: {other:?}"),
            })
            .collect(),
        other => panic!("not an array: {other:?}"),
    }
}

/// `XRANGE key - +`: the `eve` field of every entry, in order.
fn stream_entries(port: u16, key: &str) -> Vec<String> {
    let Resp::Array(entries) = redis_cmd(port, &["XRANGE", key, "-", "+"]).unwrap() else {
        panic!("XRANGE")
    };
    entries
        .into_iter()
        .map(|e| {
            let Resp::Array(mut idf) = e else {
                panic!("entry")
            };
            let fields = bulk_strings(idf.pop().unwrap());
            assert_eq!(fields.len(), 2, "one field per entry");
            assert_eq!(fields[0], "eve", "Suricata's field name");
            fields[1].clone()
        })
        .collect()
}

fn llen(port: u16, key: &str) -> usize {
    match redis_cmd(port, &["LLEN", key]) {
        Ok(Resp::Int(n)) => n as usize,
        _ => 0,
    }
}

/// redis-server on `port`, data in `dir`; with `aof`, every write is fsynced to its
/// append-only file before Redis answers, so a restart keeps what it acknowledged.
fn start_redis(exe: &Path, port: u16, dir: &Path, aof: bool) -> Proc {
    std::fs::create_dir_all(dir).unwrap();
    let child = Command::new(exe)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args([
            "--appendonly",
            if aof { "yes" } else { "no" },
            "--appendfsync",
            "always",
        ])
        .arg("--dir")
        .arg(dir)
        .args(["--daemonize", "no", "--logfile", ""])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let p = Proc(child);
    wait_for("redis-server", Duration::from_secs(15), || {
        matches!(redis_cmd(port, &["PING"]), Ok(Resp::Ok))
    });
    p
}

/// A SUBSCRIBE client collecting the messages of `channel` until dropped.
struct Subscriber {
    stop: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<String>>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Subscriber {
    fn start(port: u16, channel: &str) -> Subscriber {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut w = s.try_clone().unwrap();
        write_cmd(&mut w, &["SUBSCRIBE", channel]);
        let mut r = BufReader::new(s.try_clone().unwrap());
        read_resp(&mut r).unwrap(); // the subscription confirmed
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let got = Arc::new(Mutex::new(Vec::new()));
        let handle = {
            let (stop, got) = (Arc::clone(&stop), Arc::clone(&got));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match read_resp(&mut r) {
                        Ok(Resp::Array(mut v)) => {
                            if let Some(Resp::Bulk(Some(m))) = v.pop() {
                                got.lock().unwrap().push(m);
                            }
                        }
                        Ok(_) => {}
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => break,
                    }
                }
            })
        };
        Subscriber {
            stop,
            got,
            handle: Some(handle),
        }
    }

    fn messages(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
        std::mem::take(&mut *self.got.lock().unwrap())
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[test]
fn redis_every_mode_exactly_once_in_order() {
    let Some(exe) = require("redis-server") else {
        return;
    };
    let d = Scratch::new("redis-modes");
    let port = free_port();
    let _redis = start_redis(&exe, port, &d.path("redis"), false);
    let pcap = synth(&d, 60_000);
    let sub = Subscriber::start(port, "chan");
    let uris = [
        format!("redis://127.0.0.1:{port}/l"),
        format!("redis://127.0.0.1:{port}/lp?mode=lpush"),
        format!("redis://127.0.0.1:{port}/r?mode=rpush"),
        format!("redis://127.0.0.1:{port}/chan?mode=channel"),
        format!("redis://127.0.0.1:{port}/s?mode=stream"),
        format!("redis://127.0.0.1:{port}/x?mode=xadd&maxlen=0"),
    ];
    let mut args = vec![pcap.as_str(), "-o", "", "--stats", ""];
    let (out, st) = (d.s("ref.json"), d.s("stats.json"));
    args[2] = &out;
    args[4] = &st;
    for u in &uris {
        args.extend(["--sink", u.as_str()]);
    }
    let (_, st) = replay(&args);
    let want = lines_of(&d.path("ref.json"));
    assert!(
        want.len() > 1000,
        "the synth capture gave {} verdicts",
        want.len()
    );

    // list (Suricata's default) and lpush push on the left: newest first.
    for key in ["l", "lp"] {
        let mut got = bulk_strings(redis_cmd(port, &["LRANGE", key, "0", "-1"]).unwrap());
        got.reverse();
        assert_no_loss_in_order(&got, &want, 0, key);
    }
    let got = bulk_strings(redis_cmd(port, &["LRANGE", "r", "0", "-1"]).unwrap());
    assert_no_loss_in_order(&got, &want, 0, "rpush");
    assert_no_loss_in_order(&stream_entries(port, "s"), &want, 0, "stream");
    assert_no_loss_in_order(&stream_entries(port, "x"), &want, 0, "xadd");
    thread::sleep(Duration::from_millis(300));
    assert_no_loss_in_order(&sub.messages(), &want, 0, "channel");
    for u in &uris {
        let s = sink_stats(&st, u);
        assert_eq!(n(&s["produced"]), want.len(), "{u}");
        assert_eq!(n(&s["delivered"]), want.len(), "{u}");
        assert_eq!(n(&s["dropped_total"]), 0, "{u}");
    }
}

/// Starts a replay of `pcap` to `--output ref.json` and to the sink `uri` behind a
/// spool, with time to drain it all: for the tests that kill a collector meanwhile.
fn spawn_replay_to_spooled_sink(d: &Scratch, pcap: &str, uri: &str) -> Proc {
    let child = bin()
        .args([
            "replay",
            "-q",
            pcap,
            "-o",
            &d.s("ref.json"),
            "--stats",
            &d.s("st.json"),
        ])
        .args([
            "--sink",
            uri,
            "--spool",
            &d.s("spool"),
            "--sink-drain-timeout",
            "120s",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Proc(child)
}

#[test]
fn redis_killed_mid_replay_loses_nothing() {
    let Some(exe) = require("redis-server") else {
        return;
    };
    let d = Scratch::new("redis-kill");
    let port = free_port();
    let data = d.path("redis");
    let redis = start_redis(&exe, port, &data, true);
    let pcap = synth(&d, 300_000);
    let uri = format!("redis://127.0.0.1:{port}/v?mode=rpush");
    let mut tw = spawn_replay_to_spooled_sink(&d, &pcap, &uri);
    // Some verdicts are in: kill Redis (SIGKILL) for three seconds.
    wait_for(
        "the first verdicts in redis",
        Duration::from_secs(60),
        || llen(port, "v") > 0,
    );
    let in_at_kill = llen(port, "v");
    drop(redis);
    thread::sleep(Duration::from_secs(3));
    let _redis = start_redis(&exe, port, &data, true);
    let deadline = Instant::now() + Duration::from_secs(120);
    while tw.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "tapwatch did not finish");
        thread::sleep(Duration::from_millis(50));
    }
    let mut stderr = String::new();
    tw.0.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(tw.0.wait().unwrap().success(), "{stderr}");
    let want = lines_of(&d.path("ref.json"));
    assert!(
        in_at_kill < want.len(),
        "redis was killed after the last verdict ({in_at_kill}): make the capture bigger"
    );
    let got = bulk_strings(redis_cmd(port, &["LRANGE", "v", "0", "-1"]).unwrap());
    // Redis answers only once the write is in its fsynced file: nothing it
    // acknowledged is lost, and what it did not acknowledge is sent again.
    assert_no_loss_in_order(&got, &want, 256, "redis after a kill");
    let s = sink_stats(&stats(&d.path("st.json")), &uri);
    assert!(n(&s["outages"]) >= 1, "no outage seen: {s}");
    assert!(n(&s["delivered"]) >= want.len(), "{s}");
    assert_eq!(n(&s["dropped_total"]), 0, "{s}");
    assert_eq!(n(&s["left_in_spool"]), 0, "{s}");
    let down = stderr.matches(": down (").count();
    let up = stderr.matches(": up again after").count();
    assert_eq!(down, n(&s["outages"]), "one line per outage: {stderr}");
    assert_eq!(up, down, "one line per recovery: {stderr}");
}

// ---------------------------------------------------------------- TCP

/// A JSON-lines collector on a TCP port: complete lines are kept, in arrival
/// order; a line cut by a broken connection is discarded, as a collector would.
/// Dropping it closes its sockets at once (unread data is lost, as when a collector
/// is killed).
struct Collector {
    stop: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<String>>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Collector {
    /// Listens on `port`; with `pace`, sleeps that long after each read of 16 KiB at
    /// most (a slow collector).
    fn start(port: u16, pace: Option<Duration>, got: Arc<Mutex<Vec<String>>>) -> Collector {
        let start = Instant::now();
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => break l,
                Err(e) if start.elapsed() < Duration::from_secs(10) => {
                    let _ = e;
                    thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("bind {port}: {e}"),
            }
        };
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let (stop, got) = (Arc::clone(&stop), Arc::clone(&got));
            thread::spawn(move || {
                let mut buf = vec![0u8; 16 << 10];
                while !stop.load(Ordering::Relaxed) {
                    let conn = match listener.accept() {
                        Ok((c, _)) => c,
                        Err(_) => {
                            thread::sleep(Duration::from_millis(5));
                            continue;
                        }
                    };
                    conn.set_nonblocking(false).unwrap();
                    conn.set_read_timeout(Some(Duration::from_millis(50)))
                        .unwrap();
                    let mut conn = conn;
                    let mut partial: Vec<u8> = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        match conn.read(&mut buf) {
                            Ok(0) => break,
                            Ok(k) => {
                                partial.extend_from_slice(&buf[..k]);
                                let mut g = got.lock().unwrap();
                                while let Some(i) = partial.iter().position(|&b| b == b'\n') {
                                    let line: Vec<u8> = partial.drain(..=i).collect();
                                    g.push(String::from_utf8(line[..i].to_vec()).unwrap());
                                }
                                drop(g);
                                if let Some(p) = pace {
                                    thread::sleep(p);
                                }
                            }
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                ) => {}
                            Err(_) => break,
                        }
                    }
                }
            })
        };
        Collector {
            stop,
            got,
            handle: Some(handle),
        }
    }

    fn lines(&self) -> Vec<String> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[test]
fn tcp_file_and_stdout_exactly_once_in_order_with_rotation() {
    let d = Scratch::new("tcp-file");
    let port = free_port();
    let col = Collector::start(port, None, Default::default());
    let pcap = synth(&d, 60_000);
    let tcp = format!("tcp://127.0.0.1:{port}");
    let file = format!("file:{}?rotate-size=64KiB", d.s("eve.json"));
    let (out, st) = (d.s("ref.json"), d.s("st.json"));
    // The file sink from a sinks file (comments and blank lines ignored).
    let sinks_file = d.s("sinks.conf");
    std::fs::write(&sinks_file, format!("# collectors\n\n  {file}  \n")).unwrap();
    let (_, st) = replay(&[
        &pcap,
        "-o",
        &out,
        "--stats",
        &st,
        "--sink",
        &tcp,
        "--sinks-file",
        &sinks_file,
    ]);
    let want = lines_of(&d.path("ref.json"));
    wait_for("the collector", Duration::from_secs(10), || {
        col.lines().len() >= want.len()
    });
    assert_no_loss_in_order(&col.lines(), &want, 0, "tcp");
    // The rotated files, oldest first, then the current one.
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(&d.0)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("eve.json.")
        })
        .collect();
    rotated.sort();
    assert!(rotated.len() >= 10, "{} rotations", rotated.len());
    let mut got = Vec::new();
    for p in &rotated {
        assert!(
            std::fs::metadata(p).unwrap().len() <= 64 << 10,
            "{} too big",
            p.display()
        );
        got.extend(lines_of(p));
    }
    got.extend(lines_of(&d.path("eve.json")));
    assert_no_loss_in_order(&got, &want, 0, "rotated files");
    for u in [&tcp, &file] {
        assert_eq!(n(&sink_stats(&st, u)["delivered"]), want.len(), "{u}");
    }
    // `--sink stdout` writes what `--output` writes.
    let out = bin()
        .args(["replay", "-q", &pcap, "-w", "1", "--sink", "stdout"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let one = bin()
        .args(["replay", "-q", &pcap, "-w", "1"])
        .output()
        .unwrap();
    assert_eq!(
        out.stdout, one.stdout,
        "--sink stdout and standard output differ"
    );
}

#[test]
fn spool_left_by_a_run_is_delivered_first_by_the_next() {
    let d = Scratch::new("spool-next");
    let port = free_port();
    let pcap = synth(&d, 60_000);
    let tcp = format!("tcp://127.0.0.1:{port}");
    let spool = d.s("spool");
    // Run 1: nobody listens.
    let (stderr, st1) = replay(&[
        &pcap,
        "-o",
        &d.s("ref1.json"),
        "--stats",
        &d.s("st1.json"),
        "--sink",
        &tcp,
        "--spool",
        &spool,
        "--sink-drain-timeout",
        "1s",
    ]);
    let want1 = lines_of(&d.path("ref1.json"));
    let s1 = sink_stats(&st1, &tcp);
    assert_eq!(n(&s1["delivered"]), 0, "{s1}");
    assert_eq!(n(&s1["left_in_spool"]), want1.len(), "{s1}");
    assert_eq!(n(&s1["spooled"]), want1.len(), "{s1}");
    assert_eq!(
        stderr.matches(": down (").count(),
        1,
        "one line per outage: {stderr}"
    );
    assert!(stderr.contains("left in the spool"), "{stderr}");
    // Run 2, the collector back: run 1's verdicts first, then run 2's.
    let col = Collector::start(port, None, Default::default());
    let demo = common::demo();
    let (_, st2) = replay(&[
        demo.to_str().unwrap(),
        "-o",
        &d.s("ref2.json"),
        "--stats",
        &d.s("st2.json"),
        "--sink",
        &tcp,
        "--spool",
        &spool,
    ]);
    let mut want = want1.clone();
    want.extend(lines_of(&d.path("ref2.json")));
    wait_for("the collector", Duration::from_secs(10), || {
        col.lines().len() >= want.len()
    });
    thread::sleep(Duration::from_millis(200));
    assert_no_loss_in_order(&col.lines(), &want, 0, "spool then new");
    let s2 = sink_stats(&st2, &tcp);
    assert_eq!(n(&s2["spool_at_start"]), want1.len(), "{s2}");
    assert_eq!(n(&s2["delivered"]), want.len(), "{s2}");
    assert_eq!(n(&s2["left_in_spool"]), 0, "{s2}");
    let left: Vec<_> = std::fs::read_dir(d.path("spool"))
        .unwrap()
        .flatten()
        .flat_map(|e| std::fs::read_dir(e.path()).unwrap().flatten())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .collect();
    assert!(left.is_empty(), "segments left: {left:?}");
}

#[test]
fn tcp_collector_killed_mid_replay_loses_nothing() {
    let d = Scratch::new("tcp-kill");
    let port = free_port();
    let pcap = synth(&d, 300_000);
    let tcp = format!("tcp://127.0.0.1:{port}?resend=8MiB");
    let got: Arc<Mutex<Vec<String>>> = Default::default();
    // A slow collector (16 KiB per millisecond): the replay outruns it, so lines
    // wait in the queue and the spool when it is killed.
    let col = Collector::start(port, Some(Duration::from_millis(1)), Arc::clone(&got));
    let mut tw = spawn_replay_to_spooled_sink(&d, &pcap, &tcp);
    wait_for("the first verdicts", Duration::from_secs(60), || {
        got.lock().unwrap().len() > 500
    });
    drop(col);
    let at_kill = got.lock().unwrap().len();
    thread::sleep(Duration::from_secs(3));
    let _col = Collector::start(port, None, Arc::clone(&got));
    let deadline = Instant::now() + Duration::from_secs(120);
    while tw.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "tapwatch did not finish");
        thread::sleep(Duration::from_millis(50));
    }
    let mut stderr = String::new();
    tw.0.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(tw.0.wait().unwrap().success(), "{stderr}");
    thread::sleep(Duration::from_millis(300));
    let want = lines_of(&d.path("ref.json"));
    assert!(
        at_kill < want.len(),
        "the collector was killed after the end"
    );
    let s = sink_stats(&stats(&d.path("st.json")), &tcp);
    let dups = assert_no_loss_in_order(
        &got.lock().unwrap(),
        &want,
        n(&s["resent"]),
        "tcp after a kill",
    );
    assert!(n(&s["outages"]) >= 1, "{s}");
    assert!(
        n(&s["spooled"]) > 0,
        "the slow collector made nothing spool: {s}"
    );
    assert_eq!(n(&s["dropped_total"]), 0, "{s}");
    assert_eq!(
        stderr.matches(": down (").count(),
        n(&s["outages"]),
        "{stderr}"
    );
    eprintln!("tcp kill: {at_kill} lines in at the kill, {dups} duplicates, {s}");
}

#[test]
fn full_spool_counts_exactly_what_it_dropped() {
    let d = Scratch::new("spool-full");
    let port = free_port();
    let pcap = synth(&d, 60_000);
    let tcp = format!("tcp://127.0.0.1:{port}");
    let spool = d.s("spool");
    let (_, st1) = replay(&[
        &pcap,
        "-o",
        &d.s("ref.json"),
        "--stats",
        &d.s("st1.json"),
        "--sink",
        &tcp,
        "--spool",
        &spool,
        "--spool-max",
        "256KiB",
        "--sink-drain-timeout",
        "1s",
    ]);
    let want = lines_of(&d.path("ref.json"));
    let s1 = sink_stats(&st1, &tcp);
    let (spooled, dropped) = (n(&s1["left_in_spool"]), n(&s1["dropped"]["spool_full"]));
    assert!(spooled > 0 && dropped > 0, "{s1}");
    assert_eq!(spooled + dropped, want.len(), "{s1}");
    assert_eq!(n(&s1["dropped_total"]), dropped, "{s1}");
    assert!(n(&s1["left_in_spool_bytes"]) <= 256 << 10, "{s1}");
    // What the spool kept is delivered by the next run: exactly as many lines as
    // were not counted dropped, each a verdict of run 1, in order.
    let col = Collector::start(port, None, Default::default());
    let empty = d.s("empty.pcap");
    std::fs::copy(root().join("tests/captures/demo.pcap"), &empty).unwrap();
    let (_, st2) = replay(&[
        &empty,
        "-o",
        &d.s("ref2.json"),
        "--stats",
        &d.s("st2.json"),
        "--sink",
        &tcp,
        "--spool",
        &spool,
    ]);
    let s2 = sink_stats(&st2, &tcp);
    let run2 = lines_of(&d.path("ref2.json"));
    wait_for("the collector", Duration::from_secs(10), || {
        col.lines().len() >= spooled + run2.len()
    });
    thread::sleep(Duration::from_millis(200));
    let got = col.lines();
    assert_eq!(got.len(), spooled + run2.len());
    assert_eq!(n(&s2["delivered"]), got.len(), "{s2}");
    let mut it = want.iter();
    for g in &got[..spooled] {
        assert!(
            it.any(|w| w == g),
            "a delivered line is not in run 1's order"
        );
    }
    assert_eq!(&got[spooled..], &run2[..]);

    // Without a spool, the memory queue is the bound: what it cannot hold is
    // dropped and counted, what it holds at exit is counted lost.
    let (stderr, st3) = replay(&[
        &pcap,
        "-o",
        &d.s("ref3.json"),
        "--stats",
        &d.s("st3.json"),
        "--sink",
        &format!("tcp://127.0.0.1:{}", free_port()),
        "--sink-queue",
        "100",
        "--sink-drain-timeout",
        "500ms",
    ]);
    let s3 = &st3["sinks"][0];
    let produced = lines_of(&d.path("ref3.json")).len();
    assert_eq!(n(&s3["produced"]), produced);
    assert_eq!(n(&s3["delivered"]), 0, "{s3}");
    assert!(n(&s3["dropped"]["queue_full"]) > 0, "{s3}");
    assert_eq!(
        n(&s3["dropped"]["queue_full"]) + n(&s3["lost_at_exit"]),
        produced,
        "{s3}"
    );
    assert!(stderr.contains("NOT delivered"), "{stderr}");
}

// ---------------------------------------------------------------- rsyslog

#[test]
fn rsyslog_tcp_udp_and_local_socket_exactly_once_in_order() {
    let Some(exe) = require("rsyslogd") else {
        return;
    };
    let d = Scratch::new("rsyslog");
    let (tcp_port, udp_port) = (free_port(), free_port());
    let sock = d.s("log.sock");
    let conf = format!(
        r#"global(workDirectory="{dir}" maxMessageSize="64k")
module(load="imtcp")
module(load="imudp")
module(load="imuxsock" SysSock.Use="off")
input(type="imtcp" port="{tcp_port}" address="127.0.0.1")
input(type="imudp" port="{udp_port}" address="127.0.0.1" rcvBufSize="16m")
input(type="imuxsock" Socket="{sock}" CreatePath="on" RateLimit.Interval="0")
template(name="fields" type="string" string="%inputname%|%app-name%|%msgid%|%msg%\n")
*.* action(type="omfile" file="{dir}/received.log" template="fields")
"#,
        dir = d.0.display()
    );
    std::fs::write(d.path("rsyslog.conf"), conf).unwrap();
    let child = Command::new(exe)
        .args(["-n", "-f", &d.s("rsyslog.conf"), "-i", &d.s("rsyslog.pid")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _rsyslog = Proc(child);
    wait_for("rsyslogd", Duration::from_secs(15), || {
        TcpStream::connect(("127.0.0.1", tcp_port)).is_ok() && d.path("log.sock").exists()
    });
    let pcap = synth(&d, 30_000);
    let tcp = format!("syslog://127.0.0.1:{tcp_port}?transport=tcp");
    let local = format!("syslog:{sock}");
    let (out, st) = (d.s("ref.json"), d.s("st.json"));
    let (_, st) = replay(&[
        &pcap, "-o", &out, "--stats", &st, "--sink", &tcp, "--sink", &local,
    ]);
    let want = lines_of(&d.path("ref.json"));
    // UDP has no flow control: a capture with fewer verdicts.
    let udp = format!("syslog://127.0.0.1:{udp_port}");
    let tls = root().join("tests/captures/tls/py-client-rejects-ca.pcap");
    let (udp_out, udp_st) = (d.s("ref-udp.json"), d.s("st-udp.json"));
    let (_, st_udp) = replay(&[
        tls.to_str().unwrap(),
        "-o",
        &udp_out,
        "--stats",
        &udp_st,
        "--sink",
        &udp,
    ]);
    let want_udp = lines_of(&d.path("ref-udp.json"));
    assert!(!want_udp.is_empty());
    let received = d.path("received.log");
    let by_input = |input: &str| -> Vec<String> {
        lines_of(&received)
            .into_iter()
            .filter_map(|l| {
                let mut f = l.splitn(4, '|');
                let (i, app, msgid, msg) = (f.next()?, f.next()?, f.next()?, f.next()?);
                (i == input).then(|| {
                    assert_eq!(app, "tapwatch", "{l}");
                    if input != "imuxsock" {
                        assert_eq!(msgid, "verdict", "{l}");
                    }
                    msg.trim_start().to_string()
                })
            })
            .collect()
    };
    wait_for(
        "rsyslog to write everything",
        Duration::from_secs(20),
        || {
            by_input("imtcp").len() >= want.len()
                && by_input("imuxsock").len() >= want.len()
                && by_input("imudp").len() >= want_udp.len()
        },
    );
    thread::sleep(Duration::from_millis(300));
    assert_no_loss_in_order(&by_input("imtcp"), &want, 0, "syslog over TCP");
    assert_no_loss_in_order(&by_input("imuxsock"), &want, 0, "syslog: (local socket)");
    assert_no_loss_in_order(&by_input("imudp"), &want_udp, 0, "syslog over UDP");
    for u in [&tcp, &local] {
        assert_eq!(n(&sink_stats(&st, u)["delivered"]), want.len(), "{u}");
    }
    assert_eq!(n(&sink_stats(&st_udp, &udp)["delivered"]), want_udp.len());
}
