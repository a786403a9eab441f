//! `tapwatch check`: on loopback (any machine), and on a two-queue veth pair in a
//! network namespace this test creates and always removes (as root; in CI it must
//! run).

mod common;

use common::bin;

fn check(args: &[&str], netns: Option<&str>) -> (i32, String) {
    let out = match netns {
        Some(ns) => std::process::Command::new("ip")
            .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_tapwatch"), "check"])
            .args(args)
            .output()
            .expect("run ip netns exec"),
        None => bin()
            .arg("check")
            .args(args)
            .output()
            .expect("run tapwatch"),
    };
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn unknown_interface_fails_with_what_to_do() {
    let (code, text) = check(&["lo", "twnosuch0"], None);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("interface lo:"), "{text}");
    assert!(
        text.contains("FAIL no such interface \"twnosuch0\" in this network namespace"),
        "{text}"
    );
    assert!(text.contains("-> give an interface"), "{text}");
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// Deletes the namespace (and the veth pair inside it) on every exit path.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

fn ip(args: &[&str]) {
    let st = std::process::Command::new("ip")
        .args(args)
        .status()
        .unwrap();
    assert!(st.success(), "ip {args:?} failed");
}

#[test]
fn veth_with_two_queues_in_a_namespace() {
    if !is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root: this test must run there"
        );
        eprintln!("skipped: needs root to create a network namespace");
        return;
    }
    let ns = Netns(format!("twchk-{}", std::process::id()));
    ip(&["netns", "add", &ns.0]);
    ip(&[
        "-n",
        &ns.0,
        "link",
        "add",
        "twchk0",
        "numrxqueues",
        "2",
        "numtxqueues",
        "2",
        "type",
        "veth",
        "peer",
        "name",
        "twchk1",
        "numrxqueues",
        "2",
        "numtxqueues",
        "2",
    ]);
    ip(&["-n", &ns.0, "link", "set", "twchk0", "up"]);
    ip(&["-n", &ns.0, "link", "set", "twchk1", "up"]);
    let (code, text) = check(&["twchk0"], Some(&ns.0));
    assert_eq!(code, 0, "{text}");
    for want in [
        "ok   AF_XDP: a socket could be opened",
        "ok   BPF: a map could be created",
        "driver veth; 2 receive queue(s)",
        "XDP: driver (native) mode supported",
        "AF_XDP zero-copy: not supported by the driver: copy mode",
        "ok   no XDP program attached",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}
