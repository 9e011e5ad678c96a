#!/usr/bin/env python3
"""Speech benchmark: ivrd's Whisper engine (whisper-rs) next to faster-whisper, same machine,
same model weights, same audio, alternating runs.

For each model (tiny.en / base, in the ggml types asked for) it runs, ROUNDS times in turn:
  1. `ivrd bench asr --json` on the spoken corpus (tests/corpus): each file is endpointed,
     transcribed, embedded and routed by ivrd's own pipeline against the default flow's
     compiled main menu (ivrd.yaml), by words only and with meaning (the sentence-embedding
     matcher), in every configuration of `Variant::standard` (full 30 s window; audio_ctx
     trimmed; + prompt; + closed set);
  2. faster-whisper (CTranslate2, int8, same thread count) on the very same utterances
     (ivrd writes them out at 16 kHz, exactly as its engine receives them), padded to 30 s,
     greedy, English, no timestamps, no previous-text conditioning, from the CTranslate2
     directory the ggml file was converted from.
Then prints per configuration and matcher: Whisper median/p90 ms per utterance over all
rounds, end of speech -> routing decision p50/p90 (Whisper + embedding + matching), routing
accuracy on the held-out half (right at once or after a confirmation, of routable
utterances) and on the tuning half, false routes (holdout), and Whisper's ratio to
faster-whisper int8's median on the same audio.

Usage: benches/asr.py [--models tiny.en:q8_0,tiny.en:f16,base:q8_0,base:f16] [--rounds 3]
                      [--threads 2] [--variants standard|default|all] [--ivrd target/release/ivrd]
Needs: the models (scripts/fetch-model.sh makes them), a release build of ivrd, Python 3 with
venv; faster-whisper is installed into .cache/bench-venv on first use (from PyPI).
Timings are only comparable on an otherwise idle machine: ggml's threads spin, so any other
load on the cores inflates whisper-rs's times far more than CTranslate2's.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import wave

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".cache", "bench-venv")


def fetch_model(name, wtype):
    out = subprocess.run([os.path.join(ROOT, "scripts", "fetch-model.sh"), name, wtype],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    return out.strip().splitlines()[-1]


def ensure_venv():
    """Re-runs this script inside a venv that has faster-whisper, creating it if needed."""
    python = os.path.join(VENV, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    if not os.path.exists(python):
        print(f"asr bench: creating {VENV} with faster-whisper", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "faster-whisper"], check=True)
    os.execv(python, [python] + sys.argv)


def read_wav16(path):
    import numpy as np
    with wave.open(path, "rb") as w:
        assert w.getframerate() == 16000 and w.getsampwidth() == 2 and w.getnchannels() == 1
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return pcm.astype(np.float32) / 32768.0


def faster_whisper_pass(model, utterances):
    """Per-utterance ms and transcripts; each input padded to Whisper's 30 s window."""
    import numpy as np
    times, texts = [], {}
    for name, audio in utterances:
        padded = np.zeros(16000 * 30, dtype=np.float32)
        padded[: len(audio)] = audio[: len(padded)]
        t0 = time.perf_counter()
        segments, _ = model.transcribe(padded, language="en", beam_size=1, best_of=1,
                                       temperature=0.0, condition_on_previous_text=False,
                                       without_timestamps=True, vad_filter=False)
        texts[name] = "".join(s.text for s in segments).strip()  # the generator does the work
        times.append((time.perf_counter() - t0) * 1000.0)
    return times, texts


def ivrd_pass(ivrd, model_path, threads, variants):
    out = subprocess.run([ivrd, "bench", "asr", "--model", model_path, "--threads", str(threads),
                          "--variants", variants,
                          "--corpus", os.path.join(ROOT, "tests", "corpus"), "--json"],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out)


def pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, round((len(s) - 1) * q))] if s else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="tiny.en:q8_0,tiny.en:f16,base:q8_0,base:f16")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ivrd", default=os.path.join(ROOT, "target", "release", "ivrd"))
    ap.add_argument("--variants", default="standard",
                    help="ivrd configurations: standard, default (recommended only) or all")
    args = ap.parse_args()
    ensure_venv()
    from faster_whisper import WhisperModel

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([args.ivrd, "bench", "asr", "--corpus", os.path.join(ROOT, "tests", "corpus"),
                        "--dump-wavs", tmp], check=True, stdout=subprocess.DEVNULL)
        utterances = []
        for sub in sorted(os.listdir(tmp)):
            for f in sorted(os.listdir(os.path.join(tmp, sub))):
                utterances.append((f"{sub}/{f}", read_wav16(os.path.join(tmp, sub, f))))

    rows = []
    fw_cache = {}
    for spec in args.models.split(","):
        name, wtype = spec.split(":")
        ggml = fetch_model(name, wtype)
        ct2 = os.path.join(ROOT, ".cache", "models", f"{name}-ct2")
        if name not in fw_cache:
            t0 = time.perf_counter()
            fw = WhisperModel(ct2, device="cpu", compute_type="int8", cpu_threads=args.threads,
                              num_workers=1)
            fw_load = (time.perf_counter() - t0) * 1000.0
            faster_whisper_pass(fw, utterances[:1])  # warm-up
            fw_cache[name] = (fw, fw_load, [])
        fw, fw_load, fw_times = fw_cache[name]
        per_variant = {}
        for r in range(args.rounds):
            print(f"asr bench: {name} {wtype} round {r + 1}/{args.rounds}", file=sys.stderr)
            for rep in ivrd_pass(args.ivrd, ggml, args.threads, args.variants):
                v = per_variant.setdefault(rep["variant"]["name"], {"times": [], "load": [], "rep": rep})
                v["times"] += [f["whisper_ms"] for f in rep["files"] if f["whisper_ms"] > 0]
                v.setdefault("decision", [])
                v["decision"] += [f["decision_ms"] for f in rep["files"] if f["decision_ms"] > 0]
                v["load"].append(rep["load_ms"])
            times, texts = faster_whisper_pass(fw, utterances)
            fw_times += times
        for vname, v in per_variant.items():
            rep = v["rep"]
            by = {(m, sp): s for m, sp, s in rep["scores"]}
            for matcher in ("lexical", "semantic"):
                if (matcher, "holdout") not in by:
                    continue
                h, t = by[(matcher, "holdout")], by[(matcher, "tune")]
                acc = lambda s: f"{s['right'] + s['confirmed_right']}/{s['routable']}"
                rows.append((name, f"whisper-rs {name} {wtype}", vname, matcher,
                             statistics.median(v["times"]), pct(v["times"], 0.9),
                             statistics.median(v["decision"]), pct(v["decision"], 0.9),
                             acc(h), acc(t), h["false_routes"] + t["false_routes"]))
    for name, (fw, fw_load, fw_times) in fw_cache.items():
        rows.append((name, f"faster-whisper {name} int8", "30 s window", "-",
                     statistics.median(fw_times), pct(fw_times, 0.9), float("nan"), float("nan"),
                     "-", "-", "-"))

    print(f"\n{args.threads} threads, {len(utterances)} utterances of "
          f"{min(len(a) for _, a in utterances) / 16000:.1f}-{max(len(a) for _, a in utterances) / 16000:.1f} s, "
          f"{args.rounds} alternating rounds\n")
    print("| engine | config | matcher | Whisper p50/p90 ms | decision p50/p90 ms | holdout right | tune right | false routes | Whisper x faster-whisper int8 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, engine, config, matcher, med, p90, d50, d90, hold, tune, false in rows:
        ratio = med / statistics.median(fw_cache[name][2])
        print(f"| {engine} | {config} | {matcher} | {med:.0f}/{p90:.0f} | {d50:.0f}/{d90:.0f} | "
              f"{hold} | {tune} | {false} | {ratio:.2f} |")

if __name__ == "__main__":
    main()
