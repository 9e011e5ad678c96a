use super::*;
use crate::sip::guard::{inspect, Policy, Verdict, DEFAULT_MAX_MESSAGE_BYTES};

const INVITE: &str = "INVITE sip:support@10.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKp1\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKa1;rport\r\n\
Record-Route: <sip:10.0.0.2;lr;ftag=f1>\r\n\
Record-Route: <sip:edge.example.com;lr>, <sip:10.9.9.9:5070;lr>\r\n\
From: \"Ann\" <sip:ann@example.com>;tag=f1\r\nTo: <sip:support@example.com>\r\n\
Call-ID: c1@127.0.0.1\r\nCSeq: 7 INVITE\r\nContact: <sip:ann@127.0.0.1:5061;transport=udp>\r\n\
Max-Forwards: 69\r\nContent-Length: 0\r\n\r\n";

fn msg(text: &str) -> Message<'_> {
    Message::read(text.as_bytes())
}

fn local() -> Local {
    Local {
        transport: "UDP",
        sent_by: "10.0.0.1:5060".into(),
        contact: "sip:ivr@10.0.0.1:5060".into(),
    }
}

fn dialog(invite: &str) -> Dialog {
    Dialog::new(&msg(invite), "ours", local(), 1).unwrap()
}

/// Where INVITE came from: its top Via's sent-by, so the Via goes back as it came.
fn src() -> SocketAddr {
    "10.0.0.2:5060".parse().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The guard (strict RFC 3261 syntax) lets it through: what we send is well formed.
fn assert_well_formed(bytes: &[u8]) {
    let policy = Policy::new(DEFAULT_MAX_MESSAGE_BYTES);
    match inspect(bytes, &policy) {
        Verdict::Pass(_) => {}
        other => panic!("not well formed: {other:?}\n{}", text(bytes)),
    }
}

#[test]
fn ringing_and_the_answer_carry_our_tag_the_record_route_and_our_contact() {
    let d = dialog(INVITE);
    let invite = msg(INVITE);
    assert_eq!(
        d.id(),
        &DialogId {
            call_id: "c1@127.0.0.1".into(),
            local_tag: "ours".into(),
            remote_tag: "f1".into(),
        }
    );
    let ringing = text(&d.response(&invite, src(), (180, "Ringing"), &[], None));
    assert!(ringing.starts_with("SIP/2.0 180 Ringing\r\n"), "{ringing}");
    assert!(ringing.contains("\r\nTo: <sip:support@example.com>;tag=ours\r\n"));
    assert!(ringing.contains(
        "Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKp1\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKa1;rport\r\n"
    ));
    assert!(ringing.contains(
        "Record-Route: <sip:10.0.0.2;lr;ftag=f1>\r\nRecord-Route: <sip:edge.example.com;lr>, <sip:10.9.9.9:5070;lr>\r\n"
    ));
    assert!(ringing.contains("Contact: <sip:ivr@10.0.0.1:5060>\r\n"));
    assert!(ringing.ends_with("Content-Length: 0\r\n\r\n"));
    // (The guard would drop it only for its two Vias: a response *to us* has one.)
    assert_eq!(msg(&ringing).problem, None);

    let sdp = b"v=0\r\n";
    let body = Body {
        content_type: "application/sdp",
        bytes: sdp,
    };
    let ok = text(&d.response(
        &invite,
        src(),
        (200, "OK"),
        &[("Allow", "INVITE, ACK, BYE")],
        Some(body),
    ));
    assert!(ok.contains("Allow: INVITE, ACK, BYE\r\nContent-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n"), "{ok}");

    // A refusal or a 100 opens nothing: no Record-Route, no Contact.
    for status in [(100, "Trying"), (486, "Busy Here")] {
        let r = text(&d.response(&invite, src(), status, &[], None));
        assert!(!r.contains("Record-Route") && !r.contains("Contact"), "{r}");
    }
}

#[test]
fn the_top_via_goes_back_with_where_the_invite_was_seen_from() {
    let d = dialog(INVITE);
    let nat: SocketAddr = "192.0.2.7:40000".parse().unwrap();
    let r = text(&d.response(&msg(INVITE), nat, (180, "Ringing"), &[], None));
    assert!(
        r.contains(
            "Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKp1;received=192.0.2.7\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKa1;rport\r\n"
        ),
        "{r}"
    );
}

#[test]
fn our_bye_follows_the_route_set_to_the_peers_contact_with_the_next_cseq() {
    let mut d = dialog(INVITE);
    let bye = d.request("BYE", "b1", &[], None);
    let t = text(&bye.bytes);
    assert!(
        t.starts_with("BYE sip:ann@127.0.0.1:5061;transport=udp SIP/2.0\r\n"),
        "{t}"
    );
    assert!(
        t.contains("Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKb1;rport\r\nMax-Forwards: 70\r\n")
    );
    assert!(t.contains(
        "Route: <sip:10.0.0.2;lr;ftag=f1>\r\nRoute: <sip:edge.example.com;lr>\r\nRoute: <sip:10.9.9.9:5070;lr>\r\n"
    ));
    assert!(t.contains("From: <sip:support@example.com>;tag=ours\r\n"));
    assert!(t.contains("To: \"Ann\" <sip:ann@example.com>;tag=f1\r\n"));
    assert!(t.contains("Call-ID: c1@127.0.0.1\r\nCSeq: 1 BYE\r\n"));
    assert!(!t.contains("Contact:"), "a BYE refreshes nothing");
    assert_eq!(bye.next_hop, "sip:10.0.0.2;lr;ftag=f1");
    assert_eq!(bye.cseq, 1);
    assert_well_formed(&bye.bytes);

    let refer = d.request("REFER", "r1", &[("Refer-To", "<sip:agent@10.0.0.5>")], None);
    assert_eq!(refer.cseq, 2);
    let t = text(&refer.bytes);
    assert!(t.contains("CSeq: 2 REFER\r\nContact: <sip:ivr@10.0.0.1:5060>\r\nRefer-To: <sip:agent@10.0.0.5>\r\n"), "{t}");
    assert_well_formed(&refer.bytes);

    // The peer's answer to our request names the same dialog.
    let answer = t.replace(
        "REFER sip:ann@127.0.0.1:5061;transport=udp SIP/2.0",
        "SIP/2.0 202 Accepted",
    );
    assert_eq!(DialogId::of_response(&msg(&answer)).as_ref(), Some(d.id()));
}

#[test]
fn without_a_route_set_requests_go_to_the_contact_and_a_strict_router_gets_the_uri() {
    let direct = INVITE
        .replace("Record-Route: <sip:10.0.0.2;lr;ftag=f1>\r\n", "")
        .replace(
            "Record-Route: <sip:edge.example.com;lr>, <sip:10.9.9.9:5070;lr>\r\n",
            "",
        );
    let mut d = dialog(&direct);
    let bye = d.request("BYE", "b", &[], None);
    assert_eq!(bye.next_hop, "sip:ann@127.0.0.1:5061;transport=udp");
    assert!(!text(&bye.bytes).contains("Route:"));

    // §12.2.1.1: a strict router (no lr) takes the Request-URI; the target goes last.
    let strict = direct.replace(
        "Contact:",
        "Record-Route: <sip:old.example.com>, <sip:10.0.0.2;lr>\r\nContact:",
    );
    let mut d = dialog(&strict);
    let bye = d.request("BYE", "b", &[], None);
    let t = text(&bye.bytes);
    assert!(t.starts_with("BYE sip:old.example.com SIP/2.0\r\n"), "{t}");
    assert!(
        t.contains("Route: <sip:10.0.0.2;lr>\r\nRoute: <sip:ann@127.0.0.1:5061;transport=udp>\r\n")
    );
    assert_eq!(bye.next_hop, "sip:old.example.com");
}

#[test]
fn requests_inside_the_dialog_must_keep_their_cseq_order_and_a_reinvite_moves_the_target() {
    let mut d = dialog(INVITE);
    let in_dialog = |method: &str, cseq: u32, extra: &str| {
        format!(
            "{method} sip:ivr@10.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK{method}{cseq}\r\n\
From: <sip:ann@example.com>;tag=f1\r\nTo: <sip:support@example.com>;tag=ours\r\nCall-ID: c1@127.0.0.1\r\n\
CSeq: {cseq} {method}\r\n{extra}Content-Length: 0\r\n\r\n"
        )
    };
    let ack = in_dialog("ACK", 7, "");
    assert_eq!(DialogId::of_request(&msg(&ack)).as_ref(), Some(d.id()));
    assert_eq!(d.check_request(&msg(&ack)), Ok(()));
    assert_eq!(d.check_request(&msg(&in_dialog("INFO", 8, ""))), Ok(()));
    assert_eq!(
        d.check_request(&msg(&in_dialog("INFO", 6, ""))),
        Err(Refused {
            code: 500,
            phrase: "Server Internal Error"
        })
    );
    let reinvite = in_dialog("INVITE", 9, "Contact: <sip:ann@192.0.2.7:5099>\r\n");
    assert_eq!(d.check_request(&msg(&reinvite)), Ok(()));
    assert_eq!(d.remote_target(), "sip:ann@192.0.2.7:5099");
    // A BYE with no Contact moves nothing; the next BYE of ours goes to the new target.
    assert_eq!(d.check_request(&msg(&in_dialog("BYE", 10, ""))), Ok(()));
    let ours = text(&d.request("BYE", "x", &[], None).bytes);
    assert!(
        ours.starts_with("BYE sip:ann@192.0.2.7:5099 SIP/2.0"),
        "{ours}"
    );
    // A request outside any dialog names none.
    assert_eq!(DialogId::of_request(&msg(INVITE)), None);
}

#[test]
fn a_peer_without_contact_is_reached_at_its_from_address() {
    let no_contact = INVITE.replace("Contact: <sip:ann@127.0.0.1:5061;transport=udp>\r\n", "");
    let d = dialog(&no_contact);
    assert_eq!(d.remote_target(), "sip:ann@example.com");
    assert!(Dialog::new(&msg("INVITE sip:x@y SIP/2.0\r\n\r\n"), "t", local(), 1).is_err());
}

#[test]
fn a_response_outside_a_dialog_echoes_the_request_with_our_tag() {
    let options = "OPTIONS sip:ivr@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKo\r\n\
From: <sip:kamailio@10.0.0.2>;tag=k\r\nTo: <sip:ivr@10.0.0.1>\r\nCall-ID: o1\r\nCSeq: 3 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let r = text(&response(
        &msg(options),
        Some(src()),
        "t9",
        (503, "Service Unavailable"),
        None,
        &[("Retry-After", "30")],
        None,
    ));
    assert!(r.starts_with(
        "SIP/2.0 503 Service Unavailable\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKo\r\n"
    ));
    assert!(r.contains("To: <sip:ivr@10.0.0.1>;tag=t9\r\nCall-ID: o1\r\nCSeq: 3 OPTIONS\r\nRetry-After: 30\r\nContent-Length: 0\r\n\r\n"), "{r}");
}

#[test]
fn a_uri_names_its_host_port_and_transport() {
    let h = |u| hop(u);
    assert_eq!(
        h("sip:ann@127.0.0.1:5062;transport=tcp;lr"),
        Some(Hop {
            host: "127.0.0.1",
            port: 5062,
            transport: "tcp"
        })
    );
    assert_eq!(
        h("sip:[::1]:5070"),
        Some(Hop {
            host: "::1",
            port: 5070,
            transport: "udp"
        })
    );
    assert_eq!(h("sip:edge.example.com;lr").map(|h| h.port), Some(5060));
    assert_eq!(
        h("sips:a:secret@b.example.com").map(|h| (h.host, h.port, h.transport)),
        Some(("b.example.com", 5061, "tls"))
    );
    assert_eq!(
        h("sip:a@b.example.com?subject=x").map(|h| h.host),
        Some("b.example.com")
    );
    for bad in [
        "tel:+15551234",
        "sip:",
        "sip:a@host:0",
        "sip:a@host:99999",
        "sip:[::1",
    ] {
        assert_eq!(h(bad), None, "{bad}");
    }
    assert!(uri_param("sip:10.0.0.2;LR", "lr"));
    assert!(!uri_param("sip:10.0.0.2?x=lr", "lr"));
}
