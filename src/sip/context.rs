//! Transfer context on the wire. The REFER carries it as headers (for the PBX that handles
//! the REFER) and as URI headers inside Refer-To (RFC 3261 §19.1.5), so the INVITE the caller's
//! phone sends to the target carries them too and the agent sees what the caller already did.

/// Why a call is being escalated to a person (`X-IVR-Reason`, metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscalationReason {
    Key,
    Phrase,
    Failures,
    /// The caller pressed the talk escalation keys (`*0`) while talking to an agent.
    DuringTalk,
    /// The caller was upset and took the offer of a person (an `escalate` node after the
    /// flow's upset handler).
    Upset,
    /// The flow sent the caller to a person (an `escalate` node).
    Flow,
}

impl EscalationReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EscalationReason::Key => "key",
            EscalationReason::Phrase => "phrase",
            EscalationReason::Failures => "failures",
            EscalationReason::DuringTalk => "during_talk",
            EscalationReason::Upset => "upset",
            EscalationReason::Flow => "flow",
        }
    }
}

/// What a transfer tells the receiving side, so the caller need not repeat themselves.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TransferContext {
    pub flow: String,
    /// Nodes visited, oldest first.
    pub path: Vec<String>,
    pub intent: Option<String>,
    /// Set when this transfer is an escalation.
    pub reason: Option<EscalationReason>,
    /// The caller's last input (keys).
    pub last_input: Option<String>,
    /// What the caller last said, as transcribed.
    pub transcript: Option<String>,
    /// Outages the caller has heard.
    pub outages: Vec<String>,
    /// The agent the caller talked to last (an escalation from the talk names them).
    pub agent: Option<String>,
    /// Call variables the flow set (an account number typed), by name without `vars.`.
    pub vars: Vec<(String, String)>,
    /// The name the caller prefers, when ivrd knows them.
    pub caller_name: Option<String>,
}

/// ISDN User-to-User information is limited to 128 octets; stay within it (RFC 7433).
const MAX_UUI_BYTES: usize = 128;

/// Context headers as (name, value) pairs, values made safe for a header line.
pub fn headers(ctx: &TransferContext) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("X-IVR-Flow", clean(&ctx.flow)),
        ("X-IVR-Node", clean(&ctx.path.join(","))),
    ];
    if let Some(i) = &ctx.intent {
        h.push(("X-IVR-Intent", clean(i)));
    }
    if let Some(r) = ctx.reason {
        h.push(("X-IVR-Reason", r.as_str().to_string()));
    }
    if let Some(d) = &ctx.last_input {
        h.push(("X-IVR-Input", clean(d)));
    }
    if let Some(t) = &ctx.transcript {
        h.push(("X-IVR-Transcript", clean(t)));
    }
    if !ctx.outages.is_empty() {
        h.push(("X-IVR-Outage", clean(&ctx.outages.join(","))));
    }
    if let Some(a) = &ctx.agent {
        h.push(("X-IVR-Agent", clean(a)));
    }
    if let Some(n) = &ctx.caller_name {
        h.push(("X-IVR-Caller-Name", clean(n)));
    }
    if !ctx.vars.is_empty() {
        // One header for every variable: `name=value` pairs, `;`-separated (names are
        // letters, digits and '_'; values are cleaned and have their ';' replaced).
        let vars: Vec<String> = ctx
            .vars
            .iter()
            .map(|(k, v)| format!("{k}={}", clean(v).replace(';', ",")))
            .collect();
        h.push(("X-IVR-Vars", vars.join(";")));
    }
    h.push(("User-to-User", user_to_user(ctx)));
    h
}

/// `User-to-User: <hex>;encoding=hex` carrying `flow=..;intent=..;node=..;reason=..`.
pub fn user_to_user(ctx: &TransferContext) -> String {
    let mut s = format!("flow={}", ctx.flow);
    if let Some(i) = &ctx.intent {
        s.push_str(&format!(";intent={i}"));
    }
    if let Some(r) = ctx.reason {
        s.push_str(&format!(";reason={}", r.as_str()));
    }
    if let Some(last) = ctx.path.last() {
        s.push_str(&format!(";node={last}"));
    }
    if !ctx.outages.is_empty() {
        s.push_str(&format!(";outage={}", ctx.outages.join(",")));
    }
    let mut bytes = s.into_bytes();
    bytes.truncate(MAX_UUI_BYTES);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex};encoding=hex")
}

/// Where a REFER carries the call's context (`transfer.context`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextMode {
    /// Inside Refer-To as URI headers: a transferee that honours them (RFC 3261 §19.1.5)
    /// copies them onto its INVITE, so the context reaches the target.
    Uri,
    /// As plain headers on the REFER only. The default: every peer understands the REFER
    /// (baresip 1.0 took a Refer-To with URI headers for a transfer to an empty target).
    #[default]
    Headers,
    /// Both.
    Both,
}

/// A REFER's Refer-To value and extra headers for this target, context and mode.
pub fn refer(
    target: &str,
    ctx: &TransferContext,
    mode: ContextMode,
) -> (String, Vec<(&'static str, String)>) {
    let refer_to = match mode {
        ContextMode::Uri | ContextMode::Both => refer_to_uri(target, ctx),
        ContextMode::Headers => target.to_string(),
    };
    let extra = match mode {
        ContextMode::Headers | ContextMode::Both => headers(ctx),
        ContextMode::Uri => Vec::new(),
    };
    (format!("<{refer_to}>"), extra)
}

/// The Refer-To URI with the context embedded as URI headers: `sip:t@h?X-IVR-Flow=a&...`.
pub fn refer_to_uri(target: &str, ctx: &TransferContext) -> String {
    let params: Vec<String> = headers(ctx)
        .into_iter()
        .map(|(k, v)| format!("{k}={}", escape_uri_header(&v)))
        .collect();
    let sep = if target.contains('?') { '&' } else { '?' };
    format!("{target}{sep}{}", params.join("&"))
}

/// Percent-encodes everything outside RFC 3261's `hvalue` unreserved set.
fn escape_uri_header(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()[]/:+$".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Header values must not break the message: drop control characters, bound the length.
pub fn clean(v: &str) -> String {
    v.chars().filter(|c| !c.is_control()).take(256).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::runner::EscalationReason;

    fn ctx() -> TransferContext {
        TransferContext {
            flow: "support-line".into(),
            path: vec!["greet".into(), "main_menu".into(), "billing".into()],
            intent: Some("billing".into()),
            reason: Some(EscalationReason::Key),
            last_input: Some("1".into()),
            transcript: Some("my bill, please".into()),
            outages: vec!["net-1".into()],
            agent: None,
            vars: Vec::new(),
            caller_name: None,
        }
    }

    #[test]
    fn variables_and_the_callers_name_travel_in_headers() {
        let mut c = ctx();
        c.vars = vec![
            ("account".into(), "12345".into()),
            ("plan".into(), "home;fibre\r\n".into()),
        ];
        c.caller_name = Some("Ann".into());
        let h = headers(&c);
        let get = |n: &str| h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone());
        assert_eq!(get("X-IVR-Caller-Name").as_deref(), Some("Ann"));
        let vars = get("X-IVR-Vars").unwrap();
        assert!(vars.starts_with("account=12345;plan=home,fibre"), "{vars}");
        assert!(!vars.contains('\r') && !vars.contains('\n'));
        // Without any, no header.
        assert!(headers(&ctx()).iter().all(|(k, _)| *k != "X-IVR-Vars"));
    }

    #[test]
    fn headers_name_flow_path_intent_reason_input() {
        let h = headers(&ctx());
        let get = |n: &str| h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("X-IVR-Flow"), Some("support-line"));
        assert_eq!(get("X-IVR-Node"), Some("greet,main_menu,billing"));
        assert_eq!(get("X-IVR-Intent"), Some("billing"));
        assert_eq!(get("X-IVR-Reason"), Some("key"));
        assert_eq!(get("X-IVR-Input"), Some("1"));
        assert_eq!(get("X-IVR-Outage"), Some("net-1"));
        assert_eq!(get("X-IVR-Transcript"), Some("my bill, please"));
    }

    #[test]
    fn user_to_user_is_hex_of_the_summary() {
        let u = user_to_user(&ctx());
        let hex = u.strip_suffix(";encoding=hex").unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "flow=support-line;intent=billing;reason=key;node=billing;outage=net-1"
        );
    }

    #[test]
    fn refer_to_embeds_escaped_headers() {
        let u = refer_to_uri("sip:billing@pbx.example.com", &ctx());
        assert!(u.starts_with("sip:billing@pbx.example.com?X-IVR-Flow=support-line&X-IVR-Node=greet%2Cmain_menu%2Cbilling&"), "{u}");
        assert!(u.contains("User-to-User="), "{u}");
        assert!(u.contains("%3Bencoding%3Dhex"), "{u}");
    }

    #[test]
    fn the_mode_says_where_the_context_goes() {
        let target = "sip:billing@pbx.example.com";
        let (to, extra) = refer(target, &ctx(), ContextMode::Headers);
        assert_eq!(to, "<sip:billing@pbx.example.com>");
        assert!(extra.iter().any(|(k, _)| *k == "X-IVR-Flow"));
        let (to, extra) = refer(target, &ctx(), ContextMode::Uri);
        assert!(
            to.contains("?X-IVR-Flow=support-line") && extra.is_empty(),
            "{to}"
        );
        let (to, extra) = refer(target, &ctx(), ContextMode::Both);
        assert!(to.contains("?X-IVR-Flow=") && !extra.is_empty());
    }

    #[test]
    fn control_characters_are_dropped() {
        let mut c = ctx();
        c.flow = "a\r\nInjected: x".into();
        assert_eq!(headers(&c)[0].1, "aInjected: x");
    }
}
