#!/usr/bin/env bash
# Sets up everything and runs every test: unit tests of the pure cores, then real peers
# (SIPp, the Rust test caller) against the real binary on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --all-targets
