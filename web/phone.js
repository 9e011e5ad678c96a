// ivrd test phone: calls a flow over WebRTC and shows the call as it happens.
// Plain browser JavaScript, no build step. The admin token comes from the URL fragment
// (/phone#token=...) or the token field; it is sent as `Authorization: Bearer` only.
"use strict";

const $ = (id) => document.getElementById(id);

// What the page has shown, kept for people and scripts poking at a call from the console.
const phone = {
  callId: null,
  status: "idle",
  answerMs: null, // offer received -> answer sent (ivrd's own measure, like a 200 OK)
  connectMs: null, // offer received -> media connected (ivrd's measure)
  clickToAudioMs: null, // Call clicked -> media connected (this page's measure)
  path: [],
  events: [],
  transfer: null,
  ended: null,
};
window.phone = phone;

let pc = null; // RTCPeerConnection of the current call
let statsTimer = null; // refreshes the audio line while in a call
let dtmf = null; // its RTCDTMFSender
let mic = null; // the microphone stream
let follow = null; // AbortController of the events stream
let offering = null; // AbortController of the offer request, until it is answered
let attempt = 0; // which call() is current: hanging up during set-up abandons it

function token() {
  const fromUrl = new URLSearchParams(location.hash.slice(1)).get("token");
  return fromUrl || $("token").value.trim();
}

async function api(method, path, body, signal) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  const text = await res.text();
  const json = text ? JSON.parse(text) : null;
  if (!res.ok) throw new Error((json && json.error) || `${method} ${path}: ${res.status}`);
  return json;
}

function setStatus(text) {
  phone.status = text;
  $("status").textContent = text;
}

function showError(e) {
  $("error").textContent = e ? String(e.message || e) : "";
}

function setInCall(inCall) {
  $("call").disabled = inCall;
  $("flow").disabled = inCall;
  $("hangup").disabled = !inCall;
}

function showTiming() {
  const parts = [];
  if (phone.answerMs !== null) parts.push(`answered in ${phone.answerMs} ms`);
  if (phone.connectMs !== null) parts.push(`media connected in ${phone.connectMs} ms`);
  $("timing").textContent = parts.join(" · ");
}

// Both directions of the call's audio, from the browser's own statistics.
phone.stats = async () => {
  if (!pc) return null;
  const out = {};
  const report = await pc.getStats();
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      out.packetsReceived = s.packetsReceived;
      out.packetsLost = s.packetsLost;
      out.jitter = s.jitter;
      out.totalAudioEnergy = s.totalAudioEnergy;
      out.audioLevel = s.audioLevel;
      // The jitter buffer's repairs: concealment for missing audio, time-stretching.
      out.concealedSamples = s.concealedSamples;
      out.insertedSamplesForDeceleration = s.insertedSamplesForDeceleration;
      out.removedSamplesForAcceleration = s.removedSamplesForAcceleration;
      out.jitterBufferMs = s.jitterBufferEmittedCount
        ? Math.round((1000 * s.jitterBufferDelay) / s.jitterBufferEmittedCount)
        : null;
      const codec = report.get(s.codecId);
      out.codec = codec && codec.mimeType;
    }
    if (s.type === "outbound-rtp" && s.kind === "audio") out.packetsSent = s.packetsSent;
  });
  return out;
};

async function showStats() {
  const s = await phone.stats();
  if (!s || s.packetsReceived === undefined) return;
  $("audio").textContent =
    `audio in: ${s.packetsReceived} packets, ${s.packetsLost} lost (${s.codec || "?"}) · ` +
    `out: ${s.packetsSent || 0} packets`;
}

function logLine(t, text) {
  const li = document.createElement("li");
  const ts = document.createElement("span");
  ts.className = "t";
  ts.textContent = `${(t / 1000).toFixed(2)} s`;
  li.append(ts, text);
  $("log").append(li);
  li.scrollIntoView({ block: "nearest" });
}

// One event from ivrd (see src/io/webrtc/events.rs for the list).
function onEvent(e) {
  phone.events.push(e);
  switch (e.type) {
    case "ringing":
      setStatus("ringing");
      logLine(e.t_ms, "ringing");
      break;
    case "answered":
      phone.answerMs = e.answer_ms;
      setStatus("answered");
      showTiming();
      logLine(e.t_ms, `answered (${e.answer_ms} ms)`);
      break;
    case "connected":
      phone.connectMs = e.connect_ms;
      setStatus("in call");
      showTiming();
      logLine(e.t_ms, `media connected (${e.connect_ms} ms)`);
      statsTimer = setInterval(showStats, 1000);
      break;
    case "node": {
      phone.path.push(e.node);
      const li = document.createElement("li");
      li.textContent = e.node;
      $("path").append(li);
      logLine(e.t_ms, `node ${e.node}`);
      break;
    }
    case "key":
      logLine(e.t_ms, `key ${e.key}`);
      break;
    case "intent":
      logLine(e.t_ms, `intent ${e.intent} (in ${e.node})`);
      break;
    case "transcript":
      logLine(e.t_ms, `you said: “${e.text}”`);
      break;
    case "speech":
      logLine(e.t_ms, `speech: ${e.outcome}`);
      break;
    case "outage":
      logLine(e.t_ms, `outage announced: ${e.id}`);
      break;
    case "escalated":
      logLine(e.t_ms, `escalating to a person (${e.reason})`);
      break;
    case "escalation_failed":
      logLine(e.t_ms, "escalation failed: nobody reachable");
      break;
    case "callback":
      logLine(e.t_ms, `callback requested (${e.reason})`);
      break;
    case "transfer":
      showTransfer(e);
      logLine(e.t_ms, `transfer to ${e.target} (${e.result})`);
      break;
    case "ended":
      phone.ended = { outcome: e.outcome, reason: e.reason };
      logLine(e.t_ms, `ended: ${e.outcome} (${e.reason})`);
      endLocally(`ended: ${e.outcome}`);
      break;
  }
}

function showTransfer(e) {
  phone.transfer = { target: e.target, headers: e.headers, result: e.result };
  $("transfer").hidden = false;
  $("transfer-target").textContent =
    `${e.target} — ${e.result === "accepted" ? "the call ends as transferred" : "treated as refused"}`;
  const body = $("transfer-headers");
  body.replaceChildren();
  for (const [name, value] of e.headers) {
    const tr = document.createElement("tr");
    const k = document.createElement("td");
    const v = document.createElement("td");
    k.textContent = name;
    v.textContent = value;
    tr.append(k, v);
    body.append(tr);
  }
}

// Reads the call's server-sent events with fetch, so the token goes in a header.
async function followEvents(callId) {
  follow = new AbortController();
  const res = await fetch(`/api/webrtc/calls/${encodeURIComponent(callId)}/events`, {
    headers: { Authorization: `Bearer ${token()}` },
    signal: follow.signal,
  });
  if (!res.ok) throw new Error(`events: ${res.status}`);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const data = block
        .split("\n")
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data) onEvent(JSON.parse(data));
    }
  }
}

// Non-trickle: the offer goes out once it lists every local candidate.
function gathered(conn, timeoutMs) {
  if (conn.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (conn.iceGatheringState === "complete") resolve();
    };
    conn.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, timeoutMs);
  });
}

async function call() {
  showError(null);
  resetView();
  setInCall(true);
  setStatus("calling");
  const clicked = performance.now();
  const mine = ++attempt;
  const stillWanted = () => {
    if (mine !== attempt) throw new DOMException("hung up during set-up", "AbortError");
  };
  try {
    // Faithful audio for the recogniser: no echo cancellation, noise suppression or gain.
    mic = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    stillWanted();
    pc = new RTCPeerConnection();
    const [track] = mic.getAudioTracks();
    const transceiver = pc.addTransceiver(track, { direction: "sendrecv", streams: [mic] });
    // ivrd speaks G.711 mu-law at 8 kHz and takes keys as telephone-event (RFC 4733).
    const codecs = RTCRtpSender.getCapabilities("audio").codecs.filter(
      (c) => c.clockRate === 8000 && /^audio\/(PCMU|telephone-event)$/i.test(c.mimeType),
    );
    transceiver.setCodecPreferences(codecs);
    dtmf = transceiver.sender.dtmf;
    pc.ontrack = (e) => {
      $("remote").srcObject = e.streams[0] || new MediaStream([e.track]);
    };
    pc.onconnectionstatechange = () => {
      if (pc && pc.connectionState === "connected" && phone.clickToAudioMs === null) {
        phone.clickToAudioMs = Math.round(performance.now() - clicked);
      }
      if (pc && pc.connectionState === "failed") hangUp("connection failed");
    };
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc, 3000);
    stillWanted();
    const flow = $("flow").value || undefined;
    // Hanging up while it rings aborts this request: ivrd then ends the call as abandoned.
    offering = new AbortController();
    const offer = { flow, sdp: pc.localDescription.sdp };
    const answer = await api("POST", "/api/webrtc/calls", offer, offering.signal);
    offering = null;
    phone.callId = answer.call_id;
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    followEvents(answer.call_id).catch((e) => {
      if (e.name !== "AbortError") showError(e);
    });
  } catch (e) {
    offering = null;
    if (e.name !== "AbortError") showError(e);
    endLocally(e.name === "AbortError" ? "hung up" : "idle");
  }
}

function sendKey(key) {
  if (dtmf && dtmf.canInsertDTMF) dtmf.insertDTMF(key, 120, 80);
}

async function hangUp(why) {
  attempt++;
  if (offering) offering.abort();
  const id = phone.callId;
  if (id) {
    try {
      await api("DELETE", `/api/webrtc/calls/${encodeURIComponent(id)}`);
    } catch (e) {
      showError(e);
    }
  }
  if (why) endLocally(why);
}

// Stops local media; the events stream ends by itself after the `ended` event.
function endLocally(status) {
  clearInterval(statsTimer);
  statsTimer = null;
  if (pc) pc.close();
  pc = null;
  dtmf = null;
  if (mic) mic.getTracks().forEach((t) => t.stop());
  mic = null;
  setInCall(false);
  setStatus(status);
}

function resetView() {
  Object.assign(phone, {
    callId: null,
    answerMs: null,
    connectMs: null,
    clickToAudioMs: null,
    path: [],
    events: [],
    transfer: null,
    ended: null,
  });
  $("path").replaceChildren();
  $("log").replaceChildren();
  $("transfer").hidden = true;
  $("audio").textContent = "";
  showTiming();
}

async function loadFlows() {
  try {
    const flows = await api("GET", "/api/webrtc/flows");
    const select = $("flow");
    select.replaceChildren();
    for (const f of flows) {
      const opt = document.createElement("option");
      opt.value = f.name;
      opt.textContent = f.default ? `${f.name} (default)` : f.name;
      opt.selected = f.default;
      select.append(opt);
    }
    showError(null);
  } catch (e) {
    showError(e);
  }
}

$("call").addEventListener("click", call);
$("hangup").addEventListener("click", () => hangUp("hung up"));
$("keypad").addEventListener("click", (e) => {
  const key = e.target.dataset && e.target.dataset.key;
  if (key) sendKey(key);
});
document.addEventListener("keydown", (e) => {
  if (/^[0-9*#]$/.test(e.key) && e.target.tagName !== "INPUT") sendKey(e.key);
});
$("token").addEventListener("change", loadFlows);
// Closing or leaving the page hangs up at once; keepalive lets the request outlive the page
// (sendBeacon would too, but cannot carry the Authorization header).
window.addEventListener("pagehide", () => {
  if (!phone.callId || phone.ended) return;
  fetch(`/api/webrtc/calls/${encodeURIComponent(phone.callId)}`, {
    method: "DELETE",
    headers: { Authorization: `Bearer ${token()}` },
    keepalive: true,
  });
});

$("token-box").hidden = Boolean(new URLSearchParams(location.hash.slice(1)).get("token"));
loadFlows();
