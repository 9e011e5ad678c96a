#!/usr/bin/env bash
# Regenerates the default prompt set: one sounds/NAME.wav per line of sounds/prompts.tsv
# (NAME<TAB>TEXT; blank lines and lines starting with '#' are skipped), spoken by
# espeak-ng in US English at 150 words per minute.
#
# Output stays at espeak-ng's native 22050 Hz, 16-bit mono: ivrd resamples prompts to
# 8 kHz when it loads them, so the files stay useful for other rates too.
#
# Idempotent: a WAV is only replaced when the synthesised audio differs, so running it
# twice changes nothing. Usage: scripts/make-sounds.sh [SOUNDS_DIR]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sounds="${1:-$root/sounds}"
list="$sounds/prompts.tsv"

if ! command -v espeak-ng >/dev/null 2>&1; then
    echo "make-sounds: espeak-ng not found; install it (Debian/Ubuntu: apt-get install espeak-ng)" >&2
    exit 1
fi
if [[ ! -r "$list" ]]; then
    echo "make-sounds: cannot read $list" >&2
    exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf -- "$tmp"' EXIT

declare -A seen=()
written=0
unchanged=0
line_no=0
while IFS= read -r line || [[ -n "$line" ]]; do
    line_no=$((line_no + 1))
    line="${line%$'\r'}"
    [[ -z "${line//[[:space:]]/}" || "$line" == \#* ]] && continue

    if [[ "$line" != *$'\t'* ]]; then
        echo "make-sounds: $list:$line_no: expected NAME<TAB>TEXT" >&2
        exit 1
    fi
    name="${line%%$'\t'*}"
    text="${line#*$'\t'}"
    # The name becomes a file name: keep it to a safe alphabet (no '/', no '..').
    if [[ ! "$name" =~ ^[A-Za-z0-9_-]+$ ]]; then
        echo "make-sounds: $list:$line_no: invalid prompt name '$name' (use letters, digits, _ and -)" >&2
        exit 1
    fi
    if [[ -z "${text//[[:space:]]/}" ]]; then
        echo "make-sounds: $list:$line_no: prompt '$name' has no text" >&2
        exit 1
    fi
    if [[ -n "${seen[$name]:-}" ]]; then
        echo "make-sounds: $list:$line_no: prompt '$name' already defined on line ${seen[$name]}" >&2
        exit 1
    fi
    seen[$name]=$line_no

    # The text is one argument after '--': never parsed by a shell or as an option.
    espeak-ng -v en-us -s 150 -w "$tmp/$name.wav" -- "$text"

    target="$sounds/$name.wav"
    if [[ -f "$target" ]] && cmp -s "$tmp/$name.wav" "$target"; then
        unchanged=$((unchanged + 1))
    else
        mv -f -- "$tmp/$name.wav" "$target"
        echo "wrote $target"
        written=$((written + 1))
    fi
done <"$list"

echo "make-sounds: $written written, $unchanged unchanged"
