#!/usr/bin/env python3
"""Time from answer to outage notice: how soon callers hear about a known outage.

Starts a release ivrd on the shipped default flow (greeting, then outages, then the menu),
starts one outage through the admin API, and places N SIPp calls (built-in `uac`, PCMU,
staying long enough to hear the outage). Prints, over the calls:

  - from ivrd's own histogram `ivrd_time_to_outage_notice_seconds` (answer -> start of the
    outage prompt): p50/p99 by Prometheus-style interpolation inside the buckets;
  - independently, from a loopback capture (tshark): the capture time of the 200 OK to the
    INVITE -> the capture time of the first RTP packet that carries the start of the
    outage message, found by correlating the RTP audio (decoded here, not by ivrd) with
    espeak-ng's rendering of the same text resampled by sox; p50/p99/max;
  - the part of that time that is not the greeting (notice - greeting length): what ivrd
    itself adds between the end of the greeting and the outage message.

Usage: benches/outage_notice.py [--calls 100] [--rate 10]
Needs: sipp, tshark, sox, espeak-ng (scripts/setup.sh test installs them), cargo.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as b  # noqa: E402

MESSAGE = "Our network is down in the north. We are working on it."


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--rate", type=float, default=10.0)
    args = ap.parse_args()
    b.need("sipp", "tshark", "sox", "espeak-ng")
    b.build_release()
    tmp = tempfile.mkdtemp(prefix="ivrd-bench-notice-")
    ivrd = b.Ivrd(tmp, os.path.join(b.ROOT, "flows"))
    try:
        ivrd.api("POST", "/api/outages", {"id": "bench-net", "message": MESSAGE})
        reference = b.tts_8k(MESSAGE, tmp)
        greeting = b.wav_seconds(os.path.join(b.ROOT, "sounds", "greeting.wav"))
        # Stay on each call for the greeting, the message and a margin.
        hold_ms = int((greeting + len(reference) / 8000 + 1.5) * 1000)
        cap_path = os.path.join(tmp, "notice.pcap")
        cap = b.Capture(cap_path, f"udp port {ivrd.sip_port} or "
                                  f"udp portrange {ivrd.rtp_base}-{ivrd.rtp_base + 999}")
        stat = os.path.join(tmp, "sipp_stat.csv")
        started = time.time()
        sipp = subprocess.run(
            ["sipp", "-sn", "uac", f"127.0.0.1:{ivrd.sip_port}", "-s", "support",
             "-i", "127.0.0.1", "-p", str(b.free_port()), "-mi", "127.0.0.1",
             "-mp", str(b.free_port()), "-r", str(args.rate), "-m", str(args.calls),
             "-l", str(args.calls), "-d", str(hold_ms),
             "-timeout", f"{int(args.calls / args.rate + hold_ms / 1000 + 60)}s",
             "-timeout_error", "-trace_stat", "-stf", stat, "-fd", "1", "-nostdin"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=args.calls / args.rate + hold_ms / 1000 + 120)
        cap.stop()
        metrics = ivrd.scrape()
    finally:
        ivrd.stop()
    print(f"{args.calls} calls at {args.rate}/s, SIPp exit {sipp.returncode}, "
          f"{time.time() - started:.0f} s; greeting {greeting:.3f} s, "
          f"outage message {len(reference) / 8000:.3f} s")

    # --- ivrd's histogram --------------------------------------------------------------
    name = "ivrd_time_to_outage_notice_seconds"
    count = sum(v for _, v in b.metric_samples(metrics, name + "_count"))
    total = sum(v for _, v in b.metric_samples(metrics, name + "_sum"))
    print(f"\nivrd histogram: {count:.0f} notices, mean {total / max(count, 1):.3f} s, "
          f"p50 {b.histogram_quantile(metrics, name, 0.5):.3f} s, "
          f"p99 {b.histogram_quantile(metrics, name, 0.99):.3f} s (interpolated in buckets)")

    # --- the capture -----------------------------------------------------------------
    answers = {}   # ivrd RTP port -> 200 OK time
    streams = {}   # ivrd RTP port -> [(seq, time, payload)]
    for t, sport, dport, payload in b.udp_packets(cap_path):
        if sport == ivrd.sip_port:
            m = b.sip_message(payload)
            if not m or not m[0].startswith("SIP/2.0 200") or "INVITE" not in m[1].get("cseq", ""):
                continue
            for line in m[2].splitlines():
                if line.startswith("m=audio "):
                    answers.setdefault(int(line.split()[1]), t)
        elif ivrd.rtp_base <= sport <= ivrd.rtp_base + 999:
            h = b.rtp_header(payload)
            if h and h[0] == 0:
                streams.setdefault(sport, []).append((h[2], t, h[5]))
    notices, missing = [], 0
    for port, ok_at in answers.items():
        pkts = streams.get(port, [])
        # In sequence order (wrap-safe enough for a few hundred packets).
        first = pkts[0][0] if pkts else 0
        pkts.sort(key=lambda p: (p[0] - first) & 0xFFFF)
        samples, times = [], []
        for _, t, body in pkts:
            times.append(t)
            samples.extend(b.ULAW[x] for x in body)
        offset, ncc = b.find(reference, samples)
        if ncc < 0.8 or offset // 160 >= len(times):
            missing += 1
            continue
        notices.append(times[offset // 160] - ok_at)
    print(f"capture: {len(answers)} answered calls, outage found in {len(notices)} "
          f"({missing} without a match)")
    if notices:
        ms = [n * 1000 for n in notices]
        over = [(n - greeting) * 1000 for n in notices]
        print(f"answer -> outage notice: p50 {b.pct(ms, 50):.1f} ms, p99 {b.pct(ms, 99):.1f} ms, "
              f"min {min(ms):.1f} ms, max {max(ms):.1f} ms")
        print(f"beyond the greeting:     p50 {b.pct(over, 50):.1f} ms, "
              f"p99 {b.pct(over, 99):.1f} ms, max {max(over):.1f} ms")
    print(f"\n(kept: {tmp})")


if __name__ == "__main__":
    main()
