#!/usr/bin/env python3
"""Bridged calls: callers waiting in a queue are bridged to agents, and ivrd relays RTP
both ways, on loopback against a release ivrd, with SIPp on both sides.

Callers: SIPp runs tests/sipp/load_media.xml (PCMU offer; from the ACK on each caller
streams a prompt, looped, PT 0) and holds each call --hold seconds. Agents: one SIPp UAS
runs tests/sipp/agent_answer_wait.xml with -rtp_echo (answers every INVITE, echoes the RTP
it gets, waits for ivrd's BYE); ivrd's config lists --calls agents at that UAS, all in one
queue, so every caller is bridged at once. Each bridged call is two legs and four RTP
streams through ivrd: caller -> ivrd -> agent, and the agent's echo -> ivrd -> caller.

For each load (--loads, concurrent bridged calls), in a steady window after the ramp:
  - calls held: bridged calls (ivrd_bridged_calls) min/mean, SIPp successes/failures
  - relay: for a sample of calls (--sample), a loopback capture of both legs' RTP ports.
    Each packet into ivrd is matched to the packet ivrd sends on for it (same payload, in
    order): added latency p50/p99/max, jitter (mean |D(i) - D(i-1)|, RFC 3550 style, of
    the added latency), and loss (packets in that never came out), per direction
  - reference: SIPp's own RTP echo on the same machine, measured the same way on the agent
    side (ivrd -> SIPp -> ivrd): latency p50/p99 and the ratio ivrd/SIPp
  - CPU % of ivrd and of both SIPps, and ivrd's CPU per bridged call

The legs of a call are paired from the SIP capture: ivrd's 200 OK to the caller gives the
caller-side port, ivrd's INVITE to the agent (X-IVR-Call-ID: the caller's Call-ID) the
agent-side one.

Usage: benches/bridge.py [--loads 100,500] [--rate 50] [--window 20] [--sample 20]
                         [--no-build]
Needs: sipp, tshark, sox, cargo; root (or capture rights) for tshark on lo.
"""

import argparse
import collections
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as b  # noqa: E402

CALLER = os.path.join(b.ROOT, "tests", "sipp", "load_media.xml")
AGENT = os.path.join(b.ROOT, "tests", "sipp", "agent_answer_wait.xml")

FLOW = """version: 1
flow: bridge
start: wait
nodes:
  wait:
    queue: bench
    on_timeout: bye
    on_no_agents: bye
    after_agent: bye
  bye:
    hangup: true
"""


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gauge(ivrd, name):
    return sum(v for _, v in b.metric_samples(ivrd.scrape(), name))


def sdp_port(body):
    m = re.search(r"m=audio (\d+)", body)
    return int(m.group(1)) if m else None


def leg_pairs(pcap, sip_port):
    """Call-ID -> (ivrd's caller-side RTP port, ivrd's agent-side RTP port)."""
    caller_side, agent_side = {}, {}
    for _, sport, _, payload in b.udp_packets(pcap):
        msg = b.sip_message(payload)
        if not msg or sport != sip_port:
            continue
        first, headers, body = msg
        if first.startswith("SIP/2.0 200") and "INVITE" in headers.get("cseq", ""):
            port = sdp_port(body)
            if port:
                caller_side.setdefault(headers.get("call-id"), port)
        elif first.startswith("INVITE ") and "x-ivr-call-id" in headers:
            port = sdp_port(body)
            if port:
                agent_side[headers["x-ivr-call-id"]] = port
    return {cid: (caller_side[cid], agent_side[cid])
            for cid in agent_side if cid in caller_side}


def match(ins, outs, horizon):
    """Pairs each packet in (time, payload) with the first later packet out carrying the
    same payload. Returns (delays in seconds, packets in considered, packets lost); packets
    in the last `horizon` seconds of the capture are not counted (their output may be cut)."""
    waiting = collections.defaultdict(collections.deque)
    for t, p in ins:
        waiting[p].append(t)
    end = max((t for t, _ in ins), default=0) - horizon
    delays, matched_in = [], 0
    for t, p in outs:
        q = waiting.get(p)
        while q and q[0] <= t:
            t_in = q.popleft()
            if t - t_in < 0.5:  # older ones were lost; a 0.5 s delay is not a relay
                delays.append((t_in, t - t_in))
                if t_in <= end:
                    matched_in += 1
                break
    considered = sum(1 for t, _ in ins if t <= end)
    delays.sort()
    return [d for _, d in delays], considered, max(considered - matched_in, 0)


def jitter(delays):
    if len(delays) < 2:
        return float("nan")
    return sum(abs(a - b_) for a, b_ in zip(delays, delays[1:])) / (len(delays) - 1)


def relay_figures(pcap, pairs):
    """Per direction: added latency and loss through ivrd; and SIPp's echo as reference."""
    pkts = collections.defaultdict(list)  # (src, dst) -> [(t, payload)]
    for t, sport, dport, payload in b.udp_packets(pcap):
        h = b.rtp_header(payload)
        if h and h[0] == 0:
            pkts[(sport, dport)].append((t, h[5]))
    ports = {p for pair in pairs for p in pair}
    into = collections.defaultdict(list)   # ivrd port -> packets arriving
    outof = collections.defaultdict(list)  # ivrd port -> packets leaving
    for (s, d), lst in pkts.items():
        if d in ports and s not in ports:
            into[d].extend(lst)
        if s in ports and d not in ports:
            outof[s].extend(lst)
    res = {"fwd": ([], 0, 0, []), "back": ([], 0, 0, []), "echo": ([], 0, 0, [])}

    def add(key, ins, outs):
        d, n, lost = match(sorted(ins), sorted(outs), 0.2)
        a, n0, l0, j = res[key]
        res[key] = (a + d, n0 + n, l0 + lost, j + [jitter(d)])

    for c, a in pairs:
        add("fwd", into[c], outof[a])    # caller -> ivrd -> agent
        add("back", into[a], outof[c])   # agent echo -> ivrd -> caller
        add("echo", outof[a], into[a])   # ivrd -> SIPp echo -> ivrd (the reference)
    return res


def run_load(args, calls, tmp):
    total = calls
    ramp = calls / args.rate
    hold = int(ramp + args.window + 20)
    agents = "".join(f"  - {{id: a{i}, uri: \"sip:a{i}@127.0.0.1:{{uas}}\"}}\n"
                     for i in range(calls))
    uas_port, uas_media = b.free_port(), b.free_port()
    agents = agents.replace("{uas}", str(uas_port))
    ids = ", ".join(f"a{i}" for i in range(calls))
    # What the callers say: a prompt as raw 8 kHz mu-law, for SIPp's rtp_stream.
    subprocess.run(["sox", os.path.join(b.ROOT, "sounds", "hours.wav"), "-r", "8000", "-c",
                    "1", "-t", "ul", os.path.join(tmp, "caller.ulaw")], check=True)
    flows = os.path.join(tmp, "flows")
    os.makedirs(flows, exist_ok=True)
    with open(os.path.join(flows, "bridge.yaml"), "w") as f:
        f.write(FLOW)
    ivrd = b.Ivrd(tmp, flows, default="bridge", rtp_span=max(2000, 6 * calls),
                  max_calls=2 * calls,
                  extra_yaml=(f"security: {{rate_per_source: {max(100, 8 * args.rate)}, "
                              f"burst_per_source: {max(200, 8 * args.rate)}}}\n"
                              f"agents:\n{agents}"
                              f"queues:\n  bench: {{agents: [{ids}], ring_timeout_s: 20, "
                              f"wrap_up_s: 0, max_wait_s: 0, announce_every_s: 0}}\n"))
    sip_cap = b.Capture(os.path.join(tmp, "sip.pcap"), f"udp port {ivrd.sip_port}")
    uas = subprocess.Popen(
        ["sipp", "-sf", AGENT, "-i", "127.0.0.1", "-p", str(uas_port), "-mi", "127.0.0.1",
         "-mp", str(uas_media), "-rtp_echo", "-m", str(total), "-buff_size", "8388608",
         "-nostdin", "-trace_err"], cwd=tmp, stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(tmp, "uas.stderr"), "w"))
    caller_port, caller_media = b.free_port(), b.free_port()
    stat = os.path.join(tmp, "uac_stats.csv")
    uac = subprocess.Popen(
        ["sipp", f"127.0.0.1:{ivrd.sip_port}", "-sf", CALLER, "-s", "bench", "-m", str(total),
         "-r", str(args.rate), "-l", str(calls), "-d", str(hold * 1000), "-i", "127.0.0.1",
         "-p", str(caller_port), "-mi", "127.0.0.1", "-mp", str(caller_media),
         "-buff_size", "8388608", "-timeout", f"{int(ramp + hold + 60)}s", "-timeout_error",
         "-trace_stat", "-stf", stat, "-fd", "5", "-trace_err", "-nostdin"],
        cwd=tmp, stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "uac.stderr"), "w"))
    t0 = time.time()
    try:
        while gauge(ivrd, "ivrd_bridged_calls") < calls and time.time() < t0 + ramp * 2 + 30:
            if uac.poll() is not None:
                sys.exit(f"SIPp (callers) exited during the ramp; see {tmp}")
            time.sleep(0.5)
        print(f"  {calls} calls: {gauge(ivrd, 'ivrd_bridged_calls'):.0f} bridged after "
              f"{time.time() - t0:.1f} s", flush=True)
        time.sleep(2)
        sip_cap.stop()
        pairs = list(leg_pairs(os.path.join(tmp, "sip.pcap"), ivrd.sip_port).values())
        sample = pairs[:: max(1, len(pairs) // args.sample)][: args.sample]
        bpf = "udp and (" + " or ".join(f"port {p}" for pair in sample for p in pair) + ")"
        rtp_cap = b.Capture(os.path.join(tmp, "rtp.pcap"), bpf)
        cpu0 = [proc_cpu(p) for p in (ivrd.proc.pid, uac.pid, uas.pid)]
        w0, held = time.time(), []
        while time.time() - w0 < args.window:
            held.append(gauge(ivrd, "ivrd_bridged_calls"))
            time.sleep(1)
        wall = time.time() - w0
        cpu = [(proc_cpu(p) - c) / wall * 100
               for p, c in zip((ivrd.proc.pid, uac.pid, uas.pid), cpu0)]
        rtp_cap.stop()
        uac.wait(timeout=ramp + hold + 90)
        uas.wait(timeout=30)
    finally:
        for p in (uac, uas):
            if p.poll() is None:
                p.kill()
    metrics = ivrd.scrape()
    ivrd.stop()
    st = {}
    with open(stat) as f:
        rows = [r.strip().split(";") for r in f if r.strip()]
        if len(rows) >= 2:
            st = dict(zip(rows[0], rows[-1]))
    legs = {lab.get("result"): int(v)
            for lab, v in b.metric_samples(metrics, "ivrd_agent_legs_total")}
    return {
        "calls": calls,
        "ok": int(st.get("SuccessfulCall(C)", 0)),
        "failed": int(st.get("FailedCall(C)", 0)),
        "held": held,
        "legs": legs,
        "relay": relay_figures(os.path.join(tmp, "rtp.pcap"), sample),
        "sampled": len(sample),
        "cpu": cpu,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--loads", default="100,500", help="concurrent bridged calls, comma-separated")
    ap.add_argument("--rate", type=float, default=50, help="new calls per second")
    ap.add_argument("--window", type=int, default=20, help="seconds of steady measurement")
    ap.add_argument("--sample", type=int, default=20, help="calls whose RTP is captured")
    ap.add_argument("--no-build", action="store_true", help="use target/release/ivrd as is")
    args = ap.parse_args()
    b.need("sipp", "tshark", "sox")
    if not args.no_build:
        b.build_release()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ms = lambda xs, p: b.pct(xs, p) * 1e3  # noqa: E731
    for load in [int(x) for x in args.loads.split(",")]:
        tmp = tempfile.mkdtemp(prefix=f"ivrd-bridge-{load}-")
        print(f"load {load}: work dir {tmp}", flush=True)
        r = run_load(args, load, tmp)
        held = r["held"]
        print(f"bridged calls  {r['calls']} wanted ({2 * r['calls']} RTP streams into ivrd, "
              f"as many out): held min {min(held):.0f}, mean {sum(held) / len(held):.0f}; "
              f"SIPp callers successful {r['ok']}, failed {r['failed']}; agent legs {r['legs']}")
        for key, label in (("fwd", "caller->agent"), ("back", "agent->caller"),
                           ("echo", "SIPp echo (ref)")):
            d, n, lost, jit = r["relay"][key]
            jit = [j for j in jit if j == j]
            print(f"{label:15}{r['sampled']} calls, {n} packets: loss {lost} "
                  f"({lost / max(n, 1) * 100:.3f} %), latency p50 {ms(d, 50):.3f} ms, "
                  f"p99 {ms(d, 99):.3f} ms, max {max(d, default=float('nan')) * 1e3:.3f} ms, "
                  f"jitter {sum(jit) / max(len(jit), 1) * 1e3:.3f} ms")
        relay = r["relay"]["fwd"][0] + r["relay"]["back"][0]
        ref = r["relay"]["echo"][0]
        print(f"relay vs echo  p50 ratio {b.pct(relay, 50) / max(b.pct(ref, 50), 1e-9):.2f}, "
              f"p99 ratio {b.pct(relay, 99) / max(b.pct(ref, 99), 1e-9):.2f}")
        cpu = r["cpu"]
        mean_held = sum(held) / len(held)
        print(f"CPU            ivrd {cpu[0]:.1f} % of one core ({cpu[0] / max(mean_held, 1) * 10:.3f} ms "
              f"per bridged call per second), SIPp callers {cpu[1]:.1f} %, SIPp agents "
              f"{cpu[2]:.1f} %")
        lost = sum(r["relay"][k][2] for k in ("fwd", "back"))
        holds = (r["failed"] == 0 and min(held) >= r["calls"] and lost == 0
                 and b.pct(relay, 99) <= 0.002)
        print(f"verdict        {'HOLDS' if holds else 'DOES NOT HOLD'} at {r['calls']} bridged "
              f"calls (0 failed, 0 lost, relay p99 <= 2 ms)", flush=True)


if __name__ == "__main__":
    main()
