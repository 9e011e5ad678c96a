//! SIP around rsipstack: SDP offer/answer, transfer context headers, URI checks and the
//! pre-parse guard that answers malformed requests with 400. Pure code; the endpoint that
//! moves bytes lives in `crate::io`.

pub mod context;
pub mod guard;
pub mod sdp;
pub mod shield;
pub mod uri;
