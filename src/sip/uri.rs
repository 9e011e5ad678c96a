//! SIP URI checks for admin-written targets.

use rsipstack::sip::{Scheme, Uri};

/// Checks a transfer target as written in a flow: a `sip:`/`sips:` URI with a host, or a
/// `tel:` number. Returns a message fit for an admin when it is not.
pub fn validate_transfer_target(target: &str) -> Result<(), String> {
    let t = target.trim();
    if t.is_empty() {
        return Err("empty SIP URI".into());
    }
    if t.len() > 256 {
        return Err("SIP URI longer than 256 characters".into());
    }
    if t.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
    {
        return Err(format!(
            "'{t}' is not a SIP URI (spaces, control characters or <> are not allowed)"
        ));
    }
    if let Some(number) = t.strip_prefix("tel:") {
        let digits = number.split(';').next().unwrap_or("");
        if !digits.is_empty()
            && digits
                .chars()
                .all(|c| c.is_ascii_digit() || "+-.()".contains(c))
        {
            return Ok(());
        }
        return Err(format!("'{t}' is not a valid tel: URI"));
    }
    if !(t.starts_with("sip:") || t.starts_with("sips:")) {
        return Err(format!(
            "'{t}' is not a SIP URI (it must start with sip:, sips: or tel:)"
        ));
    }
    let uri = Uri::try_from(t).map_err(|e| format!("'{t}' is not a valid SIP URI: {e}"))?;
    if !matches!(uri.scheme, Some(Scheme::Sip) | Some(Scheme::Sips)) {
        return Err(format!("'{t}' is not a SIP URI"));
    }
    if uri.host_with_port.host.to_string().is_empty() {
        return Err(format!("'{t}' has no host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert!(validate_transfer_target("sip:billing@pbx.example.com").is_ok());
        assert!(validate_transfer_target("sip:billing@10.0.0.1:5070;transport=tcp").is_ok());
        assert!(validate_transfer_target("sips:agent@pbx.example.com").is_ok());
        assert!(validate_transfer_target("tel:+1-555-0100").is_ok());
        assert!(validate_transfer_target("not a uri").is_err());
        assert!(validate_transfer_target("http://example.com").is_err());
        assert!(validate_transfer_target("sip:").is_err());
        assert!(validate_transfer_target("").is_err());
        assert!(validate_transfer_target("tel:abc").is_err());
    }
}
