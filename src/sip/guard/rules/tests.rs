//! Tests of `sip/guard/rules.rs`.

use super::*;

#[test]
fn addresses() {
    for ok in [
            "\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com> ; tag = 98asjd8",
            "caller<sip:caller@example.com>;tag=323",
            "sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n",
            "token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=\"\u{440}\";tag=_token~1'+`*%!-.",
            "isbn:2983792873",
            "<sip:user@example.com?Route=%3Csip:sip.example.com%3E>",
            "sip:+19725552222@gw1.example.net;unknownparam",
        ] {
            assert!(address(ok).is_ok(), "{ok}: {:?}", address(ok));
        }
    for bad in [
        "\"Mr. J. User <sip:j.user@example.com>",
        "\"Watson, Thomas\" < sip:t.watson@example.org >",
        "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
        "\"Joe\" <sip:joe@example.org>;;;;",
        "",
    ] {
        assert!(address(bad).is_err(), "{bad}");
    }
    let a = address("<sip:a@b>;tag=x;lr").unwrap();
    assert_eq!(a.param("TAG"), Some(Some("x")));
    assert_eq!(a.param("lr"), Some(None));
}

#[test]
fn vias() {
    for ok in [
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport",
        "SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw",
        "SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8  ",
        "SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en",
        "SIP/2.0/UDP [2001:db8::1]:5060;received=[2001:db8::2]",
        "SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~",
    ] {
        assert_eq!(via_parm(ok), Ok(()), "{ok}");
    }
    for bad in [
        "SIP/2.0/UDP 192.0.2.15;;",
        "",
        "SIP/7.0/UDP c.example.com",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP host:99999",
    ] {
        assert!(via_parm(bad).is_err(), "{bad}");
    }
}

#[test]
fn top_level_split_respects_quotes_and_brackets() {
    let parts: Vec<_> = split_top("\"a,b\" <sip:x,y>;p, <sip:z>", b',').collect();
    assert_eq!(parts, ["\"a,b\" <sip:x,y>;p", " <sip:z>"]);
    assert_eq!(split_top("", b',').count(), 1);
    // An escaped quote stays inside the quoted string; a trailing separator leaves an
    // empty last piece, as a value like "a," holds one.
    let parts: Vec<_> = split_top("\"x\\\",y\";a=1;b,", b';').collect();
    assert_eq!(parts, ["\"x\\\",y\"", "a=1", "b,"]);
    assert_eq!(split_top("a,", b',').collect::<Vec<_>>(), ["a", ""]);
    // A < inside quotes opens nothing; > outside <> closes nothing; what is left open
    // (a quote, a <) keeps the rest in one piece.
    let parts: Vec<_> = split_top("\"x<y\" <sip:a>, b>c, d", b',').collect();
    assert_eq!(parts, ["\"x<y\" <sip:a>", " b>c", " d"]);
    assert_eq!(split_top("\"open, a", b',').count(), 1);
    assert_eq!(split_top("<sip:open, a", b',').count(), 1);
}

#[test]
fn request_uris() {
    for ok in [
            "sip:user;par=u%40example.net@example.com",
            "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
            "soap.beep://192.0.2.103:3002",
            "sip:[2001:db8::1]:5060",
        ] {
            assert_eq!(request_uri(ok), Ok(()), "{ok}");
        }
    for bad in [
        "<sip:user@example.com>",
        "sip:user@example.com?Route=%3Csip:example.com%3E",
        "user@example.com",
        "sip:",
    ] {
        assert!(request_uri(bad).is_err(), "{bad}");
    }
}

#[test]
fn one_address_parameter_is_found_as_the_whole_address_gives_it() {
    for value in [
        "<sip:a@b>;tag=x1",
        "\"Bob; Jr\" <sip:b@c;tag=no>;TAG=yes;tag=second",
        "sip:a@b;lr;tag",
        "<sip:a@b>",
        "<sip:a@b>;ok;=bad",
        "<sip:a@b",
        "",
    ] {
        let owned = |tag: Option<Option<&str>>| tag.map(|v| v.map(str::to_string));
        let whole = address(value).map(|a| owned(a.param("tag")));
        assert_eq!(address_param(value, "tag").map(owned), whole, "{value:?}");
        assert_eq!(check_address(value).is_ok(), whole.is_ok(), "{value:?}");
    }
    assert_eq!(
        address_param("<sip:a@b>;TAG=yes", "tag"),
        Ok(Some(Some("yes")))
    );
    assert_eq!(address_param("<sip:a@b;tag=in-uri>", "tag"), Ok(None));
}
