#!/usr/bin/env python3
"""`ivrd test` speed: the shipped flow tests, many times over (each copy renamed), run by the
release binary with the embedding model (speech cases go through the real matcher).

Prints cases per second and the virtual time simulated per wall second, for the whole set
and for the key-only cases alone next to it (the reference: what the speech matcher costs).
Usage: benches/flow_tests.py [--copies N] [--runs N]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

import benchlib as b


def cases(text):
    """The shipped file split into its header and its cases (text blocks)."""
    head, _, body = text.partition("\ncases:\n")
    blocks = re.split(r"\n(?=  - name: )", "\n" + body)
    return head + "\ncases:\n", [blk.strip("\n") for blk in blocks if blk.strip()]


def run(cfg, path):
    out = subprocess.run([b.IVRD, "test", "--config", cfg, path], capture_output=True, text=True)
    m = re.search(r"(\d+) cases: (\d+) passed, (\d+) failed \(([\d.]+) s, (\d+) cases/s, (\d+) s of calls", out.stdout)
    if not m:
        sys.exit(f"unexpected output: {out.stdout}\n{out.stderr}")
    n, passed, failed, secs, _, calls = m.groups()
    return int(n), int(failed), float(secs), float(calls)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=40)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    b.build_release()
    head, blocks = cases(open(os.path.join(b.ROOT, "flows", "support-line.test.yaml")).read())
    keys_only = [blk for blk in blocks if "say:" not in blk]
    tmp = tempfile.mkdtemp(prefix="ivrd-flowtests-")
    shipped = open(os.path.join(b.ROOT, "ivrd.yaml")).read()
    schedules = shipped[shipped.index("\nschedules:"):shipped.index("\ncallers:")]
    cfg = os.path.join(tmp, "ivrd.yaml")
    with open(cfg, "w") as f:
        f.write(f"flows: {{dir: {b.ROOT}/flows, default: support-line}}\nsounds: {b.ROOT}/sounds\n"
                f"state_dir: {tmp}/state\noutages: {{file: ~}}\n"
                f"asr: {{model: {b.ROOT}/.cache/models/ggml-tiny.en-q8_0.bin, embedder: {b.ROOT}/.cache/models/all-minilm-l6-v2}}\n"
                + schedules + "\n")
    print(f"| set | cases | wall s (best of {a.runs}) | cases/s | virtual call time / wall time |")
    print("|---|---|---|---|---|")
    for name, chosen in [("all shipped cases", blocks), ("reference: key-only cases", keys_only)]:
        path = os.path.join(tmp, f"{name[:3]}.test.yaml")
        with open(path, "w") as f:
            f.write(head)
            for i in range(a.copies):
                for blk in chosen:
                    f.write(blk.replace("  - name: ", f"  - name: #{i} ", 1) + "\n\n")
        best = None
        for _ in range(a.runs):
            n, failed, secs, calls = run(cfg, path)
            if failed:
                sys.exit(f"{failed} cases failed")
            best = (n, secs, calls) if best is None or secs < best[1] else best
        n, secs, calls = best
        print(f"| {name} | {n} | {secs:.2f} | {n / secs:.0f} | {calls / secs:.0f}x |")


if __name__ == "__main__":
    main()
