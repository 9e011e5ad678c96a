#!/usr/bin/env python3
"""Escalation transfer time: from the caller's key 0 to the REFER to the supervisor.

Starts a release ivrd with two copies of the shipped default flow: `support-line` as shipped
(escalation plays the `to_supervisor` lead-in, "Connecting you to a supervisor.", before the
REFER) and `support-line-nolead` without `escalation.play` (REFER at once), routed by the
dialled number. For each, N SIPp calls press 0 half a second into the greeting by playing
the RFC 4733 capture /usr/share/sip-tester/dtmf_2833_0.pcap (`play_pcap_audio`), accept the
REFER (202, NOTIFY 200) and expect the daemon's BYE.

Times come from a loopback capture (tshark), read by our own parser: the first
telephone-event packet of the key (key down; ivrd acts on the first packet of an event)
-> the REFER leaving ivrd, matched per call by ivrd's RTP port (SDP of the 200 OK) and
Call-ID. Prints p50/p99/max for both variants and, for the lead-in variant, the time beyond
the prompt's length (what ivrd adds around the prompt).

Usage: benches/escalation.py [--calls 60] [--rate 5]
Needs: sipp (with pcap play), tshark (scripts/setup.sh test installs them), cargo.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as b  # noqa: E402

PCAP = "/usr/share/sip-tester/dtmf_2833_0.pcap"

SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="ivrd key 0 escalation">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-16
      a=ptime:20
      a=sendrecv

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      [routes]
      Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="500"/>
  <nop>
    <action>
      <exec play_pcap_audio="PCAP"/>
    </action>
  </nop>
  <recv request="REFER" timeout="15000">
    <action>
      <ereg regexp="supervisor@pbx\\.example\\.com" search_in="hdr" header="Refer-To:" check_it="true" assign_to="refer_to"/>
    </action>
  </recv>
  <send>
    <![CDATA[
      SIP/2.0 202 Accepted
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      NOTIFY [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 NOTIFY
      [routes]
      Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Event: refer
      Subscription-State: terminated;reason=noresource
      Content-Type: message/sipfrag;version=2.0
      Content-Length: [len]

      SIP/2.0 200 OK

    ]]>
  </send>
  <recv response="200" optional="true" next="notified"/>
  <recv request="BYE" timeout="10000" next="bye_first"/>
  <label id="notified"/>
  <recv request="BYE" timeout="10000"/>
  <send next="done">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <label id="bye_first"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" timeout="2000"/>
  <label id="done"/>
  <Reference variables="refer_to"/>
</scenario>
""".replace("PCAP", PCAP)


def flows(tmp):
    """support-line as shipped, and a copy without the escalation lead-in."""
    d = os.path.join(tmp, "flows")
    os.makedirs(d)
    src = os.path.join(b.ROOT, "flows", "support-line.yaml")
    shutil.copy(src, d)
    text = open(src).read()
    lines = text.splitlines(keepends=True)
    out, in_escalation, removed = [], False, False
    for line in lines:
        if line.startswith("escalation:"):
            in_escalation = True
        elif line and not line[0].isspace() and not line.startswith("#"):
            in_escalation = False
        if in_escalation and line.strip().startswith("play:"):
            removed = True
            continue
        out.append(line)
    if not removed:
        sys.exit("support-line.yaml has no escalation.play to remove")
    nolead = "".join(out).replace("flow: support-line", "flow: support-line-nolead", 1)
    with open(os.path.join(d, "support-line-nolead.yaml"), "w") as f:
        f.write(nolead)
    return d


def run(ivrd, tmp, service, calls, rate):
    scen = os.path.join(tmp, "key0.xml")
    with open(scen, "w") as f:
        f.write(SCENARIO)
    cap_path = os.path.join(tmp, f"{service}.pcap")
    cap = b.Capture(cap_path, f"udp port {ivrd.sip_port} or "
                              f"udp portrange {ivrd.rtp_base}-{ivrd.rtp_base + 999}")
    r = subprocess.run(
        ["sipp", f"127.0.0.1:{ivrd.sip_port}", "-sf", scen, "-s", service,
         "-i", "127.0.0.1", "-p", str(b.free_port()), "-mi", "127.0.0.1",
         "-mp", str(b.free_port()), "-r", str(rate), "-m", str(calls), "-l", str(calls),
         "-timeout", f"{int(calls / rate + 60)}s", "-timeout_error", "-nostdin",
         "-trace_err", "-error_file", os.path.join(tmp, f"{service}_errors.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=calls / rate + 120)
    cap.stop()
    port_of_call, refer_at, key_at = {}, {}, {}
    for t, sport, dport, payload in b.udp_packets(cap_path):
        if sport == ivrd.sip_port:
            m = b.sip_message(payload)
            if not m:
                continue
            first, headers, body = m
            cid = headers.get("call-id")
            if first.startswith("SIP/2.0 200") and "INVITE" in headers.get("cseq", ""):
                for line in body.splitlines():
                    if line.startswith("m=audio "):
                        port_of_call.setdefault(cid, int(line.split()[1]))
            elif first.startswith("REFER "):
                refer_at.setdefault(cid, t)
        elif ivrd.rtp_base <= dport <= ivrd.rtp_base + 999:
            h = b.rtp_header(payload)
            if h and h[0] == 101:
                key_at.setdefault(dport, t)
    times = [(refer_at[c] - key_at[p]) * 1000 for c, p in port_of_call.items()
             if c in refer_at and p in key_at]
    return r.returncode, len(port_of_call), times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=60)
    ap.add_argument("--rate", type=float, default=5.0)
    args = ap.parse_args()
    b.need("sipp", "tshark")
    if not os.path.isfile(PCAP):
        sys.exit(f"{PCAP} is missing (Debian package sip-tester)")
    b.build_release()
    tmp = tempfile.mkdtemp(prefix="ivrd-bench-escalation-")
    ivrd = b.Ivrd(tmp, flows(tmp), routes={"nolead": "support-line-nolead"})
    lead = b.wav_seconds(os.path.join(b.ROOT, "sounds", "to_supervisor.wav")) * 1000
    results = {}
    try:
        for service, label in (("support", "with lead-in"), ("nolead", "without lead-in")):
            started = time.time()
            results[label] = run(ivrd, tmp, service, args.calls, args.rate)
            code, answered, times = results[label]
            print(f"{label:16} SIPp exit {code}, {answered} calls answered, "
                  f"{len(times)} measured, {time.time() - started:.0f} s", flush=True)
        metrics = ivrd.scrape()
    finally:
        ivrd.stop()
    print(f"\nkey 0 (first RFC 4733 packet) -> REFER, over {args.calls} calls each:")
    print(f"{'variant':16} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}")
    for label, (_, _, times) in results.items():
        if times:
            print(f"{label:16} {b.pct(times, 50):>9.1f} {b.pct(times, 99):>9.1f} "
                  f"{max(times):>9.1f}")
    times = results["with lead-in"][2]
    if times:
        over = [t - lead for t in times]
        print(f"lead-in prompt to_supervisor lasts {lead:.1f} ms; beyond it: "
              f"p50 {b.pct(over, 50):.1f} ms, p99 {b.pct(over, 99):.1f} ms")
    esc = {l.get("reason"): v for l, v in b.metric_samples(metrics, "ivrd_escalations_total")}
    print(f"ivrd_escalations_total {esc}")
    print(f"\n(kept: {tmp})")


if __name__ == "__main__":
    main()
