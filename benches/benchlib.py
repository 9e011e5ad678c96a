"""Shared helpers for the benchmarks in this directory (stdlib only).

- building and starting a release ivrd on a temp config with ephemeral SIP/metrics/admin
  ports and a fixed RTP range (so a loopback capture can be filtered by port),
- the admin API (bearer token from the state dir) and the Prometheus scrape,
- a loopback capture with tshark, read back by our own pcap/SIP/RTP parser,
- G.711 mu-law decoding and a correlation search, written here so that no figure depends
  on the daemon's own codec or resampler (references are resampled by sox),
- percentiles and Prometheus-style histogram quantiles.
"""

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import wave

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where cargo builds (CARGO_TARGET_DIR, as cargo itself reads it).
IVRD = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "ivrd")


def need(*tools):
    for tool in tools:
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: run scripts/setup.sh test")


def build_release():
    subprocess.run(["cargo", "build", "--release", "--locked", "-q"], cwd=ROOT, check=True)


def free_port(kind=socket.SOCK_DGRAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_range(size=1000):
    """A base port p (even) such that p..p+size looks unused (best effort)."""
    for base in range(41000, 60000, size):
        try:
            socks = []
            for p in (base, base + size // 2, base + size - 2):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind(("127.0.0.1", p))
                socks.append(s)
            for s in socks:
                s.close()
            return base
        except OSError:
            for s in socks:
                s.close()
    sys.exit("no free RTP port range")


class Ivrd:
    """A release ivrd on a temp config. `flows_dir` holds the flows; `routes` maps dialled
    numbers to flow names."""

    def __init__(self, tmp, flows_dir, default="support-line", routes=None, rtp_base=None,
                 rtp_span=1000, max_calls=2000, media_extra="", extra_yaml="", limits_extra=""):
        """`rtp_span` ports from `rtp_base` for RTP (one even port per call); `media_extra`
        is appended inside the `media:` mapping (e.g. `rtp_timeout_s: 5`), `extra_yaml`
        (whole top-level sections, e.g. `security: {...}`) at the end of the config,
        `limits_extra` inside `limits:` (e.g. `worker_threads: 2`)."""
        self.tmp = tmp
        self.rtp_base = rtp_base or free_port_range(rtp_span)
        self.rtp_span = rtp_span
        self.sip_port = free_port()
        routes = routes or {}
        route_yaml = "{" + ", ".join(f'"{k}": {v}' for k, v in routes.items()) + "}"
        media_extra = f", {media_extra}" if media_extra else ""
        limits_extra = f", {limits_extra}" if limits_extra else ""
        cfg = os.path.join(tmp, "ivrd.yaml")
        with open(cfg, "w") as f:
            f.write(f"""sip: {{udp: 127.0.0.1:{self.sip_port}, tcp: ~}}
media: {{rtp_ip: 127.0.0.1, rtp_ports: "{self.rtp_base}-{self.rtp_base + rtp_span - 1}"{media_extra}}}
limits: {{max_calls: {max_calls}{limits_extra}}}
flows: {{dir: {flows_dir}, default: {default}, routes: {route_yaml}}}
sounds: {ROOT}/sounds
metrics: {{listen: 127.0.0.1:0}}
admin: {{listen: 127.0.0.1:0}}
state_dir: state
outages: {{file: ~}}
log: {{level: warn}}
schedules: {{support_hours: {{timezone: UTC, open: {{daily: 24h}}}}}}
{extra_yaml}""")
        self.config = cfg
        self.proc = subprocess.Popen([IVRD, "run", "--config", cfg], stdout=subprocess.PIPE,
                                     stderr=open(os.path.join(tmp, "ivrd.log"), "w"), text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"metrics=(\S+).*admin=(\S+)", line)
        if not m:
            sys.exit(f"ivrd did not start: {line!r}; see {tmp}/ivrd.log")
        self.metrics, self.admin = m.group(1), m.group(2)
        with open(os.path.join(tmp, "state", "admin.token")) as f:
            self.token = f.read().strip()

    def api(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://{self.admin}{path}", data=data, method=method,
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read().decode()
            return json.loads(text) if text else None

    def scrape(self):
        with urllib.request.urlopen(f"http://{self.metrics}/metrics", timeout=10) as resp:
            return resp.read().decode()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def metric_samples(text, name):
    """[(labels dict, value)] of one metric name."""
    out = []
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = re.match(r"^(\w+)(\{(.*)\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        out.append((labels, float(m.group(4))))
    return out


def histogram_quantile(text, name, q):
    """Prometheus histogram_quantile: linear interpolation inside the bucket."""
    buckets = sorted((float(l["le"]), v) for l, v in metric_samples(text, name + "_bucket"))
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_count) / max(count - prev_count, 1e-9)
        prev_le, prev_count = le, count
    return buckets[-1][0]


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


# ---------------------------------------------------------------------------------------
# Capture
# ---------------------------------------------------------------------------------------

class Capture:
    """tshark on lo, written as classic pcap so that `packets()` can read it."""

    def __init__(self, path, bpf):
        self.path = path
        self.proc = subprocess.Popen(["tshark", "-q", "-i", "lo", "-B", "64", "-F", "pcap",
                                      "-f", bpf, "-w", path],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Capturing once the file header is written.
        deadline = time.time() + 10
        while time.time() < deadline and not (os.path.exists(path)
                                               and os.path.getsize(path) >= 24):
            time.sleep(0.05)

    def stop(self):
        time.sleep(0.5)
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)


def udp_packets(path):
    """(time, src_port, dst_port, payload) for every UDP/IPv4 packet of a pcap file."""
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    if magic == 0xA1B2C3D4:
        endian, scale = "<", 1e-6
    elif magic == 0xA1B23C4D:
        endian, scale = "<", 1e-9
    elif magic == 0xD4C3B2A1:
        endian, scale = ">", 1e-6
    else:
        sys.exit(f"{path}: not a classic pcap file")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    pos = 24
    out = []
    while pos + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack(endian + "IIII", data[pos:pos + 16])
        pkt = data[pos + 16:pos + 16 + incl]
        pos += 16 + incl
        if linktype == 1:  # Ethernet
            if len(pkt) < 14 or pkt[12:14] != b"\x08\x00":
                continue
            ip = pkt[14:]
        elif linktype == 113:  # Linux cooked
            if pkt[14:16] != b"\x08\x00":
                continue
            ip = pkt[16:]
        elif linktype == 101:  # raw IP
            ip = pkt
        else:
            sys.exit(f"unsupported link type {linktype}")
        if len(ip) < 20 or ip[9] != 17:
            continue
        ihl = (ip[0] & 0x0F) * 4
        udp = ip[ihl:]
        if len(udp) < 8:
            continue
        sport, dport = struct.unpack(">HH", udp[:4])
        out.append((sec + frac * scale, sport, dport, udp[8:]))
    return out


def sip_message(payload):
    """(first line, headers dict lower-case -> first value, body) or None."""
    try:
        text = payload.decode("utf-8", "replace")
    except Exception:
        return None
    if not (text.startswith("SIP/2.0") or re.match(r"^[A-Z]+ \S+ SIP/2\.0", text)):
        return None
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers = {}
    compact = {"i": "call-id", "f": "from", "t": "to", "v": "via", "c": "content-type",
               "l": "content-length", "m": "contact"}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            k = k.strip().lower()
            headers.setdefault(compact.get(k, k), v.strip())
    return lines[0], headers, body


def invite_to_200(path, port=None):
    """INVITE -> its 200 OK per call, in microseconds, from a capture (first INVITE and first
    200 of each Call-ID; only packets to or from `port` when given). Read here in well under
    a second; tshark's dissectors took longer than the load itself."""
    invites, answered = {}, {}
    for t, sport, dport, payload in udp_packets(path):
        if port is not None and port not in (sport, dport):
            continue
        if not (payload.startswith(b"INVITE ") or payload.startswith(b"SIP/2.0 200")):
            continue
        msg = sip_message(payload)
        if msg is None or not msg[1].get("cseq", "").endswith("INVITE"):
            continue
        cid = msg[1].get("call-id")
        (invites if msg[0].startswith("INVITE") else answered).setdefault(cid, t)
    return sorted((answered[c] - invites[c]) * 1e6 for c in answered if c in invites)


def rtp_header(payload):
    """(pt, marker, seq, ts, ssrc, body) or None."""
    if len(payload) < 12 or payload[0] >> 6 != 2:
        return None
    pt = payload[1] & 0x7F
    if 72 <= pt <= 76:
        return None
    cc = payload[0] & 0x0F
    start = 12 + 4 * cc
    seq, ts, ssrc = struct.unpack(">HII", payload[2:12])
    return pt, bool(payload[1] & 0x80), seq, ts, ssrc, payload[start:]


# ---------------------------------------------------------------------------------------
# Audio
# ---------------------------------------------------------------------------------------

def _ulaw(b):
    b = ~b & 0xFF
    t = ((b & 0x0F) << 3) + 0x84
    t <<= (b & 0x70) >> 4
    return (0x84 - t) if b & 0x80 else (t - 0x84)


ULAW = [_ulaw(i) for i in range(256)]


def sox_8k(path):
    """Any audio file as 8 kHz mono samples, resampled by sox."""
    out = subprocess.run(["sox", "-D", path, "-t", "raw", "-e", "signed-integer", "-b", "16",
                          "-L", "-c", "1", "-", "rate", "-v", "8000"],
                         capture_output=True, check=True).stdout
    return list(struct.unpack(f"<{len(out) // 2}h", out))


def tts_8k(text, tmp):
    """What the daemon's text to speech says (espeak-ng -v en-us -s 150), via sox."""
    wav = os.path.join(tmp, "tts.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", wav, "--", text], check=True)
    return sox_8k(wav)


def wav_seconds(path):
    with wave.open(path) as w:
        return w.getnframes() / w.getframerate()


def _envelope(x, block=80):
    env = [sum(abs(v) for v in x[i:i + block]) / block for i in range(0, len(x) - block + 1, block)]
    mean = sum(env) / max(len(env), 1)
    return [v - mean for v in env]


def _ncc(ref, sig, off):
    dot = e_ref = e_sig = 0.0
    for i, r in enumerate(ref):
        s = sig[off + i] if off + i < len(sig) else 0.0
        dot += r * s
        e_ref += r * r
        e_sig += s * s
    if e_ref <= 0 or e_sig <= 0:
        return 0.0
    return dot / (e_ref * e_sig) ** 0.5


def find(reference, signal, fine_chunk=2400):
    """Where `reference` starts in `signal` (8 kHz samples): (sample offset, ncc).
    Coarse: 10 ms envelopes; fine: 1 ms steps +-30 ms on the reference's first speech."""
    er, es = _envelope(reference), _envelope(signal)
    if len(es) < 2:
        return 0, 0.0
    coarse = sorted(((_ncc(er, es, b), b) for b in range(len(es))), reverse=True)[:3]
    onset = next((i for i, v in enumerate(reference) if abs(v) > 1000), 0)
    chunk = reference[onset:onset + fine_chunk]
    best = (-2.0, 0)
    for _, b in coarse:
        centre = b * 80 + onset
        for off in range(max(0, centre - 240), centre + 241, 8):
            c = _ncc(chunk, signal, off)
            if c > best[0]:
                best = (c, off)
    return max(best[1] - onset, 0), best[0]
