#!/usr/bin/env bash
# Builds the fuzz targets and runs each for SECONDS (default 60), one after another, from a
# seed corpus. Exits non-zero if any target crashed; the crashing input is kept under
# fuzz/artifacts/<target>/ and the output shows how to replay it.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      targets: sip_guard sip_leg sdp rtp_dtmf flow_yaml config_yaml
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and a C++ compiler (libFuzzer is
# built from source), and no nightly toolchain: with `-s none` cargo-fuzz instruments the
# build with stable rustc flags only (-Cpasses=sancov-module, -Cllvm-args=...). Its default,
# AddressSanitizer, needs -Zsanitizer, which stable rejects even with RUSTC_BOOTSTRAP=1 set
# for cargo; the fuzzed code is safe Rust, so ASan would add little beyond the panic
# hook anyway. Debug assertions and overflow checks stay on (cargo-fuzz's default), so
# arithmetic overflow counts as a crash.
#
# Corpus: fuzz/corpus/<target>/ holds the committed seeds (hand-written SIP, SDP, RFC 4733
# packets from SIPp's pcaps); the RFC 4475 messages, the shipped flows and configs are
# added from the repository at each run. New inputs libFuzzer finds go to fuzz/work/
# (ignored by git), so repeated runs build on each other.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(sip_guard sip_leg sdp rtp_dtmf flow_yaml config_yaml)
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
    exit 2
fi
work=fuzz/work
# Copies repository files into a target's working corpus (as seeds, not overwriting finds).
seed() {
    local target=$1
    shift
    mkdir -p "$work/$target"
    local f
    for f in "$@"; do
        if [ -f "$f" ]; then
            cp "$f" "$work/$target/seed-$(basename "$f")"
        fi
    done
}
for t in "${targets[@]}"; do
    mkdir -p "$work/$t"
done
seed sip_guard tests/data/rfc4475/*.dat
seed flow_yaml flows/*.yaml
seed config_yaml ivrd.yaml systemd/ivrd.yaml

# One build for every target: they share the ivrd build.
cargo fuzz build -s none

failed=()
for t in "${targets[@]}"; do
    corpora=("$work/$t")
    [ -d "fuzz/corpus/$t" ] && corpora+=("fuzz/corpus/$t")
    args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
    dict="fuzz/dict/$t.dict"
    # The own SIP layer reads the same SIP the guard does.
    [ "$t" = sip_leg ] && dict=fuzz/dict/sip_guard.dict
    [ -f "$dict" ] && args+=(-dict="$dict")
    echo "== fuzz $t for ${secs}s"
    if ! cargo fuzz run -s none "$t" "${corpora[@]}" -- "${args[@]}"; then
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: crashes in: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz.sh: ${#targets[@]} targets, ${secs}s each, no crash"
