#!/usr/bin/env bash
# Regenerates the spoken test corpus in tests/corpus/: caller phrases for the default flow's
# intents, synthesised with espeak-ng in several voices and speeds and passed through what a
# telephone line does to them (300-3400 Hz band, 8 kHz, G.711 mu-law), plus files that must
# never route (digital silence, line noise, hiss, out-of-menu talk).
#
# Output, all committed (the files are the exact bytes a PCMU call carries, 8 KB per second):
#   tests/corpus/NNN-slug.wav   8 kHz mono mu-law WAV
#   tests/corpus/corpus.tsv     file<TAB>expected<TAB>text<TAB>voice<TAB>speed<TAB>level
#                               expected = an intent of flows/support-line.yaml, `escalation`
#                               (the flow's escalation phrases) or `none` (must not route)
# The audio is committed rather than made at test time so that the accuracy the tests assert
# is measured on fixed data: espeak-ng's pronunciation changes between releases.
#
# Deterministic for a given espeak-ng and sox (sox runs with -R, no dither), so running it
# twice changes nothing. Usage: scripts/make-corpus.sh [OUT_DIR]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/tests/corpus}"

for tool in espeak-ng sox; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "make-corpus: $tool not found (Debian: apt-get install espeak-ng sox)" >&2
        exit 1
    fi
done

# expected|text. Each line is rendered twice, by two different (voice, speed, level) variants
# picked round-robin below, so every voice meets every intent.
phrases=$(
    cat <<'EOF'
billing|my bill
billing|billing
billing|a charge on my bill
billing|invoice
billing|payment
billing|I have a question about my bill
support|technical support
support|my internet is down
support|no service
support|the internet is not working
support|tech support
hours|opening hours
hours|when are you open
hours|what are your hours
escalation|supervisor
escalation|I want to talk to a person
escalation|operator
escalation|let me speak to a manager
none|what is the weather like today
EOF
)

# voice|words per minute|peak level in dBFS. Quiet and loud callers both occur on real lines.
variants=(
    "en-us|150|-3"
    "en-gb-x-rp|175|-12"
    "en|130|-6"
    "en-us+f3|165|-18"
    "en-gb-scotland|150|-9"
)

tmp="$(mktemp -d)"
trap 'rm -rf -- "$tmp"' EXIT
mkdir -p "$out"
rm -f -- "$out"/*.wav "$out/corpus.tsv"

# Telephone channel: band-limit to 300-3400 Hz, resample to 8 kHz, mu-law. -R: repeatable
# (fixed seed for synthesised noise), -D: no dither, so output is byte-identical run to run.
phone() { # IN OUT [extra sox effects...]
    local in="$1" o="$2"
    shift 2
    sox -R -D "$in" -r 8000 -c 1 -e u-law -b 8 "$o" "$@" sinc 300-3400
}

tsv="$out/corpus.tsv"
printf 'file\texpected\ttext\tvoice\tspeed\tlevel_dbfs\n' >"$tsv"
n=0
line=0
while IFS='|' read -r expected text; do
    for pass in 0 1; do
        IFS='|' read -r voice speed level <<<"${variants[$(((line * 2 + pass) % ${#variants[@]}))]}"
        n=$((n + 1))
        slug="$(tr 'A-Z ' 'a-z-' <<<"$text" | tr -cd 'a-z0-9-')"
        file="$(printf '%03d-%s.wav' "$n" "$slug")"
        espeak-ng -v "$voice" -s "$speed" -w "$tmp/raw.wav" -- "$text"
        # espeak-ng pads with up to half a second of silence; trim it to 100 ms each side to
        # keep the corpus small (the tests add their own silence or noise around each file).
        phone "$tmp/raw.wav" "$out/$file" silence 1 0.005 -50d reverse silence 1 0.005 -50d \
            reverse pad 0.1 0.1 gain -n "$level"
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$file" "$expected" "$text" "$voice" "$speed" "$level" >>"$tsv"
    done
    line=$((line + 1))
done <<<"$phrases"

# Sounds that must never route: what an open line carries when nobody speaks.
sox -R -D -n -r 8000 -c 1 -e u-law -b 8 "$out/900-silence.wav" trim 0 2
printf '900-silence.wav\tnone\t\tdigital silence\t\t\n' >>"$tsv"
sox -R -D -n -r 8000 -c 1 "$tmp/pink.wav" synth 2 pinknoise gain -n -35
phone "$tmp/pink.wav" "$out/901-line-noise.wav"
printf '901-line-noise.wav\tnone\t\tpink noise\t\t-35\n' >>"$tsv"
sox -R -D -n -r 8000 -c 1 "$tmp/white.wav" synth 2 whitenoise gain -n -25
phone "$tmp/white.wav" "$out/902-hiss.wav"
printf '902-hiss.wav\tnone\t\twhite noise\t\t-25\n' >>"$tsv"

echo "make-corpus: wrote $((n + 3)) files to $out ($(du -sh -- "$out" | cut -f1))" >&2
