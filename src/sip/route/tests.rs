use super::*;
use crate::sip::txn::{Reliability, Timers};
use crate::sip::uas::Local;

const INVITE: &str = "INVITE sip:support@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKr1\r\n\
From: <sip:ann@127.0.0.1>;tag=f1\r\nTo: <sip:support@127.0.0.1>\r\n\
Call-ID: r1\r\nCSeq: 1 INVITE\r\nContact: <sip:ann@127.0.0.1:5061>\r\nContent-Length: 0\r\n\r\n";

fn leg() -> Leg {
    let local = Local {
        transport: "UDP",
        sent_by: "127.0.0.1:5060".into(),
        contact: "sip:ivr@127.0.0.1:5060".into(),
    };
    let from = "127.0.0.1:5061".parse().unwrap();
    Leg::new(
        INVITE.as_bytes().to_vec(),
        from,
        "us",
        local,
        1,
        Timers::default(),
        Reliability::Unreliable,
    )
    .unwrap()
}

fn route(routes: &Routes<&'static str>, text: &str) -> Destination<&'static str> {
    routes.route(&Message::read(text.as_bytes()))
}

/// A request inside the dialog, from the peer, with `to_tag` as our tag.
fn in_dialog(method: &str, to_tag: &str) -> String {
    format!(
        "{method} sip:ivr@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK{method}\r\n\
From: <sip:ann@127.0.0.1>;tag=f1\r\nTo: <sip:support@127.0.0.1>;tag={to_tag}\r\nCall-ID: r1\r\n\
CSeq: 2 {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn a_calls_messages_reach_it_and_a_new_invite_starts_a_call() {
    let mut routes = Routes::default();
    assert_eq!(route(&routes, INVITE), Destination::NewCall);
    let leg = leg();
    routes.add(&leg, "call r1");
    assert_eq!(routes.len(), 1);
    // The INVITE again, and its CANCEL (same branch, no To tag).
    assert_eq!(route(&routes, INVITE), Destination::Leg("call r1"));
    let cancel = INVITE
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("1 INVITE", "1 CANCEL");
    assert_eq!(route(&routes, &cancel), Destination::Leg("call r1"));
    // Inside the dialog: ACK, BYE, re-INVITE.
    for method in ["ACK", "BYE", "INVITE", "INFO"] {
        assert_eq!(
            route(&routes, &in_dialog(method, "us")),
            Destination::Leg("call r1"),
            "{method}"
        );
    }
    // The answer to our BYE: our tag in From.
    let ok = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKours\r\n\
From: <sip:support@127.0.0.1>;tag=us\r\nTo: <sip:ann@127.0.0.1>;tag=f1\r\nCall-ID: r1\r\nCSeq: 1 BYE\r\n\r\n";
    assert_eq!(route(&routes, ok), Destination::Leg("call r1"));

    routes.remove(&leg);
    assert!(routes.is_empty());
    assert_eq!(
        route(&routes, &in_dialog("BYE", "us")),
        Destination::Elsewhere
    );
}

#[test]
fn what_is_not_a_calls_goes_elsewhere() {
    let mut routes = Routes::default();
    routes.add(&leg(), "call r1");
    // Another dialog (an agent's leg ivrd placed through rsipstack), a CANCEL of an unknown
    // INVITE, out-of-dialog OPTIONS and REGISTER, a response to someone else's request.
    assert_eq!(
        route(&routes, &in_dialog("BYE", "someone-else")),
        Destination::Elsewhere
    );
    let stray_cancel = INVITE
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("1 INVITE", "1 CANCEL")
        .replace("z9hG4bKr1", "z9hG4bKother");
    assert_eq!(route(&routes, &stray_cancel), Destination::Elsewhere);
    for method in ["OPTIONS", "REGISTER"] {
        let text = INVITE
            .replacen("INVITE sip:", &format!("{method} sip:"), 1)
            .replace("1 INVITE", &format!("1 {method}"));
        assert_eq!(route(&routes, &text), Destination::Elsewhere, "{method}");
    }
    let theirs = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\n\
From: <sip:ivrd@127.0.0.1>;tag=agent-leg\r\nTo: <sip:agent@127.0.0.1>;tag=a\r\nCall-ID: r1\r\nCSeq: 1 INVITE\r\n\r\n";
    assert_eq!(route(&routes, theirs), Destination::Elsewhere);
}

#[test]
fn a_finished_call_can_be_pointed_elsewhere_and_forgotten_by_its_keys() {
    let mut routes = Routes::default();
    let leg = leg();
    routes.add(&leg, "live");
    let keys = routes.keys_of(&leg);
    drop(leg);
    routes.set(&keys, "ended");
    assert_eq!(route(&routes, INVITE), Destination::Leg("ended"));
    assert_eq!(
        route(&routes, &in_dialog("BYE", "us")),
        Destination::Leg("ended")
    );
    routes.forget(&keys);
    assert!(routes.is_empty());
    assert_eq!(route(&routes, INVITE), Destination::NewCall);
    // Setting a forgotten call's routes does not bring them back.
    routes.set(&keys, "ended");
    assert_eq!(
        route(&routes, &in_dialog("BYE", "us")),
        Destination::Elsewhere
    );
}
