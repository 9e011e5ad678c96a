#!/usr/bin/env bash
# Regenerates the spoken test corpus in tests/corpus/: how callers actually ask for the menu
# entries of flows/support-line.yaml (billing, support, hours, cancel and the flow's escalation
# to a human), things that must never route (fillers, greetings, out-of-scope requests, digital
# silence, line noise, hiss), and answers to a yes/no confirmation question. Callers paraphrase,
# so most sentences deliberately avoid the words of the flow's own phrases; `overlap` in the
# index says which ones share a content word with them (computed below, not by hand).
#
# Every sentence is synthesised by two voices of two DIFFERENT TTS engines (espeak-ng, flite,
# festival; round-robin, so every engine meets every label in both halves), at varied speed and
# peak level, then passed through what a telephone line does to it: 300-3400 Hz band, 8 kHz
# mono, G.711 mu-law, silence trimmed to 100 ms each side (a little more for the shortest words,
# so that every file lasts at least 0.5 s). About a third of the speech files also get line
# noise (pink or brown) mixed in at 20 dB or 10 dB SNR relative to the speech RMS.
#
# Output, all committed (the files are the exact bytes a PCMU call carries, 8 KB per second):
#   tests/corpus/tune/NNN-slug.wav      half of each label's sentences: use these to tune
#   tests/corpus/holdout/NNN-slug.wav   the other half (different sentences, plus voices that
#                                       never occur in tune): measure on it, NEVER tune on it
#   tests/corpus/corpus.tsv             one index for both, tab separated:
#     file        path relative to tests/corpus, e.g. holdout/123-my-router-keeps-disconnecting.wav
#     split       tune | holdout
#     expected    billing | support | hours | cancel | escalation (the flow's escalation
#                 phrases) | none (must not route) | yes | no (answers to a confirmation)
#     text        what was synthesised; empty for non-speech
#     engine      espeak-ng | flite | festival | sox (non-speech)
#     voice       engine voice (espeak-ng voice+variant, flite -voice, festival voice_NAME)
#     speed       speaking rate relative to the engine's default (1.00 = default, >1 faster)
#     level_dbfs  peak level of the file in dBFS
#     snr_db      SNR of the mixed-in line noise in dB; empty when there is none
#     overlap     yes | no: shares a content word with the flow phrases (routable labels only)
#
# THE HOLDOUT HALF MUST NEVER BE USED TO TUNE THRESHOLDS, PHRASES OR ANYTHING ELSE: look at
# tune, change things, then measure holdout once. Tuning on it makes its numbers meaningless.
# The audio is committed rather than made at test time so that the accuracy the tests assert
# is measured on fixed data: the engines' pronunciation changes between releases.
#
# Engines (Debian 12 packages; festvox-rablpc16k does not exist there, ked is used instead):
#   apt-get install sox espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k \
#       festvox-us-slt-hts
#
# Deterministic for given engine and sox versions: fixed order, sox runs with -R (fixed seed
# for synthesised noise) and -D (no dither), so running it twice gives identical files.
# After writing, it checks every file (decodes, telephone format, speech 0.5-8 s, nothing
# silent but the silence files) and prints counts per split and label, overlap shares and
# per-engine counts. Usage: scripts/make-corpus.sh [OUT_DIR]   (default tests/corpus)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/tests/corpus}"

die() {
    echo "make-corpus: $*" >&2
    exit 1
}
for tool in sox:sox espeak-ng:espeak-ng flite:flite text2wave:festival awk:mawk; do
    if ! command -v "${tool%%:*}" >/dev/null 2>&1; then
        die "${tool%%:*} not found (Debian: apt-get install ${tool#*:}; see the header of $0)"
    fi
done

# The phrases of flows/support-line.yaml per intent (keep in step with it): `overlap` is
# computed against these.
flow_phrases=$(
    cat <<'EOF'
billing|billing
billing|my bill
billing|invoice
billing|payment
billing|a charge
billing|refund
support|technical support
support|tech support
support|my internet is down
support|no service
support|not working
hours|opening hours
hours|when are you open
hours|what are your hours
cancel|cancel my account
cancel|cancel my service
cancel|close my account
escalation|supervisor
escalation|manager
escalation|agent
escalation|operator
escalation|a person
escalation|a human
EOF
)

# expected|text, in generation order. Routable labels: 18 sentences each, at least 2/3 of them
# sharing no content word with the phrases above. none: 8 fillers/greetings, 8 out of scope.
sentences=$(
    cat <<'EOF'
billing|why was I charged twice this month
billing|I think you took too much money from my card
billing|there's a strange amount on my statement
billing|um, so, my card was billed wrong
billing|how much do I owe you
billing|I got a letter saying I'm overdue
billing|the price went up and nobody told me
billing|can I change the card you take the money from
billing|I'd like my money back
billing|uh, the direct debit went out twice
billing|why is this month so expensive
billing|can I set up automatic withdrawals from my bank
billing|there's a fee I don't recognize
billing|I need a copy of my last statement
billing|my bill is way higher than usual
billing|I want a refund for last month
billing|how do I update my credit card details
billing|wrong amount
support|my router keeps disconnecting
support|the wifi is really slow
support|my internet is down again
support|the connection keeps dropping every few minutes
support|um, the little light on the box is flashing red
support|I can't get online
support|web pages won't load
support|nothing loads on my laptop since this morning
support|I have no signal
support|the broadband has been dead since yesterday
support|my modem is blinking orange
support|uh, I think the line's broken
support|the wifi drops whenever I use the microwave
support|my phone line is crackling and I can't hear anything
support|tech support please
support|my email stopped working
support|the TV box says no service
support|streaming keeps buffering
hours|are you open on saturdays
hours|what time do you close today
hours|until what time can I call you
hours|are you there on sundays
hours|what time does your store shut tonight
hours|can I come in on a bank holiday
hours|when can I reach someone tomorrow morning
hours|um, how late are you available
hours|which days of the week are you in
hours|is the shop staffed at the weekend
hours|what time do you start in the morning
hours|are you around on christmas eve
hours|how early can I ring
hours|what are your hours on friday
hours|uh, is the office closed on public holidays
hours|what's your schedule this week
hours|until when today
hours|do you do evenings
cancel|I want to end my contract
cancel|I'm moving abroad and need to stop everything
cancel|please terminate my subscription
cancel|I don't want this anymore, how do I leave
cancel|um, I'd like to quit
cancel|I'm switching to another provider
cancel|how do I get out of my contract early
cancel|stop my plan at the end of the month
cancel|I want my line disconnected for good
cancel|I'm leaving you for a cheaper company
cancel|what's the notice period to leave
cancel|uh, I no longer need the broadband
cancel|please shut everything off at the end of june
cancel|cancel my account
cancel|I'd like to cancel, please
cancel|I want to close everything down
cancel|end my service today
cancel|how do I unsubscribe
escalation|can I talk to someone real
escalation|get me a representative
escalation|representative
escalation|operator please
escalation|supervisor
escalation|I'd like to speak to somebody
escalation|is there anyone I can actually talk to
escalation|put me through to your boss
escalation|stop the robot, I want a real voice
escalation|um, can I speak with a customer adviser
escalation|transfer me to someone please
escalation|let me speak to a human being
escalation|I need to speak to a real live person
escalation|this machine isn't helping, get me someone
escalation|connect me to a team member
escalation|let me talk to a live rep
escalation|I've had enough of this menu, give me somebody
escalation|the complaints department please
none|um
none|uh, hello?
none|hello, is anyone there?
none|hmm, let me think
none|sorry, what?
none|hi there
none|good morning
none|er, hang on a second
none|I'd like to order a large pepperoni pizza
none|what's the weather going to be like tomorrow
none|sorry, I think I dialed the wrong number
none|tell me a joke
none|I'm calling about the job vacancy I applied for
none|I need a refill on my prescription
none|can you book me a table for two
none|what's the score of the football game
yes|yes
yes|yeah, that's right
yes|correct
yes|yes please
yes|that's it
yes|yep
yes|that's the one
yes|sure, go ahead
no|no
no|nope, that's wrong
no|no, not that
no|no thanks
no|that's not it
no|wrong
no|nah
no|no, something else
EOF
)

# Voices per engine and split, used round-robin. The first voice of each holdout list never
# occurs in tune, so holdout also measures voices nothing was tuned on.
# Format: engine|split|voice voice ...
voices=$(
    cat <<'EOF'
espeak-ng|tune|en-us en-gb en-us+f3 en-us+m4
espeak-ng|holdout|en-gb-scotland en-us en-gb en-us+f3 en-us+m4
flite|tune|kal slt rms
flite|holdout|awb kal slt rms
festival|tune|kal_diphone cmu_us_slt_arctic_hts
festival|holdout|ked_diphone kal_diphone cmu_us_slt_arctic_hts
EOF
)

tmp="$(mktemp -d)"
trap 'rm -rf -- "$tmp"' EXIT

# Every voice must exist: the engines fall back to a default voice without an error.
espeak_voices="$(espeak-ng --voices | awk 'NR > 1 { print $2; print $5 }')"
espeak_variants="$(espeak-ng --voices=variant | awk 'NR > 1 { sub(/^!v\//, "", $5); print $5 }')"
flite_voices="$(flite -lv | sed 's/^Voices available://')"
while IFS='|' read -r engine _ list; do
    for v in $list; do
        case "$engine" in
        espeak-ng)
            grep -qxF -- "${v%%+*}" <<<"$espeak_voices" || die "espeak-ng voice ${v%%+*} missing"
            if [[ "$v" == *+* ]]; then
                grep -qxF -- "${v#*+}" <<<"$espeak_variants" || die "espeak-ng variant ${v#*+} missing"
            fi
            ;;
        flite)
            grep -qw -- "$v" <<<"$flite_voices" || die "flite voice $v missing (flite -lv)"
            ;;
        festival)
            rm -f -- "$tmp/check.wav"
            echo test | text2wave -eval "(voice_$v)" -o "$tmp/check.wav" >/dev/null 2>&1 || true
            [[ -s "$tmp/check.wav" ]] || die "festival voice $v missing (festvox-* package, see header)"
            ;;
        esac
    done
done <<<"$voices"

# Plan: one line per file, number|split|expected|text|engine|voice|speed|level|noise|snr|overlap.
#
# overlap: a sentence overlaps when one of its content words, stemmed, equals a content word of
# any flow phrase. Stop words: the short list below (only those occurring in flow phrases
# matter; "no" and "not" count as function words, "down" as a content word). The stemmer only
# folds plain inflections: -'s, -ies, -ing, -ed, -s, a final -e and a final doubled consonant,
# so "bills"/"billing"/"billed" = "bill", "charged" = "charge", "cancelling" = "cancel".
#
# split: within each label the sentences without overlap come first, then those with; the
# ranks alternate tune, holdout, tune, ... so each half gets half of both kinds.
# engines: the k-th sentence of a (label, split) uses the pair k mod 3 of (espeak-ng, flite),
# (flite, festival), (festival, espeak-ng); voices round-robin per (engine, split).
# speed cycles over 7 values, level over 5, noise over every third file (pink 20 dB, brown
# 10 dB, pink 10 dB, brown 20 dB), periods without a common factor so they mix.
plan="$tmp/plan"
{
    printf '%s\n' "$flow_phrases" | sed 's/^/P|/'
    printf '%s\n' "$voices" | sed 's/^/V|/'
    printf '%s\n' "$sentences" | sed 's/^/S|/'
} | awk -F'|' '
function stem(w,    n) {
    sub(/'"'"'s$/, "", w)
    gsub(/[^a-z]/, "", w)
    if (length(w) > 4 && w ~ /ies$/) w = substr(w, 1, length(w) - 3) "y"
    else if (length(w) > 5 && w ~ /ing$/) w = substr(w, 1, length(w) - 3)
    else if (length(w) > 4 && w ~ /ed$/) w = substr(w, 1, length(w) - 2)
    else if (length(w) > 3 && w ~ /s$/ && w !~ /ss$/) w = substr(w, 1, length(w) - 1)
    if (length(w) > 3 && w ~ /e$/) w = substr(w, 1, length(w) - 1)
    n = length(w)
    if (n > 2 && substr(w, n, 1) == substr(w, n - 1, 1) && substr(w, n, 1) !~ /[aeiou]/)
        w = substr(w, 1, n - 1)
    return w
}
# content words of a text, stemmed, each once, separated by spaces
function content(text,    words, n, i, w, s, seen, res) {
    n = split(tolower(text), words, /[^a-z'"'"']+/)
    res = ""
    for (i = 1; i <= n; i++) {
        w = words[i]
        if (w == "" || w in stop) continue
        s = stem(w)
        if (s == "" || s in seen) continue
        seen[s] = 1
        res = res " " s
    }
    return res
}
BEGIN {
    ns = split("a an the my your our i me you we it is are am was be to of on in at for and or" \
        " with this that what when how no not", sw, " ")
    for (i = 1; i <= ns; i++) stop[sw[i]] = 1
    routable["billing"] = routable["support"] = routable["hours"] = 1
    routable["cancel"] = routable["escalation"] = 1
    pair[0, 0] = "espeak-ng"; pair[0, 1] = "flite"
    pair[1, 0] = "flite";     pair[1, 1] = "festival"
    pair[2, 0] = "festival";  pair[2, 1] = "espeak-ng"
    nspeed = split("1.00 0.85 1.20 0.95 1.10 0.80 1.25", speed, " ")
    nlevel = split("-3 -7 -11 -15 -18", level, " ")
    split("pink brown pink brown", noise, " ")
    split("20 10 10 20", snr, " ")
}
$1 == "P" {
    n = split(content($3), ws, " ")
    for (i = 1; i <= n; i++) flow[ws[i]] = 1
    next
}
$1 == "V" { nv[$2, $3] = split($4, vs, " "); for (i = 1; i <= nv[$2, $3]; i++) vlist[$2, $3, i - 1] = vs[i]; next }
$1 == "S" {
    ns_ = ++count; lab[ns_] = $2; txt[ns_] = $3; ov[ns_] = ""; hit[ns_] = ""
    if (!($2 in labseen)) { labseen[$2] = 1; labels[++nlabels] = $2 }
    if ($2 in routable) {
        n = split(content($3), ws, " ")
        for (i = 1; i <= n; i++) if (ws[i] in flow) hit[ns_] = hit[ns_] " " ws[i]
        ov[ns_] = hit[ns_] == "" ? "no" : "yes"
    }
    next
}
END {
    for (l = 1; l <= nlabels; l++) {
        r = 0
        for (pass = 0; pass < 2; pass++)
            for (i = 1; i <= count; i++) {
                if (lab[i] != labels[l] || (ov[i] == "yes") != pass) continue
                spl[i] = r++ % 2 == 0 ? "tune" : "holdout"
            }
    }
    num = 0; k = 0; noisy = 0
    for (i = 1; i <= count; i++) {
        if (hit[i] != "") printf "%s|%s\n", txt[i], hit[i] > "/dev/stderr"
        p = pos[lab[i], spl[i]]++ % 3
        for (j = 0; j < 2; j++) {
            e = pair[p, j]
            v = vlist[e, spl[i], vc[e, spl[i]]++ % nv[e, spl[i]]]
            nz = ""; sn = ""
            if (k % 3 == 2) { nz = noise[noisy % 4 + 1]; sn = snr[noisy % 4 + 1]; noisy++ }
            printf "%03d|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s\n", ++num, spl[i], lab[i], txt[i], e, v,
                speed[k % nspeed + 1], level[k % nlevel + 1], nz, sn, ov[i]
            k++
        }
    }
}' >"$plan" 2>"$tmp/overlaps"

echo "make-corpus: sentences sharing content words with the flow phrases:" >&2
sed 's/^/  /' "$tmp/overlaps" >&2

mkdir -p "$out/tune" "$out/holdout"
rm -f -- "$out"/*.wav "$out"/tune/*.wav "$out"/holdout/*.wav "$out/corpus.tsv"

rms() { sox "$1" -n stat 2>&1 | awk '$1 == "RMS" && $2 == "amplitude:" { print $3 }'; }

# espeak-ng's default rate is 175 words per minute; flite and festival's diphone voices take a
# duration stretch (the inverse of the rate), the HTS voice a speech rate (hts_engine -r).
synth() { # ENGINE VOICE SPEED TEXT OUT
    local engine="$1" voice="$2" speed="$3" text="$4" o="$5" stretch
    stretch="$(awk -v s="$speed" 'BEGIN { printf "%.3f", 1 / s }')"
    rm -f -- "$o"
    case "$engine" in
    espeak-ng)
        espeak-ng -v "$voice" -s "$(awk -v s="$speed" 'BEGIN { printf "%d", 175 * s + 0.5 }')" \
            -w "$o" -- "$text"
        ;;
    flite)
        flite -voice "$voice" --setf duration_stretch="$stretch" -t "$text" -o "$o"
        ;;
    festival)
        local rate="(Parameter.set 'Duration_Stretch $stretch)"
        if [[ "$voice" == *_hts ]]; then
            rate="(set! hts_engine_params (append hts_engine_params (list (list \"-r\" $speed))))"
        fi
        printf '%s\n' "$text" | text2wave -eval "(voice_$voice)" -eval "$rate" -o "$o" >/dev/null
        ;;
    esac
    [[ -s "$o" ]] || die "$engine voice $voice produced no audio for: $text"
}

# Float intermediates at 8 kHz; only the final write quantises to mu-law.
f32=(-r 8000 -c 1 -e floating-point -b 32)
ulaw=(-r 8000 -c 1 -e u-law -b 8)

tsv="$out/corpus.tsv"
printf 'file\tsplit\texpected\ttext\tengine\tvoice\tspeed\tlevel_dbfs\tsnr_db\toverlap\n' >"$tsv"
while IFS='|' read -r num split expected text engine voice speed level noise snr overlap; do
    slug="$(tr 'A-Z' 'a-z' <<<"$text" | tr -d "'" | tr -c 'a-z0-9' '-' | tr -s '-' | cut -c1-48)"
    slug="${slug#-}"
    slug="${slug%-}"
    file="$split/$num-$slug.wav"
    synth "$engine" "$voice" "$speed" "$text" "$tmp/raw.wav"
    # Telephone channel: trim the engines' leading/trailing silence, band-limit to 300-3400 Hz
    # (with headroom: the filter overshoots), resample to 8 kHz; then 100 ms of silence each
    # side (the tests add their own around it), more for the few one-syllable words shorter
    # than 0.3 s, so that every speech file lasts at least 0.5 s.
    sox -R -D "$tmp/raw.wav" "${f32[@]}" "$tmp/speech.wav" silence 1 0.005 -50d reverse \
        silence 1 0.005 -50d reverse gain -n -6 sinc 300-3400 rate 8000
    samples="$(sox --i -s "$tmp/speech.wav")"
    ((samples >= 1000)) || die "$engine voice $voice: only $samples samples of speech for: $text"
    pad=$(((4000 - samples + 1) / 2))
    ((pad >= 800)) || pad=800
    sox -R -D "$tmp/speech.wav" "$tmp/padded.wav" pad "${pad}s" "${pad}s"
    if [[ -n "$noise" ]]; then
        # Line noise over the whole file, its RMS $snr dB below the speech's (measured without
        # the padding), band-limited like the speech.
        sox -R -D -n "${f32[@]}" "$tmp/noise.wav" \
            synth "$(sox --i -s "$tmp/padded.wav")s" "${noise}noise" sinc 300-3400
        factor="$(awk -v s="$(rms "$tmp/speech.wav")" -v n="$(rms "$tmp/noise.wav")" -v snr="$snr" \
            'BEGIN { printf "%.6f", s * exp(-snr / 20 * log(10)) / n }')"
        sox -R -D -m -v 1 "$tmp/padded.wav" -v "$factor" "$tmp/noise.wav" "$tmp/mixed.wav"
        mv -- "$tmp/mixed.wav" "$tmp/padded.wav"
    fi
    sox -R -D "$tmp/padded.wav" "${ulaw[@]}" "$out/$file" gain -n "$level"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$file" "$split" "$expected" "$text" \
        "$engine" "$voice" "$speed" "$level" "$snr" "$overlap" >>"$tsv"
done <"$plan"

# Sounds that must never route: what an open line carries when nobody speaks.
# split|number|kind|seconds|peak level (empty: digital silence)
while IFS='|' read -r split num kind secs level; do
    file="$split/$num-$kind.wav"
    if [[ -z "$level" ]]; then
        sox -R -D -n "${ulaw[@]}" "$out/$file" trim 0 "$secs"
        voice=silence
    else
        voice="${kind%%-*}noise"
        [[ "$kind" == line-noise ]] && voice=pinknoise
        sox -R -D -n "${f32[@]}" "$tmp/noise.wav" synth "$secs" "$voice" sinc 300-3400
        sox -R -D "$tmp/noise.wav" "${ulaw[@]}" "$out/$file" gain -n "$level"
    fi
    printf '%s\t%s\tnone\t\tsox\t%s\t\t%s\t\t\n' "$file" "$split" "$voice" "$level" >>"$tsv"
done <<'EOF'
tune|900|silence|2|
tune|901|line-noise|2|-35
tune|902|white-hiss|2|-30
holdout|903|silence|2|
holdout|904|line-noise|3|-28
holdout|905|white-hiss|3|-40
holdout|906|brown-rumble|3|-30
EOF

# Checks: every file decodes as 8 kHz mono mu-law; speech lasts 0.5-8 s; nothing is silent but
# the digital silence files (RMS floor -60 dBFS); no sentence is in both halves; holdout has
# a voice tune lacks.
fail=0
while IFS='|' read -r file split expected text engine voice _; do
    info="$(sox --i -- "$out/$file" 2>&1)" || {
        echo "make-corpus: $file does not decode: $info" >&2
        fail=1
        continue
    }
    grep -q "Sample Rate *: 8000" <<<"$info" && grep -q "Channels *: 1" <<<"$info" &&
        grep -q "u-law" <<<"$info" || {
        echo "make-corpus: $file is not 8 kHz mono mu-law" >&2
        fail=1
    }
    dur="$(sox --i -D -- "$out/$file")"
    r="$(rms "$out/$file")"
    if [[ -n "$text" ]] && ! awk -v d="$dur" 'BEGIN { exit !(d >= 0.5 && d <= 8) }'; then
        echo "make-corpus: $file lasts $dur s (speech must last 0.5-8 s)" >&2
        fail=1
    fi
    if [[ "$voice" == silence ]]; then
        awk -v r="$r" 'BEGIN { exit !(r == 0) }' || { echo "make-corpus: $file is not silent" >&2; fail=1; }
    elif ! awk -v r="$r" 'BEGIN { exit !(r > 0.001) }'; then
        echo "make-corpus: $file is silent (RMS $r)" >&2
        fail=1
    fi
done < <(tail -n +2 "$tsv" | tr '\t' '|') # (read with IFS=tab would merge empty fields)
awk -F'\t' 'NR > 1 && $4 != "" { s[$4] = s[$4] " " $2 }
    END { for (t in s) if (s[t] ~ /tune/ && s[t] ~ /holdout/) { print "make-corpus: in both halves: " t; bad = 1 }
          exit bad }' "$tsv" >&2 || fail=1
awk -F'\t' 'NR > 1 && $4 != "" { v[$2, $5 "/" $6] = 1; if ($2 == "holdout") h[$5 "/" $6] = 1 }
    END { for (x in h) if (!(("tune", x) in v)) found = 1; exit !found }' "$tsv" ||
    { echo "make-corpus: every holdout voice also occurs in tune" >&2; fail=1; }
[[ "$fail" == 0 ]] || die "checks failed"

# Summary.
awk -F'\t' '
NR == 1 { next }
{
    n[$3, $2]++; tot[$2]++; all++
    if (!($3 in ls)) { ls[$3] = 1; lo[++nl] = $3 }
    if ($10 != "") { ovn[$3]++; if ($10 == "no") ovno[$3]++ }
    if ($4 != "") { snt[$3, $4] = 1 }
    if (!($5 in es)) { es[$5] = 1; eo[++ne] = $5 }
    en[$5]++; ev[$5, $2 "|" $6] = 1
    if ($9 != "") noisy++
    if ($4 != "") speech++
}
END {
    printf "\n%-12s %6s %8s %6s  %s\n", "label", "tune", "holdout", "files", "sentences"
    for (i = 1; i <= nl; i++) {
        l = lo[i]; s = 0
        for (k in snt) { split(k, kk, SUBSEP); if (kk[1] == l) s++ }
        share = ovn[l] ? sprintf(", no overlap %d/%d (%d%%)", ovno[l] / 2, ovn[l] / 2, 100 * ovno[l] / ovn[l]) : ""
        printf "%-12s %6d %8d %6d  %d sentences%s\n", l, n[l, "tune"], n[l, "holdout"],
            n[l, "tune"] + n[l, "holdout"], s, share
    }
    printf "%-12s %6d %8d %6d\n\n", "total", tot["tune"], tot["holdout"], all
    for (i = 1; i <= ne; i++) {
        e = eo[i]; t = ""; h = ""
        for (k in ev) { split(k, kk, SUBSEP); split(kk[2], sv, "|")
            if (kk[1] != e) continue
            if (sv[1] == "tune") t = t " " sv[2]; else h = h " " sv[2] }
        printf "%-10s %4d files; tune voices:%s; holdout voices:%s\n", e, en[e], t, h
    }
    printf "\nspeech files with line noise: %d of %d\n", noisy, speech
}' "$tsv" >&2
echo "make-corpus: wrote $(($(wc -l <"$tsv") - 1)) files to $out ($(du -sh -- "$out" | cut -f1))" >&2
