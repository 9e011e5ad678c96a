//! DTMF key presses from the two places phones send them: RFC 4733 telephone-events in
//! the RTP stream (the common case) and SIP INFO requests (older PBXs and some SBCs).
//!
//! An RFC 4733 key press arrives as a burst of packets that all carry the same RTP
//! timestamp (the moment the key went down): a first packet as soon as the tone starts,
//! updates every 20-50 ms with a growing duration, and finally three identical "end"
//! packets for robustness. The receiver below turns such a burst into exactly one digit.

/// The character for a DTMF event code (RFC 4733 section 3.2): 0-9, 10 = `*`, 11 = `#`,
/// 12-15 = `A`-`D`. Other codes (flash, fax and modem tones) are not key presses.
pub fn event_char(code: u8) -> Option<char> {
    match code {
        0..=9 => Some(char::from(b'0' + code)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + (code - 12))),
        _ => None,
    }
}

/// The RFC 4733 event code of a key (the inverse of [`event_char`]).
pub fn event_code(key: char) -> Option<u8> {
    match key {
        '0'..='9' => Some(key as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(key as u8 - b'A' + 12),
        _ => None,
    }
}

/// A telephone-event payload (RFC 4733 section 2.3): the event, the end bit, volume 10
/// (-10 dBm0), and the duration so far in 8 kHz samples.
pub fn event_payload(code: u8, end: bool, duration: u16) -> [u8; 4] {
    let d = duration.to_be_bytes();
    [code, if end { END_BIT | 10 } else { 10 }, d[0], d[1]]
}

/// How many recent event timestamps are remembered to recognise late retransmissions of
/// an event after a newer one has started (e.g. an end packet reordered behind the next
/// key press). Eight covers any plausible reordering window.
const RECENT_EVENTS: usize = 8;

/// The E (end of event) bit in the second byte of a telephone-event payload.
const END_BIT: u8 = 0x80;

/// Turns the RFC 4733 packets of one call into key presses, each reported exactly once.
///
/// An event is identified by its RTP timestamp. The digit is reported on the first
/// packet seen for a new timestamp, without waiting for the end packet, so a key press can
/// interrupt a prompt immediately. Further packets of that event (updates, the redundant
/// end packets, retransmissions) are ignored. A different timestamp is a new press, even
/// for the same key. Payloads that are too short or carry a non-DTMF code are ignored.
///
/// Feed it only packets whose payload type is the negotiated `telephone-event` type.
#[derive(Debug, Clone, Default)]
pub struct Rfc4733Receiver {
    /// Timestamps of the most recent events, newest last.
    recent: Vec<u32>,
    /// The most recent event, to recognise the continuation segments of a long press.
    last: Option<LastEvent>,
}

#[derive(Debug, Clone, Copy)]
struct LastEvent {
    timestamp: u32,
    code: u8,
    /// The longest duration seen for this event, in RTP timestamp units.
    duration: u16,
    ended: bool,
}

impl Rfc4733Receiver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Processes one telephone-event payload and returns the key if this packet starts a
    /// new press.
    pub fn on_packet(&mut self, rtp_timestamp: u32, payload: &[u8]) -> Option<char> {
        // Payload: event code (8 bits), E|R|volume (8 bits), duration (16 bits).
        let &[code, flags, dur_hi, dur_lo, ..] = payload else {
            return None;
        };
        let digit = event_char(code)?;
        let duration = u16::from_be_bytes([dur_hi, dur_lo]);
        let ended = flags & END_BIT != 0;

        if let Some(last) = self.last.as_mut() {
            if last.timestamp == rtp_timestamp {
                last.duration = last.duration.max(duration);
                last.ended |= ended;
                return None;
            }
        }
        if self.recent.contains(&rtp_timestamp) {
            // A late packet of an older event.
            return None;
        }

        let continues_long_press = self
            .last
            .is_some_and(|last| last.continued_by(rtp_timestamp, code));
        self.remember(LastEvent {
            timestamp: rtp_timestamp,
            code,
            duration,
            ended,
        });
        if continues_long_press {
            None
        } else {
            Some(digit)
        }
    }

    fn remember(&mut self, event: LastEvent) {
        if self.recent.len() == RECENT_EVENTS {
            self.recent.remove(0);
        }
        self.recent.push(event.timestamp);
        self.last = Some(event);
    }
}

impl LastEvent {
    /// RFC 4733 "long-duration events": the 16-bit duration covers at most about 8 s at
    /// 8 kHz. A longer press is sent as consecutive segments; each new segment has a new
    /// timestamp (where the previous segment's duration ran out) but is still the same
    /// press. Recognise that: same code, the previous segment never ended and reached
    /// (nearly) the maximum duration, and the new timestamp follows right after it.
    fn continued_by(&self, timestamp: u32, code: u8) -> bool {
        // Allowance for a sender that ends a segment slightly before 0xFFFF and for
        // senders whose packet spacing leaves the last update short of the segment end.
        const SLACK: u32 = 1600; // 200 ms at 8 kHz
        let gap = timestamp.wrapping_sub(self.timestamp);
        code == self.code
            && !self.ended
            && u32::from(self.duration) + SLACK >= u32::from(u16::MAX)
            && gap > 0
            && gap <= u32::from(self.duration) + SLACK
    }
}

/// Parses the body of a SIP INFO carrying a key press:
/// - `application/dtmf-relay`: lines like `Signal=5` and `Duration=160`, the key
///   case-insensitive and spaces allowed around `=` (`Signal= *`); some devices send
///   the event code (`Signal=10` for `*`) instead of the character;
/// - `application/dtmf`: the body is the key itself (`5`).
///
/// Content-type parameters (`; charset=...`) are ignored. Returns `None` for other content
/// types and for bodies that name no valid key.
pub fn parse_info(content_type: &str, body: &[u8]) -> Option<char> {
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    let body = std::str::from_utf8(body).ok()?;
    if media_type.eq_ignore_ascii_case("application/dtmf-relay") {
        body.lines().find_map(|line| {
            let (key, value) = line.split_once('=')?;
            if key.trim().eq_ignore_ascii_case("signal") {
                parse_key(value)
            } else {
                None
            }
        })
    } else if media_type.eq_ignore_ascii_case("application/dtmf") {
        parse_key(body)
    } else {
        None
    }
}

/// One key: `0`-`9`, `*`, `#`, `A`-`D` (either case), or an RFC 4733 event code 10-15.
fn parse_key(text: &str) -> Option<char> {
    let text = text.trim();
    let mut chars = text.chars();
    let (Some(c), None) = (chars.next(), chars.next()) else {
        // More than one character: only the two-digit event codes are accepted.
        return match text {
            "10" | "11" | "12" | "13" | "14" | "15" => event_char(text.parse().ok()?),
            _ => None,
        };
    };
    match c.to_ascii_uppercase() {
        c @ ('0'..='9' | '*' | '#' | 'A'..='D') => Some(c),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp;

    fn event(code: u8, end: bool, duration: u16) -> [u8; 4] {
        let [hi, lo] = duration.to_be_bytes();
        [code, if end { 0x80 | 10 } else { 10 }, hi, lo]
    }

    /// What a phone sends for one press: the first packet at once, updates with growing
    /// duration, then the end packet three times, all with the press's timestamp.
    fn press(code: u8, timestamp: u32) -> Vec<(u32, [u8; 4])> {
        let mut packets: Vec<_> = (0..6)
            .map(|i| (timestamp, event(code, false, i * 400)))
            .collect();
        packets.extend([(timestamp, event(code, true, 2400)); 3]);
        packets
    }

    fn feed(rx: &mut Rfc4733Receiver, packets: &[(u32, [u8; 4])]) -> String {
        packets
            .iter()
            .filter_map(|(ts, payload)| rx.on_packet(*ts, payload))
            .collect()
    }

    #[test]
    fn event_codes() {
        let all: String = (0..=15).filter_map(event_char).collect();
        assert_eq!(all, "0123456789*#ABCD");
        assert_eq!(event_char(16), None);
        assert_eq!(event_char(255), None);
    }

    #[test]
    fn one_press_gives_one_digit_on_the_first_packet() {
        let mut rx = Rfc4733Receiver::new();
        let packets = press(5, 1000);
        assert_eq!(rx.on_packet(packets[0].0, &packets[0].1), Some('5'));
        assert_eq!(feed(&mut rx, &packets[1..]), "");
        // A retransmission of the whole burst is still the same press.
        assert_eq!(feed(&mut rx, &packets), "");
    }

    #[test]
    fn two_presses_of_the_same_key_are_two_digits() {
        let mut rx = Rfc4733Receiver::new();
        let mut packets = press(1, 8000);
        packets.extend(press(1, 12000));
        packets.extend(press(11, 16000));
        assert_eq!(feed(&mut rx, &packets), "11#");
    }

    #[test]
    fn lost_start_still_gives_one_digit() {
        let mut rx = Rfc4733Receiver::new();
        let packets = press(9, 4242);
        assert_eq!(feed(&mut rx, &packets[6..]), "9");
    }

    #[test]
    fn late_packets_of_an_older_event_are_ignored() {
        let mut rx = Rfc4733Receiver::new();
        let first = press(2, 100);
        let second = press(3, 4100);
        assert_eq!(feed(&mut rx, &first[..7]), "2");
        assert_eq!(feed(&mut rx, &second[..2]), "3");
        // The other two end packets of the first press arrive after the second began.
        assert_eq!(feed(&mut rx, &first[7..]), "");
        assert_eq!(feed(&mut rx, &second[2..]), "");
    }

    #[test]
    fn timestamps_wrap() {
        let mut rx = Rfc4733Receiver::new();
        let mut packets = press(4, u32::MAX - 100);
        packets.extend(press(4, 3000));
        assert_eq!(feed(&mut rx, &packets), "44");
    }

    #[test]
    fn malformed_payloads_are_ignored() {
        let mut rx = Rfc4733Receiver::new();
        assert_eq!(rx.on_packet(1, &[]), None);
        assert_eq!(rx.on_packet(1, &[5, 0x80, 0]), None);
        // Flash (16) and a fax tone (36) are events but not keys.
        assert_eq!(rx.on_packet(2, &[16, 0x80, 0, 160]), None);
        assert_eq!(rx.on_packet(3, &[36, 0, 0, 160]), None);
        // Extra bytes (e.g. a second redundant event block) do not hide the first.
        assert_eq!(rx.on_packet(4, &[7, 0, 0, 160, 0xFF, 0xFF]), Some('7'));
    }

    #[test]
    fn long_press_segments_are_one_press() {
        let mut rx = Rfc4733Receiver::new();
        let start = 50_000u32;
        assert_eq!(rx.on_packet(start, &event(0, false, 0)), Some('0'));
        assert_eq!(rx.on_packet(start, &event(0, false, 0xFFFF)), None);
        // Next segment starts where the first ran out.
        let next = start + 0xFFFF;
        assert_eq!(rx.on_packet(next, &event(0, false, 400)), None);
        assert_eq!(rx.on_packet(next, &event(0, true, 800)), None);
        // A genuinely new press afterwards is reported.
        assert_eq!(rx.on_packet(next + 8000, &event(0, false, 0)), Some('0'));
    }

    #[test]
    fn info_bodies() {
        let relay = "application/dtmf-relay";
        assert_eq!(
            parse_info(relay, b"Signal=5\r\nDuration=160\r\n"),
            Some('5')
        );
        assert_eq!(
            parse_info(relay, b"Signal= *\r\nDuration= 250\r\n"),
            Some('*')
        );
        assert_eq!(parse_info(relay, b"signal = #\nduration=100"), Some('#'));
        assert_eq!(
            parse_info(relay, b"Duration=160\r\nSIGNAL=d\r\n"),
            Some('D')
        );
        assert_eq!(parse_info(relay, b"Signal=10\r\n"), Some('*'));
        assert_eq!(parse_info(relay, b"Signal=11"), Some('#'));
        assert_eq!(
            parse_info("Application/DTMF-Relay; charset=utf-8", b"Signal=0"),
            Some('0')
        );
        assert_eq!(parse_info("application/dtmf", b"5"), Some('5'));
        assert_eq!(parse_info("application/dtmf", b" 7\r\n"), Some('7'));
        assert_eq!(parse_info("APPLICATION/DTMF", b"a"), Some('A'));

        assert_eq!(parse_info(relay, b"Signal=\r\n"), None);
        assert_eq!(parse_info(relay, b"Signal=E"), None);
        assert_eq!(parse_info(relay, b"Signal=16"), None);
        assert_eq!(parse_info(relay, b"Signal=55"), None);
        assert_eq!(parse_info(relay, b"Duration=160"), None);
        assert_eq!(parse_info(relay, b""), None);
        assert_eq!(parse_info(relay, b"Signal=\xFF"), None);
        assert_eq!(parse_info("application/dtmf", b"12"), Some('A'));
        assert_eq!(parse_info("application/dtmf", b""), None);
        assert_eq!(parse_info("text/plain", b"Signal=5"), None);
        assert_eq!(parse_info("application/sdp", b"5"), None);
        assert_eq!(parse_info("", b"5"), None);
    }

    /// Reads the RTP payloads (UDP over IPv4 over Ethernet) out of a classic
    /// little- or big-endian pcap file; anything else in the capture is skipped.
    fn pcap_udp_payloads(data: &[u8]) -> Vec<&[u8]> {
        let u16_be = |b: &[u8], at: usize| usize::from(u16::from_be_bytes([b[at], b[at + 1]]));
        let magic = &data[..4];
        let little_endian = match magic {
            [0xD4, 0xC3, 0xB2, 0xA1] | [0x4D, 0x3C, 0xB2, 0xA1] => true,
            [0xA1, 0xB2, 0xC3, 0xD4] | [0xA1, 0xB2, 0x3C, 0x4D] => false,
            _ => panic!("not a pcap file"),
        };
        let u32_at = |at: usize| {
            let b = [data[at], data[at + 1], data[at + 2], data[at + 3]];
            (if little_endian {
                u32::from_le_bytes(b)
            } else {
                u32::from_be_bytes(b)
            }) as usize
        };
        assert_eq!(u32_at(20), 1, "link type must be Ethernet");

        let mut payloads = Vec::new();
        let mut at = 24;
        while at + 16 <= data.len() {
            let captured = u32_at(at + 8);
            let frame = &data[at + 16..at + 16 + captured];
            at += 16 + captured;

            // Ethernet: 14 bytes, EtherType IPv4.
            if frame.len() < 14 || u16_be(frame, 12) != 0x0800 {
                continue;
            }
            let ip = &frame[14..];
            let ihl = usize::from(ip[0] & 0x0F) * 4;
            if ip[0] >> 4 != 4 || ip[9] != 17 {
                continue; // not IPv4/UDP
            }
            let total = u16_be(ip, 2);
            let udp = &ip[ihl..total];
            let udp_len = u16_be(udp, 4);
            payloads.push(&udp[8..udp_len]);
        }
        payloads
    }

    /// The RFC 2833 captures SIPp ships (one press each) replayed through the RTP parser
    /// and the receiver. These are real phone traffic: PT 101, marker on the first
    /// packet, 7 updates then the end packet three times with the same sequence number.
    #[test]
    fn sipp_captures_give_one_digit_each() {
        let dir = std::path::Path::new("/usr/share/sip-tester");
        let files = [
            ("dtmf_2833_0.pcap", "0"),
            ("dtmf_2833_1.pcap", "1"),
            ("dtmf_2833_2.pcap", "2"),
            ("dtmf_2833_3.pcap", "3"),
            ("dtmf_2833_4.pcap", "4"),
            ("dtmf_2833_5.pcap", "5"),
            ("dtmf_2833_6.pcap", "6"),
            ("dtmf_2833_7.pcap", "7"),
            ("dtmf_2833_8.pcap", "8"),
            ("dtmf_2833_9.pcap", "9"),
            ("dtmf_2833_star.pcap", "*"),
            ("dtmf_2833_pound.pcap", "#"),
        ];
        for (name, expected) in files {
            let path = dir.join(name);
            let Ok(data) = std::fs::read(&path) else {
                eprintln!(
                    "note: {} not found (install the sip-tester package); skipping",
                    path.display()
                );
                continue;
            };
            let mut rx = Rfc4733Receiver::new();
            let mut digits = String::new();
            let packets = pcap_udp_payloads(&data);
            assert_eq!(packets.len(), 10, "{name}");
            for datagram in packets {
                let packet = rtp::parse(datagram).expect("capture holds valid RTP");
                assert_eq!(packet.payload_type, 101, "{name}");
                digits.extend(rx.on_packet(packet.timestamp, packet.payload));
            }
            assert_eq!(digits, expected, "{name}");
        }
    }
}
