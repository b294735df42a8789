//! Multi-factor rules (SPEC §2.4): TOTP codes and the once-only rule
//! (`totp.rs`), recovery codes (`recovery.rs`), how a session was signed in
//! (`amr.rs`, RFC 8176), whom a tenant's MFA policy covers (`policy.rs`),
//! and WebAuthn names and methods (`webauthn.rs`). Pure: the
//! secrets and counters come in as values.

pub mod amr;
pub mod policy;
pub mod recovery;
pub mod totp;
pub mod webauthn;
