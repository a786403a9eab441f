#!/usr/bin/env bash
# Everything CI runs, from a fresh clone: installs what the tests need (Debian
# packages, via scripts/setup.sh), then format, lint, unit, property and end-to-end
# tests, the tshark cross-check of every shipped capture, and the XDP program: the
# committed object rebuilt from its source byte for byte, and the kernel's verifier
# and its counters on a veth pair in namespaces of its own (root).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --release --locked -- -D warnings
cargo test --workspace --release --locked
cargo build --release --locked -p tapwatch
scripts/crosscheck-all.sh
scripts/build-ebpf.sh --check
scripts/test-ebpf.sh
echo "test.sh: all green"
