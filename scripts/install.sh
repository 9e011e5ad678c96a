#!/usr/bin/env bash
# Installs ivrd as a system service (FHS paths):
#   /usr/local/bin/ivrd                      the binary (release build)
#   /etc/systemd/system/ivrd.service         the unit (systemd/ivrd.service)
#   /etc/systemd/system/ivrd-probe.{service,timer}  mystery-shopper calls every 5 minutes
#   /etc/ivrd/probes.yaml                    what the probe calls check (kept if it exists)
#   /etc/ivrd/ivrd.yaml                      config (kept if it exists)
#   /etc/ivrd/flows/                         flows and outages.yaml (kept if they exist)
#   /usr/local/share/ivrd/sounds/            prompts
#   /usr/local/share/ivrd/models/            the Whisper and sentence-embedding models, when fetched
#   /usr/local/share/doc/ivrd/README.md
# State (SQLite, admin token) lives in /var/lib/ivrd, created by systemd (StateDirectory).
# Usage: sudo scripts/install.sh [--prefix /usr/local] [--destdir DIR] [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/usr/local
destdir=""
build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix="$2"; shift 2 ;;
        --destdir) destdir="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        *) echo "install: unknown argument $1" >&2; exit 2 ;;
    esac
done

if [ "$build" = 1 ]; then
    scripts/setup.sh run
    cargo build --release --locked
fi

root="$destdir"
share="$root$prefix/share/ivrd"
install -d "$root$prefix/bin" "$share/sounds" "$share/models" "$root$prefix/share/doc/ivrd" \
    "$root/etc/ivrd/flows" "$root/etc/systemd/system"
install -m 0755 target/release/ivrd "$root$prefix/bin/ivrd"
install -m 0644 sounds/*.wav sounds/prompts.tsv "$share/sounds/"
install -m 0644 README.md "$root$prefix/share/doc/ivrd/README.md"
for m in .cache/models/ggml-*.bin; do
    [ -e "$m" ] && install -m 0644 "$m" "$share/models/"
done
if [ -d .cache/models/all-minilm-l6-v2 ]; then
    install -d "$share/models/all-minilm-l6-v2"
    install -m 0644 .cache/models/all-minilm-l6-v2/* "$share/models/all-minilm-l6-v2/"
fi
for unit in ivrd.service ivrd-probe.service ivrd-probe.timer; do
    sed "s#/usr/local/bin/ivrd#$prefix/bin/ivrd#g; s#/usr/local/share/doc#$prefix/share/doc#g" \
        "systemd/$unit" > "$root/etc/systemd/system/$unit"
    chmod 0644 "$root/etc/systemd/system/$unit"
done

# Admin-owned files are never overwritten.
if [ ! -e "$root/etc/ivrd/ivrd.yaml" ]; then
    sed "s#@SHARE@#$prefix/share/ivrd#g" systemd/ivrd.yaml > "$root/etc/ivrd/ivrd.yaml"
    chmod 0644 "$root/etc/ivrd/ivrd.yaml"
fi
if [ ! -e "$root/etc/ivrd/probes.yaml" ]; then
    install -m 0644 systemd/probes.yaml "$root/etc/ivrd/probes.yaml"
fi
for f in flows/*.yaml; do
    [ -e "$root/etc/ivrd/$f" ] || install -m 0644 "$f" "$root/etc/ivrd/$f"
done

echo "installed ivrd to $root$prefix (config in $root/etc/ivrd)"
if [ -z "$destdir" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    echo "start it with: systemctl enable --now ivrd"
fi
