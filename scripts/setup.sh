#!/usr/bin/env bash
# Installs what ivrd needs on a Debian machine that has Rust. Idempotent: only missing
# packages are installed. Usage: scripts/setup.sh run|test
set -euo pipefail
cd "$(dirname "$0")/.."

purpose=${1:-run}
# Runtime: espeak-ng renders text prompts (outages); the rest build whisper-rs (cmake, clang).
run_pkgs=(espeak-ng cmake clang libclang-dev python3-pip)
# Tests: real SIP peers (SIPp, baresip), audio tools (sox), captures (tshark), unit checks
# (systemd), a real browser for the WebRTC test phone (headless Chromium + chromedriver), and
# Prometheus, which runs every query of the Grafana dashboard; Kamailio and PostgreSQL for
# several nodes sharing state (tests/cluster.rs).
test_pkgs=(sip-tester sox libsox-fmt-all baresip tshark systemd chromium chromium-driver prometheus
    kamailio postgresql)

pkgs=("${run_pkgs[@]}")
[ "$purpose" = test ] && pkgs+=("${test_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup: system packages ready"
