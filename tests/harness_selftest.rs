//! Self-tests of the black-box harness, without ivrd.
//!
//! The harness (tests/support) and the SIPp scenarios (tests/sipp) are validated here
//! against peers we did not write: SIPp's built-in UAS with RTP echo, SIPp UAS emulators of
//! the daemon's side (tests/sipp/emulators), sox and espeak-ng. When a daemon test fails,
//! these passing means the fault is not in the test peer.

mod support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::audio::{self, Timing};
use support::caller::{AudioSource, Caller, CallerOpts, Dir, ReferPolicy};
use support::daemon::{metric_sum, parse_ready_line};
use support::sip::{Sdp, SipMessage};
use support::sipp::{parse_trace, Direction, Sipp};
use support::{free_udp_port, free_udp_port_block, localhost, metric_value, ChildGuard, TempDir};

// ---------------------------------------------------------------------------------------
// Parsers
// ---------------------------------------------------------------------------------------

#[test]
fn sip_parser_reads_compact_headers_folding_and_content_length() {
    let raw = "SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 127.0.0.1:5;branch=z9hG4bKa;rport=5\r\n\
               Via: SIP/2.0/UDP 10.0.0.1:7;branch=z9hG4bKb\r\n\
               f: <sip:a@b>;tag=1\r\nt: \"B\" <sip:b@c;tag=nope>;tag=2\r\ni: cid\r\n\
               Subject: folded\r\n  line\r\n\
               CSeq: 7 INVITE\r\nl: 4\r\n\r\nabcdEXTRA";
    let m = SipMessage::parse(raw.as_bytes()).unwrap();
    assert_eq!(m.status(), Some(200));
    assert_eq!(m.body, "abcd");
    // URI parameters inside <> are not header parameters.
    assert_eq!(m.tag("To").as_deref(), Some("2"));
    assert_eq!(m.cseq(), Some((7, "INVITE".into())));
    assert_eq!(m.top_via_branch().as_deref(), Some("z9hG4bKa"));
    assert_eq!(m.headers_named("Via").len(), 2);
    assert_eq!(m.header("subject"), Some("folded line"));
    assert!(SipMessage::parse(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
}

#[test]
fn sdp_parser_applies_media_level_connection_and_direction() {
    let sdp = "v=0\r\no=- 1 7 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\na=sendrecv\r\n\
               m=audio 4000 RTP/AVP 8 0 101\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:101 telephone-event/8000\r\n\
               a=recvonly\r\n";
    let s = Sdp::parse(sdp).unwrap();
    assert_eq!(s.rtp_addr(), Some(localhost(4000)));
    assert_eq!(s.payload_types, vec![8, 0, 101]);
    assert_eq!(s.first_audio_pt(), Some(8));
    assert_eq!(s.telephone_event_pt(), Some(101));
    assert_eq!(s.direction, "recvonly");
    assert_eq!(s.origin_version, Some(7));
}

#[test]
fn ready_line_parser_follows_the_contract() {
    let r = parse_ready_line(
        "ivrd ready sip_udp=127.0.0.1:5070 sip_tcp=127.0.0.1:5071 metrics=127.0.0.1:9100\n",
    )
    .unwrap();
    assert_eq!(r.sip_udp, localhost(5070));
    assert_eq!(r.sip_tcp, localhost(5071));
    assert_eq!(r.metrics, localhost(9100));
    assert_eq!(r.admin, None);
    let r = parse_ready_line(
        "ivrd ready sip_udp=127.0.0.1:1 sip_tcp=127.0.0.1:2 metrics=127.0.0.1:3 admin=127.0.0.1:4",
    )
    .unwrap();
    assert_eq!(r.admin, Some(localhost(4)));
    let r = parse_ready_line(
        "ivrd ready sip_udp=127.0.0.1:1 sip_tcp=127.0.0.1:2 metrics=127.0.0.1:3 admin=off",
    )
    .unwrap();
    assert_eq!(r.admin, None);
    assert!(parse_ready_line(
        "ivrd ready sip_udp=127.0.0.1:0 sip_tcp=127.0.0.1:1 metrics=127.0.0.1:2"
    )
    .is_err());
    assert!(parse_ready_line("ivrd ready sip_udp=127.0.0.1:1 metrics=127.0.0.1:2").is_err());
    assert!(parse_ready_line("starting up").is_err());
}

#[test]
fn metric_parser_matches_exact_label_sets() {
    let text = "# HELP ivrd_calls_total Calls by outcome\n# TYPE ivrd_calls_total counter\n\
                ivrd_calls_total{outcome=\"answered\"} 7\n\
                ivrd_calls_total{outcome=\"cancelled\"} 2\n\
                ivrd_rtp_packets_total{direction=\"in\"} 10 1700000000000\n\
                ivrd_rtp_packets_total{direction=\"out\"} 1.5e3\n\
                ivrd_call_answer_seconds_bucket{le=\"+Inf\"} 9\n\
                ivrd_call_answer_seconds_count 9\n\
                ivrd_odd{a=\"x y\",b=\"q\\\"uote\"} 3\n\
                ivrd_calls_active 0\n";
    assert_eq!(
        metric_value(text, "ivrd_calls_total{outcome=\"answered\"}"),
        Some(7.0)
    );
    assert_eq!(
        metric_value(text, "ivrd_calls_total"),
        None,
        "label set must match exactly"
    );
    assert_eq!(
        metric_value(text, "ivrd_rtp_packets_total{direction=\"in\"}"),
        Some(10.0)
    );
    assert_eq!(
        metric_value(text, "ivrd_rtp_packets_total{direction=\"out\"}"),
        Some(1500.0)
    );
    assert_eq!(
        metric_value(text, "ivrd_call_answer_seconds_count"),
        Some(9.0)
    );
    assert_eq!(
        metric_value(text, "ivrd_call_answer_seconds_bucket{le=\"+Inf\"}"),
        Some(9.0)
    );
    assert_eq!(
        metric_value(text, "ivrd_odd{b=\"q\\\"uote\",a=\"x y\"}"),
        Some(3.0)
    );
    assert_eq!(metric_value(text, "ivrd_calls_active"), Some(0.0));
    assert_eq!(metric_sum(text, "ivrd_calls_total", &[]), 9.0);
}

#[test]
fn sipp_trace_parser_reads_directions_timestamps_and_bodies() {
    let log = "----------------------------------------------- 2026-11-23 12:22:47.323304\n\
               UDP message sent (10 bytes):\n\nOPTIONS sip:a@b SIP/2.0\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n\n\n\
               ----------------------------------------------- 2026-11-23 12:22:48.000000\n\
               UDP message received [10] bytes :\n\nSIP/2.0 200 OK\r\nCSeq: 1 OPTIONS\r\nContent-Length: 3\r\n\r\nabc\n\n";
    let t = parse_trace(log);
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].dir, Direction::Sent);
    assert_eq!(t[1].dir, Direction::Received);
    assert_eq!(t[1].msg.body, "abc");
    assert!((t[1].at - t[0].at - 0.676696).abs() < 1e-6);
}

// ---------------------------------------------------------------------------------------
// Audio
// ---------------------------------------------------------------------------------------

#[test]
fn g711_codec_round_trips_every_code() {
    for code in 0..=255u8 {
        let u = audio::ulaw_decode(code);
        // 0x7F is µ-law's "negative zero", which encodes back as positive zero (0xFF).
        let want = if code == 0x7F { 0xFF } else { code };
        assert_eq!(audio::ulaw_encode(u), want, "µ-law code {code:#04x} -> {u}");
        let a = audio::alaw_decode(code);
        assert_eq!(audio::alaw_encode(a), code, "A-law code {code:#04x} -> {a}");
    }
    assert_eq!(audio::ulaw_decode(0xFF), 0);
    assert_eq!(audio::ulaw_decode(0x80), 32124);
    assert_eq!(audio::ulaw_decode(0x00), -32124);
    assert_eq!(audio::alaw_decode(0xD5), 8);
    assert_eq!(audio::alaw_decode(0xAA), 32256);
    assert_eq!(audio::alaw_decode(0x2A), -32256);
}

/// Our G.711 decoder agrees with sox's on real speech (sox encodes, both decode).
#[test]
fn g711_decoder_agrees_with_sox() {
    let dir = TempDir::new("g711-sox");
    let wav = dir.join("speech.wav");
    audio::espeak_wav("Testing one two three, the quick brown fox.", &wav);
    for (law, ext) in [(0u8, "ul"), (8u8, "al")] {
        let coded = dir.join(&format!("speech.{ext}"));
        let decoded = dir.join(&format!("speech-{ext}.raw"));
        let sox = |args: &[&std::ffi::OsStr]| {
            let st = Command::new("sox")
                .args(args)
                .stdout(Stdio::null())
                .status()
                .expect("run sox");
            assert!(st.success());
        };
        sox(&[
            wav.as_os_str(),
            "-r".as_ref(),
            "8000".as_ref(),
            coded.as_os_str(),
        ]);
        sox(&[
            "-r".as_ref(),
            "8000".as_ref(),
            "-c".as_ref(),
            "1".as_ref(),
            "-t".as_ref(),
            ext.as_ref(),
            coded.as_os_str(),
            "-t".as_ref(),
            "raw".as_ref(),
            "-e".as_ref(),
            "signed-integer".as_ref(),
            "-b".as_ref(),
            "16".as_ref(),
            "-L".as_ref(),
            decoded.as_os_str(),
        ]);
        let codes = std::fs::read(&coded).unwrap();
        let theirs: Vec<i16> = std::fs::read(&decoded)
            .unwrap()
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        let ours = audio::g711_decode(law, &codes);
        assert_eq!(ours.len(), theirs.len());
        let worst = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
            .max()
            .unwrap();
        assert!(worst <= 8, "law {law}: max difference to sox {worst}");
    }
}

/// The correlation search finds a phrase inside a longer stream at the right offset, and
/// does not mistake a different phrase for it.
#[test]
fn correlation_finds_embedded_phrase_and_rejects_another() {
    let dir = TempDir::new("corr");
    let phrase = |name: &str, text: &str| {
        let p = dir.join(name);
        audio::espeak_wav(text, &p);
        audio::load_8k(&p)
    };
    let a = phrase("a.wav", "Thank you for calling Example Networks.");
    let b = phrase("b.wav", "For billing, press 1. For support, press 2.");
    let c = phrase("c.wav", "Connecting you to a supervisor.");
    let lead = 5_555;
    let mut stream = vec![0i16; lead];
    stream.extend_from_slice(&a);
    stream.extend(std::iter::repeat_n(0, 1200));
    stream.extend_from_slice(&b);
    // Low-level noise, so silence is not exactly zero.
    for (i, s) in stream.iter_mut().enumerate() {
        *s = s.saturating_add(((i * 7919) % 61) as i16 - 30);
    }
    let m = audio::find_best_match(&a, &stream);
    assert!(m.ncc > 0.99, "{m:?}");
    assert_eq!(m.offset, lead);
    let wrong = audio::find_best_match(&c, &stream);
    assert!(wrong.ncc < 0.6, "unrelated phrase matched: {wrong:?}");
}

#[test]
fn timing_statistics_compute_spacing_percentiles_and_drift() {
    let t0 = Instant::now();
    // 101 packets, every 20 ms, but one late by 5 ms (and so the next early by 5 ms).
    let mut arrivals: Vec<Instant> = (0..101)
        .map(|i| t0 + Duration::from_millis(20 * i))
        .collect();
    arrivals[50] += Duration::from_millis(5);
    let t: Timing = audio::timing(&arrivals, Duration::from_millis(20));
    assert_eq!(t.packets, 101);
    assert!((t.mean_ms - 20.0).abs() < 1e-9);
    assert!((t.max_ms - 25.0).abs() < 1e-9 && (t.min_ms - 15.0).abs() < 1e-9);
    assert!(t.drift_ms.abs() < 1e-9);
    assert!((t.p99_abs_dev_ms - 5.0).abs() < 1e-9);

    // The last packet late by 6 ms is a delayed wake-up, not drift.
    arrivals[100] += Duration::from_millis(6);
    let t = audio::timing(&arrivals, Duration::from_millis(20));
    assert!(t.drift_ms.abs() < 1e-9, "{t:?}");

    // A sender 0.1 ms slow on every packet (sleeping relative to its last send) is 10 ms
    // behind after 100 packets: drift, between the first and last tenth about 9 ms.
    let slow: Vec<Instant> = (0..101)
        .map(|i| t0 + Duration::from_micros(20_100 * i))
        .collect();
    let t = audio::timing(&slow, Duration::from_millis(20));
    assert!((t.drift_ms - 9.0).abs() < 0.2, "{t:?}");
}

// ---------------------------------------------------------------------------------------
// The Rust caller against SIPp's UAS
// ---------------------------------------------------------------------------------------

/// SIPp's built-in UAS with RTP echo on loopback; returns (guard, SIP address).
fn sipp_uas_echo() -> (ChildGuard, SocketAddr) {
    let port = free_udp_port();
    let media = free_udp_port_block();
    let mut cmd = Command::new("sipp");
    cmd.args([
        "-sn",
        "uas",
        "-i",
        "127.0.0.1",
        "-bind_local",
        "-mi",
        "127.0.0.1",
        "-rtp_echo",
        "-nostdin",
    ])
    .args(["-p", &port.to_string(), "-mp", &media.to_string()])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let guard = ChildGuard::spawn(cmd, "sipp");
    wait_listening(port);
    (guard, localhost(port))
}

/// Runs one of tests/sipp/emulators/*.xml as a UAS for one call.
fn sipp_emulator(scenario: &str) -> (ChildGuard, SocketAddr, TempDir) {
    let dir = TempDir::new("emulator");
    let port = free_udp_port();
    let media = free_udp_port_block();
    let path = support::repo_root()
        .join("tests/sipp/emulators")
        .join(scenario);
    let mut cmd = Command::new("sipp");
    cmd.arg("-sf")
        .arg(&path)
        .args([
            "-i",
            "127.0.0.1",
            "-bind_local",
            "-mi",
            "127.0.0.1",
            "-nostdin",
            "-m",
            "1",
        ])
        .args(["-p", &port.to_string(), "-mp", &media.to_string()])
        .args(["-timeout", "60s", "-trace_err", "-trace_msg"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let guard = ChildGuard::spawn(cmd, "sipp");
    wait_listening(port);
    (guard, localhost(port), dir)
}

/// Waits until something is bound to the UDP port (SIPp takes a moment to start).
fn wait_listening(port: u16) {
    let ok = support::wait_for(Duration::from_secs(10), || {
        std::net::UdpSocket::bind(("127.0.0.1", port))
            .is_err()
            .then_some(())
    });
    assert!(
        ok.is_some(),
        "SIPp did not bind 127.0.0.1:{port} within 10 s"
    );
}

/// The caller places a call on SIPp's UAS, sends speech (resampled by a different
/// resampler than the reference) and RFC 4733 DTMF, and checks what SIPp echoes back:
/// this validates RTP pacing, our G.711 codec, the correlation threshold and the DTMF
/// packet layout against a peer we did not write.
#[test]
fn caller_round_trips_speech_and_dtmf_through_sipp_rtp_echo() {
    let (_uas, addr) = sipp_uas_echo();
    let greeting = support::sounds_dir().join("greeting.wav");
    let (rate, pcm) = audio::read_wav_pcm16(&greeting);
    let sent = audio::resample_linear(&pcm, rate, 8000);
    let caller = Caller::new(
        addr,
        CallerOpts {
            codecs: vec![0],
            audio: AudioSource::Samples(sent.clone().into()),
            // SIPp's UAS answers with PCMU only; it echoes whatever we send anyway.
            force_dtmf_pt: Some(101),
            ..CallerOpts::default()
        },
    );
    let ok = caller.invite(Duration::from_secs(5));
    assert_eq!(ok.status(), Some(200), "{}", caller.sip_trace());
    assert!(caller.time_to_status(200).unwrap() < Duration::from_secs(1));
    let speech_ms = sent.len() as u64 / 8;
    // The echo of all our speech and a little more, then the key and its echo.
    caller.wait_audio(None, Duration::from_millis(speech_ms + 600));
    let pressed = std::time::Instant::now();
    caller.send_dtmf("5", 100);
    caller.wait_audio(Some(pressed), Duration::from_millis(500));
    let bye = caller.bye(Duration::from_secs(5));
    assert_eq!(bye.status(), Some(200));

    let rtp = caller.rtp();
    for w in rtp.windows(2) {
        assert_eq!(
            w[1].seq,
            w[0].seq.wrapping_add(1),
            "one sequence across voice and events"
        );
    }
    // Voice before the digit (the digit's packets take sequence numbers and 100 ms).
    let voice: Vec<_> = rtp.iter().take_while(|p| p.pt == 0).collect();
    assert!(voice.len() > 100, "echo returned {} packets", voice.len());
    // SIPp echoes packets verbatim: these are our own sender's properties.
    assert!(voice[0].marker, "first packet carries the marker bit");
    for w in voice.windows(2) {
        assert_eq!(w[1].ssrc, w[0].ssrc);
        assert_eq!(
            w[1].ts,
            w[0].ts.wrapping_add(160),
            "timestamps +160 per packet"
        );
        assert_eq!(w[1].payload.len(), 160);
    }
    let decoded: Vec<i16> = voice
        .iter()
        .flat_map(|p| audio::g711_decode(0, &p.payload))
        .collect();
    let reference = audio::load_8k(&greeting);
    let m = audio::find_best_match(&reference, &decoded);
    eprintln!("echoed greeting vs sox reference: {m:?}");
    assert!(m.ncc >= 0.9, "correlation {m:?}");
    let arrivals: Vec<Instant> = voice.iter().map(|p| p.at).collect();
    let t = audio::timing(&arrivals, Duration::from_millis(20));
    eprintln!("echo timing: {t:?}");
    // Loose on purpose: SIPp's echo timing on a busy CI machine is not what is tested here.
    assert!(t.p99_abs_dev_ms <= 10.0, "{t:?}");
    assert!(t.drift_ms.abs() < 5.0, "{t:?}");

    // DTMF: growing durations, marker on the first, three end packets, one timestamp.
    let ev: Vec<_> = rtp.iter().filter(|p| p.pt == 101).collect();
    assert!(ev.len() >= 5 + 3, "{} event packets", ev.len());
    assert!(ev[0].marker);
    let fields: Vec<_> = ev.iter().map(|p| p.dtmf_event().unwrap()).collect();
    assert!(fields.iter().all(|f| f.0 == 5), "event code 5: {fields:?}");
    assert!(ev.iter().all(|p| p.ts == ev[0].ts));
    let ends: Vec<_> = fields.iter().filter(|f| f.1).collect();
    assert_eq!(ends.len(), 3, "{fields:?}");
    assert_eq!(ends[0].3, 800, "100 ms = 800 samples");
    let durations: Vec<u16> = fields.iter().filter(|f| !f.1).map(|f| f.3).collect();
    assert!(durations.windows(2).all(|w| w[1] > w[0]), "{durations:?}");
}

#[test]
fn caller_cancel_gets_200_and_487_from_emulator_and_acks() {
    let (mut uas, addr, _dir) = sipp_emulator("uas_cancel.xml");
    let caller = Caller::new(addr, CallerOpts::default());
    let invite = caller.send_invite();
    assert!(caller
        .wait_response(&invite, |s| s == 180, Duration::from_secs(5))
        .is_some());
    let cancel = caller.cancel();
    let c200 = caller
        .wait_final(&cancel, Duration::from_secs(5))
        .expect("200 to CANCEL");
    assert_eq!(c200.status(), Some(200));
    let fin = caller
        .wait_final(&invite, Duration::from_secs(5))
        .expect("487");
    assert_eq!(fin.status(), Some(487));
    let status = uas
        .wait_timeout(Duration::from_secs(10))
        .expect("emulator done");
    assert!(
        status.success(),
        "emulator saw a wrong ACK ({status})\n{}",
        caller.sip_trace()
    );
}

#[test]
fn caller_accepts_refer_with_notify_and_answers_bye() {
    let (mut uas, addr, _dir) = sipp_emulator("uas_refer.xml");
    let caller = Caller::new(
        addr,
        CallerOpts {
            refer: ReferPolicy::Accept {
                final_status: 200,
                notify_trying: false,
                notify_delay: Duration::from_millis(50),
            },
            ..CallerOpts::default()
        },
    );
    assert_eq!(caller.invite(Duration::from_secs(5)).status(), Some(200));
    let refer = caller
        .wait_request("REFER", 0, Duration::from_secs(10))
        .expect("REFER");
    assert_eq!(refer.msg.header("X-IVR-Intent"), Some("billing"));
    assert!(caller
        .wait_request("BYE", 0, Duration::from_secs(10))
        .is_some());
    let status = uas
        .wait_timeout(Duration::from_secs(10))
        .expect("emulator done");
    assert!(
        status.success(),
        "emulator rejected our 202/NOTIFY\n{}",
        caller.sip_trace()
    );
    let notify = caller
        .sip_log()
        .into_iter()
        .find(|e| e.dir == Dir::Sent && e.msg.method() == Some("NOTIFY"))
        .expect("NOTIFY sent");
    assert_eq!(notify.msg.body, "SIP/2.0 200 OK\r\n");
    assert_eq!(notify.msg.header("Event"), Some("refer"));
}

#[test]
fn caller_without_ack_sees_2xx_retransmissions_then_bye() {
    let (_uas, addr, _dir) = sipp_emulator("uas_no_ack.xml");
    let caller = Caller::new(
        addr,
        CallerOpts {
            auto_ack: false,
            ..CallerOpts::default()
        },
    );
    assert_eq!(caller.invite(Duration::from_secs(5)).status(), Some(200));
    assert!(caller
        .wait_request("BYE", 0, Duration::from_secs(15))
        .is_some());
    let retrans = caller
        .sip_log()
        .iter()
        .filter(|e| e.dir == Dir::Received && e.msg.status() == Some(200) && e.retransmission)
        .count();
    assert_eq!(retrans, 4, "{}", caller.sip_trace());
    assert!(
        !caller
            .sip_log()
            .iter()
            .any(|e| e.msg.method() == Some("ACK")),
        "no ACK may be sent"
    );
}

// ---------------------------------------------------------------------------------------
// The SIPp scenarios against SIPp peers
// ---------------------------------------------------------------------------------------

#[test]
fn sipp_basic_call_scenario_passes_against_sipp_uas() {
    let (_uas, addr) = sipp_uas_echo();
    let run = Sipp::new("basic_call.xml", addr)
        .calls(3)
        .rate(10.0)
        .timeout(Duration::from_secs(20))
        .run();
    run.assert_success();
    assert_eq!(
        run.sent()
            .filter(|t| t.msg.method() == Some("INVITE"))
            .count(),
        3
    );
    assert_eq!(
        run.received_responses(200, "BYE").count(),
        3,
        "{}",
        run.report()
    );
    let inv = run
        .sent()
        .find(|t| t.msg.method() == Some("INVITE"))
        .unwrap();
    let ok = run.received_responses(200, "INVITE").next().unwrap();
    assert!(ok.at >= inv.at && ok.at - inv.at < 1.0);
}

#[test]
fn sipp_long_call_scenario_holds_each_call_for_d_against_sipp_uas() {
    let (_uas, addr) = sipp_uas_echo();
    let run = Sipp::new("long_call.xml", addr)
        .calls(3)
        .rate(10.0)
        .arg("-d")
        .arg("1500")
        .timeout(Duration::from_secs(20))
        .run();
    run.assert_success();
    assert_eq!(
        run.received_responses(200, "BYE").count(),
        3,
        "{}",
        run.report()
    );
    // Each BYE leaves -d after its ACK.
    for ack in run.sent().filter(|t| t.msg.method() == Some("ACK")) {
        let bye = run
            .sent()
            .find(|t| t.msg.method() == Some("BYE") && t.msg.call_id() == ack.msg.call_id())
            .expect("BYE for every call");
        let held = bye.at - ack.at;
        assert!(
            (1.45..2.5).contains(&held),
            "call held {held:.3} s, -d 1500\n{}",
            run.report()
        );
    }
}

#[test]
fn sipp_options_scenario_passes_against_emulator() {
    let (_uas, addr, _dir) = sipp_emulator("uas_options.xml");
    Sipp::new("options.xml", addr)
        .timeout(Duration::from_secs(10))
        .run()
        .assert_success();
}

#[test]
fn sipp_cancel_scenario_passes_against_emulator() {
    let (_uas, addr, _dir) = sipp_emulator("uas_cancel.xml");
    let run = Sipp::new("cancel.xml", addr)
        .timeout(Duration::from_secs(10))
        .run();
    run.assert_success();
    assert_eq!(run.received_responses(487, "INVITE").count(), 1);
}

#[test]
fn sipp_dtmf_transfer_scenario_passes_against_emulator() {
    let (_uas, addr, _dir) = sipp_emulator("uas_refer.xml");
    let run = Sipp::new("dtmf_transfer.xml", addr)
        .timeout(Duration::from_secs(20))
        .run();
    run.assert_success();
    let refer = run.received_requests("REFER").next().expect("REFER traced");
    assert_eq!(
        refer.msg.header("X-IVR-Node"),
        Some("greet,main_menu,billing")
    );
}

#[test]
fn sipp_dtmf_transfer_scenario_fails_on_wrong_intent_header() {
    // The ereg checks must really fail the call: run against an emulator whose REFER says
    // "support" (a copy of uas_refer.xml edited on the fly).
    let dir = TempDir::new("bad-emulator");
    let text =
        std::fs::read_to_string(support::repo_root().join("tests/sipp/emulators/uas_refer.xml"))
            .unwrap();
    let bad = text.replace("X-IVR-Intent: billing", "X-IVR-Intent: support");
    assert_ne!(bad, text);
    let path = dir.join("uas_refer_bad.xml");
    std::fs::write(&path, bad).unwrap();
    let port = free_udp_port();
    let mut cmd = Command::new("sipp");
    cmd.arg("-sf")
        .arg(&path)
        .args([
            "-i",
            "127.0.0.1",
            "-bind_local",
            "-mi",
            "127.0.0.1",
            "-nostdin",
            "-m",
            "1",
            "-timeout",
            "30s",
        ])
        .args([
            "-p",
            &port.to_string(),
            "-mp",
            &free_udp_port_block().to_string(),
        ])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _uas = ChildGuard::spawn(cmd, "sipp");
    wait_listening(port);
    let run = Sipp::new("dtmf_transfer.xml", localhost(port))
        .timeout(Duration::from_secs(20))
        .run();
    assert_eq!(run.code, Some(1), "{}", run.report());
    assert!(
        run.errors_log.contains("X-IVR") || run.errors_log.contains("regexp"),
        "{}",
        run.errors_log
    );
}

#[test]
fn sipp_no_ack_scenario_passes_against_emulator_and_trace_shows_retransmissions() {
    let (_uas, addr, _dir) = sipp_emulator("uas_no_ack.xml");
    let run = Sipp::new("no_ack.xml", addr)
        .timeout(Duration::from_secs(20))
        .run();
    run.assert_success();
    let oks: Vec<f64> = run
        .received_responses(200, "INVITE")
        .map(|t| t.at)
        .collect();
    assert_eq!(oks.len(), 5, "{}", run.report());
    let gaps: Vec<f64> = oks.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, want) in gaps.iter().zip([0.5, 1.0, 2.0, 4.0]) {
        assert!((gap - want).abs() < 0.15, "gaps {gaps:?}");
    }
    assert!(!run.sent().any(|t| t.msg.method() == Some("ACK")));
}
