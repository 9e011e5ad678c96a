//! SIP URI checks for admin-written targets.

use rsipstack::sip::{Scheme, Uri};

/// Why a transfer target is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("empty SIP URI")]
    Empty,
    #[error("SIP URI longer than 256 characters")]
    TooLong,
    #[error("'{0}' is not a SIP URI (spaces, control characters or <> are not allowed)")]
    BadCharacters(String),
    #[error("'{0}' is not a valid tel: URI")]
    BadTel(String),
    #[error("'{0}' is not a SIP URI (it must start with sip:, sips: or tel:)")]
    Scheme(String),
    #[error("'{target}' is not a valid SIP URI: {reason}")]
    Unparsable { target: String, reason: String },
    #[error("'{0}' has no host")]
    NoHost(String),
}

/// Checks a transfer target as written in a flow: a `sip:`/`sips:` URI with a host, or a
/// `tel:` number. The error is a message fit for an admin.
pub fn validate_transfer_target(target: &str) -> Result<(), TargetError> {
    let t = target.trim();
    if t.is_empty() {
        return Err(TargetError::Empty);
    }
    if t.len() > 256 {
        return Err(TargetError::TooLong);
    }
    if t.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
    {
        return Err(TargetError::BadCharacters(t.to_string()));
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
        return Err(TargetError::BadTel(t.to_string()));
    }
    if !(t.starts_with("sip:") || t.starts_with("sips:")) {
        return Err(TargetError::Scheme(t.to_string()));
    }
    let uri = Uri::try_from(t).map_err(|e| TargetError::Unparsable {
        target: t.to_string(),
        reason: e.to_string(),
    })?;
    if !matches!(uri.scheme, Some(Scheme::Sip) | Some(Scheme::Sips)) {
        return Err(TargetError::Scheme(t.to_string()));
    }
    if uri.host_with_port.host.to_string().is_empty() {
        return Err(TargetError::NoHost(t.to_string()));
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
