#!/usr/bin/env python3
"""Answer-latency and call-rate benchmark: ivrd against SIPp's own UAS, same machine,
same load, alternating runs at rising rates until each fails.

For each rate it runs SIPp's built-in `uac` scenario for a fixed time against ivrd (default
flow loaded) and against `sipp -sn uas`, and prints per target:
  - calls attempted / failed / retransmissions (from SIPp's statistics file)
  - INVITE -> 200 OK p50 and p99 in microseconds, measured from a loopback capture
    (tshark writes it; this script reads the pcap itself, in well under a second), the same
    way for both targets (SIPp itself only reports whole ms)
  - CPU time per call of the answering process (from /proc)
A target stops at its first rate with a failed call or a retransmission; at the end: the
highest clean rate of each, their ratio ivrd / SIPp UAS, and ivrd's ring-budget counter.

Usage: benches/sip_answer.py [--rates 500,1000,2000,...,10000] [--seconds 5]
                             [--baseline OLD_IVRD_BINARY]  (before/after in one sweep)
                             [--layer rsipstack]  (the same build with `sip.udp_layer`
                                                   set so, as a third target)
Needs: sipp, tshark (scripts/setup.sh test installs them), a release build of ivrd.
"""

import argparse
import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import benchlib as b

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where cargo builds (CARGO_TARGET_DIR, as cargo itself reads it).
IVRD = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "ivrd")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def start_ivrd(tmp, binary=IVRD, name="ivrd", layer="own"):
    port = b.free_port()
    cfg = os.path.join(tmp, f"{name}.yaml")
    with open(cfg, "w") as f:
        f.write(f"""sip: {{udp: 127.0.0.1:{port}, tcp: ~, udp_layer: {layer}}}
media: {{rtp_ip: 127.0.0.1, rtp_ports: "0"}}
limits: {{max_calls: 4000}}
security: {{trusted: ["127.0.0.1/32"]}}   # SIPp is a trunk here: one address, many calls
flows: {{dir: {ROOT}/flows, default: support-line}}
sounds: {ROOT}/sounds
metrics: {{listen: 127.0.0.1:0}}
admin: {{listen: ~}}
state_dir: {tmp}/{name}-state
log: {{level: warn}}
schedules: {{support_hours: {{timezone: UTC, open: {{daily: 24h}}}}}}
""")
    p = subprocess.Popen([binary, "run", "--config", cfg], stdout=subprocess.PIPE,
                         stderr=open(os.path.join(tmp, f"{name}.log"), "w"), text=True)
    line = p.stdout.readline()
    m = re.search(r"metrics=(\S+)", line)
    if not m:
        sys.exit(f"ivrd did not start: {line!r}")
    return p, port, m.group(1)


def start_sipp_uas():
    port = b.free_port()
    p = subprocess.Popen(["sipp", "-sn", "uas", "-i", "127.0.0.1", "-p", str(port), "-bg",
                          "-buff_size", "4194304"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    p.wait(timeout=10)  # -bg forks; find the daemon by its port
    time.sleep(0.3)
    out = subprocess.run(["pgrep", "-f", f"sipp -sn uas -i 127.0.0.1 -p {port}"],
                         capture_output=True, text=True).stdout.split()
    if not out:
        sys.exit("sipp uas did not start")
    return int(out[0]), port


def run_load(port, rate, seconds, tmp, tag):
    calls = rate * seconds
    stat = os.path.join(tmp, f"{tag}_{rate}.csv")
    cap = os.path.join(tmp, f"{tag}_{rate}.pcap")
    capture = b.Capture(cap, f"udp port {port}")
    subprocess.run(["sipp", "-sn", "uac", f"127.0.0.1:{port}", "-i", "127.0.0.1",
                    "-p", str(b.free_port()), "-r", str(rate), "-m", str(calls),
                    "-l", "10000", "-d", "0", "-buff_size", "4194304",
                    "-timeout", f"{seconds + 30}s", "-timeout_error",
                    "-trace_stat", "-stf", stat, "-fd", "1", "-nostdin"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=seconds + 60)
    capture.stop()
    with open(stat) as f:
        rows = list(csv.DictReader(f, delimiter=";"))
    last = rows[-1]
    failed = int(last["FailedCall(C)"])
    success = int(last["SuccessfulCall(C)"])
    retrans = int(last["Retransmissions(C)"])
    lat = b.invite_to_200(cap)
    os.remove(cap)  # up to 140 MB per rate and target: a sweep would leave gigabytes behind
    return {"calls": success + failed, "failed": failed, "retrans": retrans, "lat": lat}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="500,1000,2000,3000,4000,5000,6000,8000,10000",
                    help="rising call rates; each target stops at its first rate that fails")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--baseline", metavar="IVRD_BINARY",
                    help="an earlier ivrd build, run as a third target in the same sweep")
    ap.add_argument("--layer", choices=["rsipstack"],
                    help="also run this build with sip.udp_layer set so (target ivrd-rsip)")
    args = ap.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    for tool in ("sipp", "tshark"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: run scripts/setup.sh test")
    subprocess.run(["cargo", "build", "--release", "--locked", "-q"], cwd=ROOT, check=True)
    tmp = tempfile.mkdtemp(prefix="ivrd-bench-")
    ivrd, ivrd_port, metrics = start_ivrd(tmp)
    uas_pid, uas_port = start_sipp_uas()
    targets = [("ivrd", ivrd.pid, ivrd_port), ("sipp-uas", uas_pid, uas_port)]
    base = None
    if args.baseline:
        base, base_port, _ = start_ivrd(tmp, args.baseline, "ivrd-base")
        targets.insert(1, ("ivrd-base", base.pid, base_port))
    other = None
    if args.layer:
        other, other_port, _ = start_ivrd(tmp, IVRD, "ivrd-rsip", args.layer)
        targets.insert(1, ("ivrd-rsip", other.pid, other_port))
    best = {tag: 0 for tag, _, _ in targets}
    print(f"{'target':9} {'rate':>5} {'calls':>6} {'failed':>6} {'retrans':>7} "
          f"{'p50 us':>8} {'p99 us':>8} {'cpu ms/call':>11}")
    try:
        failed_at = {}
        for rate in rates:
            for tag, pid, port in targets:
                if tag in failed_at:
                    continue
                c0 = cpu_seconds(pid)
                r = run_load(port, rate, args.seconds, tmp, tag)
                cpu = (cpu_seconds(pid) - c0) / max(r["calls"], 1) * 1000
                clean = r["failed"] == 0 and r["retrans"] == 0
                if clean:
                    best[tag] = max(best[tag], rate)
                else:
                    failed_at[tag] = rate
                print(f"{tag:9} {rate:>5} {r['calls']:>6} {r['failed']:>6} {r['retrans']:>7} "
                      f"{b.pct(r['lat'], 50):>8.0f} {b.pct(r['lat'], 99):>8.0f} {cpu:>11.3f}"
                      + ("" if clean else "  (not clean)"), flush=True)
        exceeded = "?"
        with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith("ivrd_ring_budget_exceeded_total"):
                    exceeded = line.split()[-1]
        print(f"\nhighest clean rate: ivrd {best['ivrd']}/s, sipp uas {best['sipp-uas']}/s, "
              f"ratio {best['ivrd'] / max(best['sipp-uas'], 1):.2f}")
        if base:
            print(f"baseline build: {best['ivrd-base']}/s, ratio to SIPp "
                  f"{best['ivrd-base'] / max(best['sipp-uas'], 1):.2f}")
        if other:
            print(f"this build on {args.layer}: {best['ivrd-rsip']}/s, ratio to SIPp "
                  f"{best['ivrd-rsip'] / max(best['sipp-uas'], 1):.2f}")
        print(f"ivrd_ring_budget_exceeded_total {exceeded}")
    finally:
        ivrd.terminate()
        for p in (base, other):
            if p:
                p.terminate()
        os.kill(uas_pid, signal.SIGTERM)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
