//! End to end: two capture points whose clocks differ (`--clock-offset`), and the
//! flags that say how points are compared (`--client-side`, `--match-window`).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// Writes a copy of the little-endian pcap `src` into `dir` with every timestamp
/// moved by `shift_ns` (a multiple of the file's resolution), as if captured by a
/// machine whose clock is that far ahead.
fn shifted_copy(src: &Path, dir: &Path, shift_ns: i64) -> PathBuf {
    let data = std::fs::read(src).unwrap();
    let u32_at = |at: usize| u32::from_le_bytes(data[at..at + 4].try_into().unwrap());
    let unit: i64 = match u32_at(0) {
        0xa1b2_c3d4 => 1_000,
        0xa1b2_3c4d => 1,
        m => panic!("{}: not a little-endian pcap (magic {m:#x})", src.display()),
    };
    assert_eq!(
        shift_ns % unit,
        0,
        "the shift must be whole units of the file"
    );
    let per_sec = 1_000_000_000 / unit;
    let mut out = data[..24].to_vec();
    let mut at = 24;
    while at < data.len() {
        let units = i64::from(u32_at(at)) * per_sec + i64::from(u32_at(at + 4)) + shift_ns / unit;
        let incl = u32_at(at + 8) as usize;
        out.extend_from_slice(&u32::try_from(units / per_sec).unwrap().to_le_bytes());
        out.extend_from_slice(&u32::try_from(units % per_sec).unwrap().to_le_bytes());
        out.extend_from_slice(&data[at + 8..at + 16 + incl]);
        at += 16 + incl;
    }
    let path = dir.join(format!("shifted{shift_ns}.pcap"));
    std::fs::write(&path, out).unwrap();
    path
}

fn point(name: &str, path: &Path) -> String {
    format!("{name}={}", path.display())
}

/// Runs a replay with `--stats`; returns the records, the stats and the output.
fn replay_with_stats(dir: &Path, args: &[&str]) -> (Vec<Value>, Value, std::process::Output) {
    let stats_path = dir.join("stats.json");
    let mut all = vec!["--workers", "1", "--stats", stats_path.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = replay(&all);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = serde_json::from_str(&std::fs::read_to_string(&stats_path).unwrap()).unwrap();
    (records(&out.stdout), stats, out)
}

/// The second point's clock runs 3.7 s ahead (or 250 ms, or 437 us behind): with
/// the default `--clock-offset auto` the records are exactly those of two copies
/// with the same clock, every timestamp in the first point's clock.
#[test]
fn auto_offset_undoes_a_shifted_copy() {
    let dir = scratch_dir("clock-auto");
    let demo = demo();
    let (want, _, _) =
        replay_with_stats(&dir, &[&point("inside", &demo), &point("outside", &demo)]);
    assert_eq!(want.len(), 5);
    for shift in [3_700_000_000i64, -250_000_000, -437_000] {
        let shifted = shifted_copy(&demo, &dir, shift);
        let (got, stats, _) = replay_with_stats(
            &dir,
            &[&point("inside", &demo), &point("outside", &shifted)],
        );
        assert_eq!(got, want, "shift {shift} ns");
        let clock = &stats["clock"]["points"]["outside"];
        assert_eq!(clock["offset_ns"], shift, "{stats}");
        assert_eq!(clock["method"], "handshake");
        assert_eq!(clock["spread_ns"], 0, "an exact copy");
        assert!(clock["samples"].as_u64().unwrap() >= 3);
        assert_eq!(stats["clock"]["points"]["inside"]["method"], "reference");
        assert_eq!(stats["clock"]["mode"], "auto");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `--clock-offset none`: nothing is corrected, and the summary says so; the
/// records then differ from the corrected ones.
#[test]
fn clock_offset_none_corrects_nothing() {
    let dir = scratch_dir("clock-none");
    let demo = demo();
    let shifted = shifted_copy(&demo, &dir, 3_700_000_000);
    let (inside, outside) = (point("inside", &demo), point("outside", &shifted));
    let (corrected, _, _) = replay_with_stats(&dir, &[&inside, &outside]);
    let stats_path = dir.join("stats-none.json");
    let out = bin()
        .args([
            "replay",
            "--workers",
            "1",
            "--clock-offset",
            "none",
            "--stats",
        ])
        .arg(&stats_path)
        .args([&inside, &outside])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "clock: reference inside (client side); outside not corrected (--clock-offset none)"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");
    let stats: Value =
        serde_json::from_str(&std::fs::read_to_string(&stats_path).unwrap()).unwrap();
    assert_eq!(stats["clock"]["mode"], "none");
    assert_eq!(stats["clock"]["points"]["outside"]["method"], "off");
    assert_eq!(stats["clock"]["points"]["outside"]["offset_ns"], 0);
    assert_ne!(records(&out.stdout), corrected);
    std::fs::remove_dir_all(&dir).ok();
}

/// The summary on standard error shows the estimate: offset in ms, samples, spread.
#[test]
fn summary_shows_the_estimate() {
    let dir = scratch_dir("clock-summary");
    let demo = demo();
    let shifted = shifted_copy(&demo, &dir, -1_500_000_000);
    let out = bin()
        .args(["replay", "--workers", "1"])
        .args([point("inside", &demo), point("outside", &shifted)])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "clock: reference inside (client side); outside -1500.000 ms, estimated from 7 \
             packets seen at both (handshake), spread 0.000 ms"
        ),
        "{stderr}"
    );
    // One point: nothing to correct, nothing said.
    let out = bin()
        .args(["replay", demo.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("clock"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

/// An offset given by hand replaces the estimate, to the nanosecond.
#[test]
fn given_offset_is_applied() {
    let dir = scratch_dir("clock-given");
    let demo = demo();
    let shifted = shifted_copy(&demo, &dir, 3_700_000_000);
    let (inside, outside) = (point("inside", &demo), point("outside", &shifted));
    let (auto, _, _) = replay_with_stats(&dir, &[&inside, &outside]);
    let (given, stats, _) =
        replay_with_stats(&dir, &["--clock-offset", "outside=3.7", &inside, &outside]);
    assert_eq!(given, auto);
    assert_eq!(stats["clock"]["points"]["outside"]["method"], "given");
    assert_eq!(
        stats["clock"]["points"]["outside"]["offset_ns"],
        3_700_000_000i64
    );
    // Given with `none` for the rest: the given point is still corrected.
    let (_, stats, _) = replay_with_stats(
        &dir,
        &[
            "--clock-offset",
            "none",
            "--clock-offset",
            "outside=-0.250",
            &inside,
            &outside,
        ],
    );
    assert_eq!(
        stats["clock"]["points"]["outside"]["offset_ns"],
        -250_000_000i64
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Points with nothing in common: no correction, and a one-line warning even with
/// `-q`.
#[test]
fn nothing_in_common_warns() {
    let other = root().join("tests/corpus/zeek/ssl.v3.pcap");
    let out = replay(&[&point("inside", &demo()), &point("outside", &other)]);
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0]
            .contains("no packet was seen at both point outside and the client side (inside)")
            && warnings[0].contains("--clock-offset outside=SECONDS"),
        "{stderr}"
    );
}

/// An RFC 3339 time `ns` later, within the same day.
fn later(ts: &str, ns: u64) -> String {
    let (day, time) = ts.trim_end_matches('Z').split_once('T').unwrap();
    let (hms, frac) = time.split_once('.').unwrap();
    let mut t: u64 = frac.parse().unwrap();
    for (i, part) in hms.split(':').enumerate() {
        t += part.parse::<u64>().unwrap() * [3600, 60, 1][i] * 1_000_000_000;
    }
    t += ns;
    let (secs, nanos) = (t / 1_000_000_000, t % 1_000_000_000);
    assert!(secs < 86_400, "stays within the day");
    format!(
        "{day}T{:02}:{:02}:{:02}.{nanos:09}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn usage_error(args: &[&str]) -> String {
    let out = replay(args);
    assert_eq!(out.status.code(), Some(2), "{args:?} should be refused");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `--clock-offset` values that cannot be right are refused, naming the problem.
#[test]
fn bad_clock_offsets_are_refused() {
    let demo = demo();
    let (a, b) = (point("inside", &demo), point("outside", &demo));
    let e = usage_error(&["--clock-offset", "elsewhere=1", &a, &b]);
    assert!(e.contains("no capture point \"elsewhere\""), "{e}");
    assert!(e.contains("\"inside\", \"outside\""), "{e}");
    let e = usage_error(&["--clock-offset", "inside=1", &a, &b]);
    assert!(e.contains("the reference clock"), "{e}");
    let e = usage_error(&["--clock-offset", "auto", "--clock-offset", "none", &a, &b]);
    assert!(e.contains("exclude each other"), "{e}");
    let e = usage_error(&[
        "--clock-offset",
        "outside=1",
        "--clock-offset",
        "outside=2",
        &a,
        &b,
    ]);
    assert!(e.contains("given twice"), "{e}");
    for bad in [
        "outside=",
        "outside=soon",
        "outside=1e30",
        "sometimes",
        "=1",
    ] {
        let e = usage_error(&["--clock-offset", bad, &a, &b]);
        assert!(e.contains("--clock-offset"), "{bad}: {e}");
    }
}

/// `--client-side` with a name no point has: a clear error listing the points.
#[test]
fn client_side_unknown_name_is_a_clear_error() {
    let demo = demo();
    let e = usage_error(&[
        "--client-side",
        "nowhere",
        &point("inside", &demo),
        &point("outside", &demo),
    ]);
    assert!(
        e.contains("--client-side: there is no capture point \"nowhere\"; the points are \"inside\", \"outside\""),
        "{e}"
    );
}

/// `--client-side` picks the reference clock; `--match-window` takes milliseconds
/// or a duration, and both reach the run's settings (shown in `--stats`).
#[test]
fn client_side_and_match_window_are_parsed() {
    let dir = scratch_dir("clock-flags");
    let demo = demo();
    let shifted = shifted_copy(&demo, &dir, 3_700_000_000);
    let (inside, outside) = (point("inside", &demo), point("outside", &shifted));
    let (reference, stats, _) = replay_with_stats(&dir, &[&inside, &outside]);
    assert_eq!(stats["correlate"]["client_side"], "inside");
    assert_eq!(stats["correlate"]["match_window_ms"], 50.0);

    let (got, stats, _) = replay_with_stats(
        &dir,
        &[
            "--client-side",
            "outside",
            "--match-window",
            "2.5",
            &inside,
            &outside,
        ],
    );
    assert_eq!(stats["correlate"]["client_side"], "outside");
    assert_eq!(stats["correlate"]["match_window_ms"], 2.5);
    assert_eq!(stats["clock"]["reference"], "outside");
    assert_eq!(
        stats["clock"]["points"]["inside"]["offset_ns"],
        -3_700_000_000i64
    );
    // Timestamps are now in the outside point's clock: 3.7 s later.
    assert_eq!(got.len(), reference.len());
    for (g, r) in got.iter().zip(&reference) {
        for field in ["ts_start", "ts_end"] {
            let want = later(r[field].as_str().unwrap(), 3_700_000_000);
            assert_eq!(g[field], want, "{field}: {g}");
        }
    }

    for (arg, ms) in [
        ("50ms", 50.0),
        ("1s", 1000.0),
        ("0", 0.0),
        ("0.001", 0.001),
        ("120", 120.0),
    ] {
        let (_, stats, _) = replay_with_stats(&dir, &["--match-window", arg, &inside, &outside]);
        assert_eq!(
            stats["correlate"]["match_window_ms"], ms,
            "--match-window {arg}"
        );
    }
    for bad in ["-1", "soon", "", "NaN", "inf"] {
        let e = usage_error(&[&format!("--match-window={bad}"), &inside, &outside]);
        assert!(e.contains("--match-window"), "{bad}: {e}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
