//! SIP's decisions: ivrd's own transactions, UAS dialog, call legs and routing table (`txn`,
//! `uas`, `leg`, `route`: the layer that answers calls over UDP), the dialog's rules (INVITE
//! checks, re-INVITE/491, hold, late offer, REFER after the ACK), SDP offer/answer, transfer
//! context headers, URI checks, the shield and the pre-parse guard that answers malformed
//! requests with 400. Pure code; what moves bytes (and rsipstack's endpoint, still used for
//! TCP and the calls ivrd places) lives in `crate::io::sip`.

pub mod context;
pub mod dialog;
pub mod digest;
pub mod guard;
pub mod leg;
pub mod route;
pub mod sdp;
pub mod shield;
pub mod txn;
pub mod uas;
pub mod uri;
