#!/usr/bin/env python3
"""Load with media: many concurrent calls, each receiving prompts and sending audio, on
loopback against a release ivrd.

SIPp runs tests/sipp/load_media.xml: each call is answered, then SIPp streams a prompt as
the caller's audio (rtp_stream, PCMU, looped) while ivrd plays its load flow
(tests/data/load-flows/load.yaml: greeting and menu prompts back to back) for --hold
seconds, then BYE. SIPp keeps --calls calls up at once (-l), starting new ones at --rate per
second; --total calls in all (default 1.5 x --calls), so the last third are answered while
the daemon carries the full load.

Printed, for the steady window (all calls up, after the ramp):
  - calls: attempted / successful / failed (SIPp), ivrd outcomes, calls active (min/mean)
  - answer latency INVITE -> 200 OK: p50/p99/max from a loopback capture of the SIP port,
    p99 from ivrd's histogram (ivrd_call_answer_seconds) and from SIPp's per-call response
    times (-trace_rtt, whole ms); ring-budget counter
  - outgoing RTP spacing: a loopback capture of a sample of calls' streams (ivrd -> SIPp,
    chosen by ivrd's RTP source ports), per stream the gaps between consecutive packets:
    p50/p99/p99.9/max of |gap - 20 ms|, sequence gaps, and drift (wall clock span minus RTP
    timestamp span) per minute
  - CPU % of ivrd (and of SIPp, which shares the machine), RSS of ivrd idle and under load,
    RSS per call = (RSS under load - RSS idle) / calls active

Usage: benches/load_media.py [--calls 1000] [--rate 50] [--hold 65] [--sample 50]
                             [--window 30] [--worker-threads N] [--no-build]
Needs: sipp (with rtp_stream, Debian sip-tester 3.6), tshark, sox, cargo. Run as root (or
with capture rights) for tshark on lo. Raises the open-files limit for ivrd and SIPp.
"""

import argparse
import csv
import glob
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as b  # noqa: E402

SCENARIO = os.path.join(b.ROOT, "tests", "sipp", "load_media.xml")
FLOWS = os.path.join(b.ROOT, "tests", "data", "load-flows")
PTIME = 0.020


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port_outside(lo, hi):
    """A free UDP port that is not in ivrd's RTP range (ivrd may bind any port there)."""
    while True:
        port = b.free_port()
        if not lo <= port <= hi:
            return port


def proc_cpu(pid):
    """utime + stime of a process, seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu():
    """(busy, total) jiffies of all cores together, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def active_calls(ivrd):
    samples = b.metric_samples(ivrd.scrape(), "ivrd_calls_active")
    return samples[0][1] if samples else 0.0


def ivrd_udp_ports(pid, lo, hi):
    """ivrd's bound UDP ports inside its RTP range (one per call)."""
    out = subprocess.run(["ss", "-Huapn"], capture_output=True, text=True).stdout
    ports = set()
    for line in out.splitlines():
        if f"pid={pid}," not in line:
            continue
        local = line.split()[3]
        port = int(local.rsplit(":", 1)[1])
        if lo <= port <= hi:
            ports.add(port)
    return sorted(ports)


def sipp_stats(path):
    with open(path) as f:
        rows = list(csv.DictReader(f, delimiter=";"))
    return rows[-1] if rows else {}


def sipp_rtts_ms(tmp):
    """Per-call INVITE -> 200 response times SIPp wrote with -trace_rtt (ms)."""
    out = []
    for path in glob.glob(os.path.join(tmp, "*_rtt.csv")):
        with open(path) as f:
            for row in csv.reader(f, delimiter=";"):
                # Date_ms;response_time_ms;rtd_no (a header line first)
                if len(row) >= 2:
                    try:
                        out.append(float(row[1]))
                    except ValueError:
                        pass
    return out


def answer_latencies(pcap, sip_port):
    """INVITE received by ivrd -> its first 200 OK, per Call-ID, from a capture (seconds)."""
    invites, oks = {}, {}
    for t, sport, dport, payload in b.udp_packets(pcap):
        if sip_port not in (sport, dport):
            continue
        m = b.sip_message(payload)
        if not m:
            continue
        first, headers, _ = m
        cid = headers.get("call-id")
        cseq = headers.get("cseq", "")
        if not cid or not cseq.endswith("INVITE") or cseq.split()[0] != "1":
            continue
        if first.startswith("INVITE "):
            invites.setdefault(cid, t)
        elif first.startswith("SIP/2.0 200"):
            oks.setdefault(cid, t)
    return sorted(oks[c] - invites[c] for c in oks if c in invites)


def drift_ms_per_min(pkts):
    """Least-squares slope of capture time against RTP time, as ms gained (+) or lost (-)
    per minute of media; a fit, so the jitter of the first and last packet does not count."""
    t0, ts0 = pkts[0][0], pkts[0][2]
    xs = [((ts - ts0) & 0xFFFFFFFF) / 8000 for _, _, ts in pkts]
    ys = [t - t0 for t, _, _ in pkts]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    return (sxy / sxx - 1) * 60_000


def rtp_spacing(pcap, ports, incoming=False):
    """Per stream (ivrd port, SSRC): |gap - 20 ms| of consecutive packets (ms), sequence
    gaps, and drift (ms per minute, fitted). Streams ivrd sends, or with `incoming` the
    ones SIPp sends to ivrd (the reference: a C load generator's pacing on the same
    machine at the same moment)."""
    streams = {}
    for t, sport, dport, payload in b.udp_packets(pcap):
        port = dport if incoming else sport
        if port not in ports:
            continue
        h = b.rtp_header(payload)
        if not h:
            continue
        pt, _marker, seq, ts, ssrc, _body = h
        streams.setdefault((port, ssrc), []).append((t, seq, ts))
    devs, drifts, seq_gaps, packets = [], [], 0, 0
    for pkts in streams.values():
        pkts.sort()
        packets += len(pkts)
        for (t0, s0, _), (t1, s1, _) in zip(pkts, pkts[1:]):
            step = (s1 - s0) & 0xFFFF
            if step != 1:
                seq_gaps += 1
                continue
            devs.append(abs((t1 - t0) - PTIME) * 1e3)
        if len(pkts) >= 250:  # >= 5 s of stream
            drifts.append(drift_ms_per_min(pkts))
    return {"streams": len(streams), "packets": packets, "devs": devs, "drifts": drifts,
            "seq_gaps": seq_gaps}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=1000, help="concurrent calls (SIPp -l)")
    ap.add_argument("--rate", type=float, default=50, help="new calls per second")
    ap.add_argument("--hold", type=int, default=65, help="seconds each call stays up")
    ap.add_argument("--total", type=int, default=0, help="calls in all (default 1.5 x calls)")
    ap.add_argument("--sample", type=int, default=50, help="calls whose RTP is captured")
    ap.add_argument("--window", type=int, default=30, help="seconds of steady measurement")
    ap.add_argument("--worker-threads", type=int,
                    help="limits.worker_threads for ivrd (default: the daemon's own default)")
    ap.add_argument("--no-build", action="store_true", help="use target/release/ivrd as is")
    args = ap.parse_args()
    total = args.total or int(args.calls * 1.5)
    ramp = args.calls / args.rate
    if args.hold < ramp + args.window + 5:
        sys.exit(f"--hold {args.hold} s is too short for a {ramp:.0f} s ramp and a "
                 f"{args.window} s window")
    b.need("sipp", "tshark", "sox", "ss")
    if not args.no_build:
        b.build_release()
    nofile = raise_nofile(max(65536, 4 * args.calls + 1024))

    tmp = tempfile.mkdtemp(prefix="ivrd-load-media-")
    print(f"work dir {tmp}; open files limit {nofile}", flush=True)
    # What the callers say: a prompt as raw 8 kHz mu-law, for SIPp's rtp_stream.
    subprocess.run(["sox", os.path.join(b.ROOT, "sounds", "hours.wav"), "-r", "8000", "-c",
                    "1", "-t", "ul", os.path.join(tmp, "caller.ulaw")], check=True)

    # SIPp is one trunk: one source address carrying every call. The shield's per-source
    # limit for new requests (security.rate_per_source, 20/s by default) is for scanners
    # and floods; a trunk's address needs room for its call rate.
    ivrd = b.Ivrd(tmp, FLOWS, default="load", rtp_span=max(1000, 4 * args.calls),
                  max_calls=2 * args.calls,
                  limits_extra=("" if args.worker_threads is None
                                else f"worker_threads: {args.worker_threads}"),
                  extra_yaml=f"security: {{rate_per_source: {max(100, 4 * args.rate)}, "
                             f"burst_per_source: {max(200, 4 * args.rate)}}}\n")
    rtp_lo, rtp_hi = ivrd.rtp_base, ivrd.rtp_base + ivrd.rtp_span - 1
    sip_cap = b.Capture(os.path.join(tmp, "sip.pcap"), f"udp port {ivrd.sip_port}")
    time.sleep(1.0)
    rss_idle = proc_rss_kib(ivrd.proc.pid)

    sipp_port, media_port = free_port_outside(rtp_lo, rtp_hi), free_port_outside(rtp_lo, rtp_hi)
    stat = os.path.join(tmp, "sipp_stats.csv")
    cmd = ["sipp", f"127.0.0.1:{ivrd.sip_port}", "-sf", SCENARIO, "-s", "load",
           "-m", str(total), "-r", str(args.rate), "-l", str(args.calls),
           "-d", str(args.hold * 1000), "-i", "127.0.0.1", "-p", str(sipp_port),
           "-mi", "127.0.0.1", "-mp", str(media_port), "-buff_size", "8388608",
           "-timeout", f"{int(total / args.rate + args.hold + 60)}s", "-timeout_error",
           "-trace_stat", "-stf", stat, "-fd", "5", "-trace_rtt", "-rtt_freq", "1",
           "-trace_err", "-nostdin"]
    sipp = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(tmp, "sipp.stderr"), "w"))
    t_start = time.time()
    try:
        # Ramp: wait until every call is up (or the ramp clearly stalled).
        deadline = t_start + ramp * 2 + 30
        while active_calls(ivrd) < args.calls and time.time() < deadline:
            if sipp.poll() is not None:
                sys.exit(f"SIPp exited during the ramp; see {tmp}")
            time.sleep(0.5)
        t_full = time.time() - t_start
        print(f"{args.calls} calls up after {t_full:.1f} s "
              f"(active {active_calls(ivrd):.0f})", flush=True)
        time.sleep(3)

        # Steady window: a capture of a sample of outgoing streams, CPU, RSS, calls active.
        ports = ivrd_udp_ports(ivrd.proc.pid, rtp_lo, rtp_hi)
        sample = ports[:: max(1, len(ports) // args.sample)][: args.sample]
        ports_expr = " or ".join(f"port {p}" for p in sample)
        bpf = f"udp and ({ports_expr})"
        rtp_cap = b.Capture(os.path.join(tmp, "rtp.pcap"), bpf)
        c0, s0, w0 = proc_cpu(ivrd.proc.pid), proc_cpu(sipp.pid), time.time()
        m0 = machine_cpu()
        rss, active = [], []
        while time.time() - w0 < args.window:
            rss.append(proc_rss_kib(ivrd.proc.pid))
            active.append(active_calls(ivrd))
            time.sleep(1)
        wall = time.time() - w0
        cpu_ivrd = (proc_cpu(ivrd.proc.pid) - c0) / wall * 100
        cpu_sipp = (proc_cpu(sipp.pid) - s0) / wall * 100
        m1 = machine_cpu()
        # Busy share of all cores, in "% of one core" like the per-process figures.
        cpu_all = (m1[0] - m0[0]) / max(m1[1] - m0[1], 1) * 100 * os.cpu_count()
        rtp_cap.stop()

        sipp.wait(timeout=total / args.rate + args.hold + 90)
    finally:
        if sipp.poll() is None:
            sipp.kill()
        sip_cap.stop()
    metrics = ivrd.scrape()
    ivrd.stop()

    # ---- figures ----
    st = sipp_stats(stat)
    ok, failed = int(st.get("SuccessfulCall(C)", 0)), int(st.get("FailedCall(C)", 0))
    retrans = int(st.get("Retransmissions(C)", 0))
    outcomes = {lab.get("outcome"): int(v)
                for lab, v in b.metric_samples(metrics, "ivrd_calls_total")}
    exceeded = sum(v for _, v in b.metric_samples(metrics, "ivrd_ring_budget_exceeded_total"))
    lat = answer_latencies(os.path.join(tmp, "sip.pcap"), ivrd.sip_port)
    hist_p99 = b.histogram_quantile(metrics, "ivrd_call_answer_seconds", 0.99)
    rtts = sipp_rtts_ms(tmp)
    sp = rtp_spacing(os.path.join(tmp, "rtp.pcap"), set(sample))
    ref = rtp_spacing(os.path.join(tmp, "rtp.pcap"), set(sample), incoming=True)
    rss_load = sum(rss) / len(rss)
    mean_active = sum(active) / len(active)
    per_call = (rss_load - rss_idle) / max(mean_active, 1)

    print()
    print(f"load: {args.calls} concurrent calls with media, {total} calls, {args.rate}/s, "
          f"{args.hold} s each, SIPp scenario {os.path.relpath(SCENARIO, b.ROOT)}")
    print(f"calls          successful {ok}, failed {failed}, SIPp retransmissions {retrans}; "
          f"ivrd outcomes {outcomes}")
    print(f"calls active   window of {wall:.0f} s: min {min(active):.0f}, "
          f"mean {mean_active:.0f}")
    print(f"answer         capture (n={len(lat)}): p50 {b.pct(lat, 50) * 1e3:.2f} ms, "
          f"p99 {b.pct(lat, 99) * 1e3:.2f} ms, max {max(lat, default=float('nan')) * 1e3:.2f} ms")
    print(f"               ivrd histogram p99 {hist_p99 * 1e3:.2f} ms; SIPp rtd (n={len(rtts)}) "
          f"p99 {b.pct(rtts, 99):.0f} ms, max {max(rtts, default=float('nan')):.0f} ms; "
          f"ring budget exceeded {exceeded:.0f}")
    print(f"RTP out        {sp['streams']} streams sampled, {sp['packets']} packets, "
          f"{sp['seq_gaps']} sequence gaps")
    print(f"               |gap - 20 ms|: p50 {b.pct(sp['devs'], 50):.3f} ms, "
          f"p99 {b.pct(sp['devs'], 99):.3f} ms, p99.9 {b.pct(sp['devs'], 99.9):.3f} ms, "
          f"max {max(sp['devs'], default=float('nan')):.3f} ms")
    print(f"RTP reference  SIPp's streams to the same calls ({ref['streams']} streams, "
          f"{ref['packets']} packets): |gap - 20 ms| p50 {b.pct(ref['devs'], 50):.3f} ms, "
          f"p99 {b.pct(ref['devs'], 99):.3f} ms, p99.9 {b.pct(ref['devs'], 99.9):.3f} ms; "
          f"ivrd/SIPp p99 ratio {b.pct(sp['devs'], 99) / max(b.pct(ref['devs'], 99), 1e-9):.2f}")
    if sp["drifts"]:
        worst = max(sp["drifts"], key=abs)
        print(f"               drift: median {b.pct(sp['drifts'], 50):+.3f} ms/min, "
              f"worst {worst:+.3f} ms/min")
    print(f"CPU            ivrd {cpu_ivrd:.1f} % (of one core), SIPp {cpu_sipp:.1f} %, "
          f"everything else {max(cpu_all - cpu_ivrd - cpu_sipp, 0):.1f} % "
          f"(machine: {cpu_all:.0f} % of {os.cpu_count() * 100} %)")
    print(f"RSS            ivrd idle {rss_idle / 1024:.1f} MiB, under load "
          f"{rss_load / 1024:.1f} MiB, per call {per_call:.1f} KiB")
    holds = (failed == 0 and ok == total and min(active) >= args.calls * 0.98
             and b.pct(lat, 99) <= 4.0 and b.pct(sp["devs"], 99) <= 2.0)
    print(f"verdict        {'HOLDS' if holds else 'DOES NOT HOLD'} at {args.calls} calls "
          f"(zero failed, answer p99 <= 4 s, spacing p99 within 2 ms of 20 ms)")
    if holds:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"kept {tmp} (captures, SIPp statistics and errors, ivrd.log)")


if __name__ == "__main__":
    main()
