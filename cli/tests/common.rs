//! Helpers shared by the end-to-end tests: run the binary, read its records.

#![allow(dead_code, reason = "each test file uses a different subset")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tapwatch"))
}

/// Runs `tapwatch replay -q ARGS...`; returns the output, checking it did not panic.
pub fn replay(args: &[&str]) -> Output {
    let out = bin()
        .arg("replay")
        .arg("-q")
        .args(args)
        .output()
        .expect("run tapwatch");
    assert_ne!(
        out.status.code(),
        Some(101),
        "tapwatch panicked: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.code().is_some(),
        "tapwatch killed by a signal: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Parses JSON lines, sorted by start time, client, server (a stable order whatever
/// the number of workers).
pub fn records(stdout: &[u8]) -> Vec<Value> {
    let mut v: Vec<Value> = std::str::from_utf8(stdout)
        .expect("utf-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect();
    v.sort_by_key(sort_key);
    v
}

pub fn sort_key(r: &Value) -> (String, String, u64, String) {
    (
        r["ts_start"].as_str().unwrap_or("").to_string(),
        r["client"]["ip"].as_str().unwrap_or("").to_string(),
        r["client"]["port"].as_u64().unwrap_or(0),
        r["session_id"].as_str().unwrap_or("").to_string(),
    )
}

/// Every capture shipped in the repository: ours and the real-world corpus.
pub fn all_captures() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in [
        "tests/captures",
        "tests/captures/tls",
        "tests/corpus/zeek",
        "tests/corpus/suricata-verify",
        "tests/corpus/arkime",
    ] {
        let Ok(entries) = std::fs::read_dir(root().join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if matches!(
                p.extension().and_then(|x| x.to_str()),
                Some("pcap" | "pcapng")
            ) {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(files.len() > 50, "captures missing: found {}", files.len());
    files
}

pub fn schema_validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join("docs/verdict.schema.json"))
        .expect("docs/verdict.schema.json");
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema compiles")
}

/// A fresh scratch directory for one test (removed by the test when done).
pub fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tapwatch-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create scratch directory");
    dir
}

/// The demo capture recorded from real Linux stacks (tests/captures/README.md).
pub fn demo() -> PathBuf {
    root().join("tests/captures/demo.pcap")
}

/// The demo capture's records, as a reference for variants of it.
pub fn demo_records() -> Vec<Value> {
    records(&replay(&[demo().to_str().unwrap()]).stdout)
}
