//! WebAuthn rules that need no I/O: a credential's display name, which
//! `amr` method (`hwk` or `swk`) a registered credential stands for, the
//! ceremonies' lifetime and the largest response accepted. The protocol
//! itself (CBOR, signatures, counters) is `webauthn-rs`, never here.

use crate::mfa::amr::Amr;

/// Characters of a credential name, at most.
pub const NAME_MAX_CHARS: usize = 64;
/// The largest WebAuthn response (the JSON of a `PublicKeyCredential`)
/// accepted, in bytes; a request body above it is refused before parsing.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// How long a ceremony (registration or authentication) stays open.
pub const CEREMONY_TTL_SECS: i64 = 5 * 60;

/// Why a credential name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("a credential name is 1 to 64 characters")]
    Length,
    #[error("a credential name holds no control or invisible (bidi, zero-width) characters")]
    Hidden,
}

/// The name to store: trimmed, 1 to [`NAME_MAX_CHARS`] characters, with no
/// control character and no default-ignorable one (bidi overrides,
/// zero-width joiners…), which would make two names look alike or reorder
/// what the list shows.
pub fn credential_name(name: &str) -> Result<String, NameError> {
    let n = name.trim();
    let count = n.chars().count();
    if count == 0 || count > NAME_MAX_CHARS {
        return Err(NameError::Length);
    }
    if n.chars()
        .any(|c| c.is_control() || crate::text::is_default_ignorable(c))
    {
        return Err(NameError::Hidden);
    }
    Ok(n.to_owned())
}

/// The method a credential proves, from what the client reported at
/// registration: `authenticatorAttachment` `"cross-platform"` (a security
/// key or another device) is `hwk`; `"platform"` (the device's own
/// authenticator, often a synced passkey) is `swk`. Without the attachment,
/// transports decide: only `usb`, `nfc` or `ble` is `hwk`; anything else
/// (`internal`, `hybrid`, none) is `swk`. The report is the client's, not
/// signed: the `amr` says how the user signed in, it does not grade the
/// hardware.
pub fn kind_of(attachment: Option<&str>, transports: &[&str]) -> Amr {
    match attachment {
        Some("cross-platform") => Amr::Hwk,
        Some(_) => Amr::Swk,
        None => {
            let roaming = |t: &&str| matches!(*t, "usb" | "nfc" | "ble");
            if !transports.is_empty() && transports.iter().all(roaming) {
                Amr::Hwk
            } else {
                Amr::Swk
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_bounded_and_visible() {
        assert_eq!(credential_name("  YubiKey 5 ").unwrap(), "YubiKey 5");
        assert_eq!(
            credential_name(&"é".repeat(64)).unwrap().chars().count(),
            64
        );
        assert_eq!(credential_name(&"a".repeat(65)), Err(NameError::Length));
        assert_eq!(credential_name("   "), Err(NameError::Length));
        assert_eq!(credential_name(""), Err(NameError::Length));
        for hidden in ["key\u{202e}", "a\u{200d}b", "tab\there", "nl\nx", "\u{7f}x"] {
            assert_eq!(
                credential_name(hidden),
                Err(NameError::Hidden),
                "{hidden:?}"
            );
        }
    }

    #[test]
    fn attachment_then_transports_decide_the_method() {
        assert_eq!(kind_of(Some("cross-platform"), &[]), Amr::Hwk);
        assert_eq!(kind_of(Some("platform"), &["usb"]), Amr::Swk);
        assert_eq!(kind_of(None, &["usb", "nfc"]), Amr::Hwk);
        assert_eq!(kind_of(None, &["usb", "internal"]), Amr::Swk);
        assert_eq!(kind_of(None, &["hybrid"]), Amr::Swk);
        assert_eq!(kind_of(None, &[]), Amr::Swk);
    }
}
