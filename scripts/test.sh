#!/usr/bin/env bash
# Everything CI runs, from a fresh clone: installs what the tests need (Debian
# packages, via scripts/setup.sh), then format, lint, unit, property and end-to-end
# tests, and the tshark cross-check of every shipped capture.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --release --locked -- -D warnings
cargo test --workspace --release --locked
cargo build --release --locked -p tapwatch
scripts/crosscheck-all.sh
echo "test.sh: all green"
