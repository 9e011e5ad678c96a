#!/usr/bin/env python3
"""Fits the speech matcher's confidence model on the corpus's TUNING half only.

ivrd's matcher (src/asr/matcher.rs, `confidence`) turns four pieces of evidence for each
option of a menu (each intent, and asking for a person) into one probability:
    sim     best cosine similarity of the utterance's embedding to the option's examples
    margin  sim minus the strongest competitor (another option, or the out-of-scope anchors)
    words   the best phrase's word alignment (0..1)
    closed  the decoder's closed-set posterior mass of the option's phrases (0..1)
p = sigmoid(b + w1*sim + w2*margin + w3*words + w4*closed), one row per (utterance, option),
target 1 when the option is what the utterance asks for. Utterances that must not route
(`none`) are rows with target 0 for every option. The held-out half is never read here.

Usage: ivrd bench asr --model M [--model M2] --variants default --json > bench.json
       benches/fit_confidence.py bench.json
Prints the weights (to copy into matcher.rs) and a reliability table (predicted vs actual).
Needs numpy.
"""
import json
import sys

import numpy as np


def rows(report, split):
    out = []
    for f in report["files"]:
        if f["split"] != split or f["expected"] in ("yes", "no") or not f["similarity"]:
            continue
        sims = dict(f["similarity"])
        lex = {k: (w, c) for k, w, c in f["lexical_scores"]}
        options = [k for k in sims if k != "none"]
        for opt in options:
            if opt not in lex:
                continue
            rivals = [sims[o] for o in sims if o != opt and not (opt == "escalation" and o == "escalation")]
            rival = max(rivals)
            w, c = lex[opt]
            y = 1.0 if f["expected"] == opt else 0.0
            out.append(([1.0, sims[opt], sims[opt] - rival, w, c], y))
    return out


def fit(data, l2=1e-3, steps=40000, lr=1.0):
    x = np.array([r[0] for r in data])
    y = np.array([r[1] for r in data])
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-x @ w))
        g = x.T @ (p - y) / len(y) + l2 * np.r_[0, w[1:]]
        w -= lr * g
    return w, x, y


def main():
    # Every report in the file (e.g. one per model) contributes its tuning half.
    data = [r for report in json.load(open(sys.argv[1])) for r in rows(report, "tune")]
    w, x, y = fit(data)
    names = ["CONF_BIAS", "CONF_SIMILARITY", "CONF_MARGIN", "CONF_WORDS", "CONF_CLOSED"]
    print(f"{len(data)} rows from the tuning half ({int(y.sum())} positive)")
    for n, v in zip(names, w):
        print(f"const {n}: f32 = {v:.2f};")
    p = 1 / (1 + np.exp(-x @ w))
    print("| predicted | rows | actual |")
    for lo, hi in [(0, .1), (.1, .35), (.35, .6), (.6, .8), (.8, .95), (.95, 1.01)]:
        sel = (p >= lo) & (p < hi)
        if sel.sum():
            print(f"| {lo:.2f}-{min(hi, 1):.2f} | {sel.sum()} | {y[sel].mean():.2f} |")


if __name__ == "__main__":
    main()
