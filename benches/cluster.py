#!/usr/bin/env python3
"""Three ivrd nodes behind Kamailio, sharing PostgreSQL, against the same Kamailio in front
of three SIPp UASes (the reference: what the dispatcher and the machine manage without
ivrd). Everything on this machine's loopback: nodes on 127.0.0.2-4, Kamailio on 127.0.0.1.

For each rate, SIPp's `benches/sipp/uac_routed.xml` (INVITE, 200, ACK, BYE at once, the ACK
and BYE routed back through Kamailio by its Record-Route) runs through Kamailio
for a fixed time against each set; printed per set: calls, failed, retransmissions, SIPp's
INVITE -> 200 p50/p99 as the caller sees it through Kamailio (from a loopback capture), the highest clean rate (no
failure, no retransmission, p99 within the ring budget) and the ratio ivrd / reference.

Usage: benches/cluster.py [--rates 250,500,...,4000] [--seconds 5]
Needs: sipp, kamailio, postgresql (scripts/setup.sh test), a release build of ivrd. As root
the PostgreSQL cluster runs as the `postgres` user.
"""
import argparse
import csv
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

import benchlib as b

NODES = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
RING_BUDGET_MS = 4000
SCENARIO = os.path.join(b.ROOT, "benches", "sipp", "uac_routed.xml")
# SIPp's built-in uas plus the Record-Route set in its 200 (see the file).
UAS_SCENARIO = os.path.join(b.ROOT, "benches", "sipp", "uas_routed.xml")


def pg_start(tmp):
    bindir = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
    # PostgreSQL's own folder: as root it is handed to the postgres user, and the rest of
    # tmp stays root's (tshark may not write captures into a folder another user owns).
    tmp = os.path.join(tmp, "postgres")
    data = os.path.join(tmp, "data")
    os.makedirs(data)
    root = os.geteuid() == 0
    if root:
        subprocess.run(["chown", "-R", "postgres:postgres", tmp], check=True)
    run = (lambda args: ["runuser", "-u", "postgres", "--"] + args) if root else (lambda a: a)
    subprocess.run(run([f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres",
                        "--no-sync"]), check=True, stdout=subprocess.DEVNULL)
    port = b.free_port(kind=__import__("socket").SOCK_STREAM)
    subprocess.run(run([f"{bindir}/pg_ctl", "-D", data, "-w", "-l", os.path.join(tmp, "pg.log"),
                        "-o", f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c max_connections=100",
                        "start"]), check=True, stdout=subprocess.DEVNULL)
    subprocess.run([f"{bindir}/psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                    "-c", "CREATE DATABASE ivrd"], check=True, stdout=subprocess.DEVNULL)
    stop = lambda: subprocess.run(run([f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"]),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return f"postgres://postgres@127.0.0.1:{port}/ivrd", stop


def ivrd_node(tmp, ip, url, name):
    d = os.path.join(tmp, name)
    os.makedirs(d)
    port = b.free_port()
    cfg = os.path.join(d, "ivrd.yaml")
    with open(cfg, "w") as f:
        f.write(f"""sip: {{udp: {ip}:{port}, tcp: ~}}
media: {{rtp_ip: {ip}, rtp_ports: "0"}}
limits: {{max_calls: 20000}}
security: {{trusted: ["127.0.0.0/8"]}}
flows: {{dir: {b.ROOT}/flows, default: support-line}}
sounds: {b.ROOT}/sounds
metrics: {{listen: 127.0.0.1:0}}
admin: {{listen: ~}}
state_dir: {d}/state
outages: {{file: ~}}
log: {{level: warn}}
schedules: {{support_hours: {{timezone: UTC, open: {{daily: 24h}}}}}}
store: {{postgres: "{url}", node: {name}}}
""")
    p = subprocess.Popen([b.IVRD, "run", "--config", cfg], stdout=subprocess.PIPE,
                         stderr=open(os.path.join(d, "ivrd.log"), "w"), text=True)
    if "ivrd ready" not in p.stdout.readline():
        sys.exit(f"ivrd {name} did not start; see {d}/ivrd.log")
    return p, f"{ip}:{port}"


def sipp_uas(ip):
    port = b.free_port()
    p = subprocess.Popen(["sipp", "-sf", UAS_SCENARIO, "-i", ip, "-p", str(port), "-nostdin",
                          "-buff_size", "4194304", "-bg"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    p.wait(timeout=10)
    time.sleep(0.3)
    pids = subprocess.run(["pgrep", "-f", f"sipp -sf {UAS_SCENARIO} -i {ip} -p {port}"],
                          capture_output=True, text=True).stdout.split()
    return int(pids[0]), f"{ip}:{port}"


def kamailio(tmp, name, targets, probing=True):
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    lst = os.path.join(d, "nodes.list")
    with open(lst, "w") as f:
        f.writelines(f"1 sip:{t}\n" for t in targets)
    port = b.free_port()
    # One UDP worker: with several, an immediate answer's 180 can overtake its 200 and SIPp
    # counts the call failed (both sets run the same way).
    p = subprocess.Popen(["kamailio", "-f", os.path.join(b.ROOT, "contrib/kamailio/kamailio.cfg"),
                          # Shared/private memory in MB: the 64/8 defaults run out near 2,000
                          # calls in flight (500 Server error from the stateless layer).
                          "-m", "1024", "-M", "64",
                          "-DD", "-E", "-A", "CHILDREN=1", "-A", f"LISTEN=udp:127.0.0.1:{port}",
                          "-A", f"PROBING_MODE={1 if probing else 0}",
                          "-A", f'DISPATCHER_LIST="{lst}"', "-Y", d, "-P", os.path.join(d, "k.pid"),
                          "-w", d], stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(d, "kamailio.log"), "w"), start_new_session=True)
    time.sleep(3)  # OPTIONS probing marks every destination up (1 s interval)
    return p, port


def load(port, rate, seconds, tmp, tag):
    stat = os.path.join(tmp, f"{tag}_{rate}.csv")
    cap = os.path.join(tmp, f"{tag}_{rate}.pcap")
    uac_port = b.free_port()
    capture = b.Capture(cap, f"udp port {uac_port}")
    subprocess.run(["sipp", "-sf", SCENARIO, f"127.0.0.1:{port}", "-i", "127.0.0.1",
                    "-p", str(uac_port), "-r", str(rate), "-m", str(rate * seconds),
                    "-l", "20000", "-d", "0", "-buff_size", "4194304",
                    "-timeout", f"{seconds + 30}s", "-timeout_error", "-nostdin",
                    "-trace_stat", "-stf", stat, "-fd", "1", "-trace_err",
                    "-error_file", os.path.join(tmp, f"{tag}_{rate}_errors.log")],
                   cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=seconds + 60)
    capture.stop()
    with open(stat) as f:
        last = list(csv.DictReader(f, delimiter=";"))[-1]
    # Seen by the caller: INVITE out to Kamailio -> 200 OK back from it, in ms.
    lat = [us / 1000 for us in b.invite_to_200(cap, uac_port)]
    os.remove(cap)
    if int(last["FailedCall(C)"]):
        with open(os.path.join(tmp, f"{tag}_{rate}_errors.log"), errors="replace") as f:
            print(f"{tag} at {rate}/s, SIPp's first errors:\n" + "".join(f.readlines()[:6]),
                  file=sys.stderr)
    return (int(last["FailedCall(C)"]), int(last["SuccessfulCall(C)"]),
            int(last["Retransmissions(C)"]), lat)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="250,500,1000,1500,2000,3000,4000",
                    help="rising call rates; each set stops at its first rate that fails")
    ap.add_argument("--seconds", type=int, default=5)
    a = ap.parse_args()
    b.need("sipp", "kamailio", "tshark")
    b.build_release()
    tmp = tempfile.mkdtemp(prefix="ivrd-cluster-")
    os.chmod(tmp, 0o755)
    procs, stops = [], []
    try:
        url, pg_stop = pg_start(tmp)
        stops.append(pg_stop)
        nodes = []
        for i, ip in enumerate(NODES):
            p, addr = ivrd_node(tmp, ip, url, f"node{i + 1}")
            procs.append(p)
            nodes.append(addr)
        uas = []
        for ip in NODES:
            pid, addr = sipp_uas(ip)
            stops.append(lambda pid=pid: os.kill(pid, 15))
            uas.append(addr)
        k1, ivrd_port = kamailio(tmp, "kam-ivrd", nodes)
        procs.append(k1)
        # SIPp's UAS takes an OPTIONS for a call it cannot handle: no probing there.
        k2, uas_port = kamailio(tmp, "kam-uas", uas, probing=False)
        procs.append(k2)
        best = {"ivrd x3": 0, "sipp uas x3": 0}
        print(f"| set | rate/s | calls | failed | retrans | INVITE->200 p50 ms | p99 ms |")
        print("|---|---|---|---|---|---|---|")
        failed_at = set()
        for rate in [int(r) for r in a.rates.split(",")]:
            for tag, port in (("ivrd x3", ivrd_port), ("sipp uas x3", uas_port)):
                if tag in failed_at:
                    continue
                failed, ok, retrans, rtts = load(port, rate, a.seconds, tmp, tag.replace(" ", "_"))
                p50 = b.pct(rtts, 50) if rtts else float("nan")
                p99 = b.pct(rtts, 99) if rtts else float("nan")
                clean = failed == 0 and retrans == 0 and p99 <= RING_BUDGET_MS
                if clean:
                    best[tag] = max(best[tag], rate)
                else:
                    failed_at.add(tag)
                print(f"| {tag} | {rate} | {ok + failed} | {failed} | {retrans} | {p50:.2f} | {p99:.2f} |"
                      + ("" if clean else " not clean"), flush=True)
        print(f"\nhighest clean rate through Kamailio: ivrd x3 {best['ivrd x3']}/s, "
              f"sipp uas x3 {best['sipp uas x3']}/s, ratio "
              f"{best['ivrd x3'] / max(best['sipp uas x3'], 1):.2f}")
    finally:
        for p in procs:
            p.terminate()
        for s in stops:
            try:
                s()
            except Exception:
                pass
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
