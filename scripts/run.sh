#!/usr/bin/env bash
# Sets up everything and runs ivrd on the default flows, listening on loopback.
# Usage: scripts/run.sh [extra ivrd run arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh run
cargo build --release --locked
exec target/release/ivrd run --config ivrd.yaml "$@"
