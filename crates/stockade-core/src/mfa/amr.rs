//! How a session's user signed in, as RFC 8176 authentication method
//! references. Stored with the session (space-separated) and copied into
//! every access token's `amr` claim, so a relying service can tell a
//! password-only session from a multi-factor one.

/// One method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Amr {
    /// A password.
    Pwd,
    /// A one-time password: TOTP, or a single-use recovery code.
    Otp,
    /// A hardware-protected key (a security key).
    Hwk,
    /// A software-protected key (a passkey).
    Swk,
    /// A sign-in link sent to the verified address.
    Email,
}

impl Amr {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pwd => "pwd",
            Self::Otp => "otp",
            Self::Hwk => "hwk",
            Self::Swk => "swk",
            Self::Email => "email",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pwd" => Self::Pwd,
            "otp" => Self::Otp,
            "hwk" => Self::Hwk,
            "swk" => Self::Swk,
            "email" => Self::Email,
            _ => return None,
        })
    }

    /// Whether the method is a second factor (or a passkey, which proves
    /// possession and, with user verification, the user).
    pub fn is_second_factor(self) -> bool {
        matches!(self, Self::Otp | Self::Hwk | Self::Swk)
    }
}

/// The stored form: the methods, in order, space-separated, no repeats.
pub fn encode(methods: &[Amr]) -> String {
    let mut seen: Vec<Amr> = Vec::with_capacity(methods.len());
    for m in methods {
        if !seen.contains(m) {
            seen.push(*m);
        }
    }
    seen.iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The stored form read back; unknown words are dropped.
pub fn decode(stored: &str) -> Vec<Amr> {
    let mut out = Vec::new();
    for m in stored.split(' ').filter_map(Amr::parse) {
        if !out.contains(&m) {
            out.push(m);
        }
    }
    out
}

/// The token claim: the methods, plus `mfa` when a second factor was used
/// beside another method (RFC 8176 §2).
pub fn claim(methods: &[Amr]) -> Vec<String> {
    let methods = decode(&encode(methods));
    let mut out: Vec<String> = methods.iter().map(|m| m.as_str().to_owned()).collect();
    if methods.len() > 1 && methods.iter().any(|m| m.is_second_factor()) {
        out.push("mfa".to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_claims_mfa_only_for_two_methods() {
        let both = [Amr::Pwd, Amr::Otp, Amr::Pwd];
        assert_eq!(encode(&both), "pwd otp");
        assert_eq!(decode("pwd otp bogus otp"), vec![Amr::Pwd, Amr::Otp]);
        assert_eq!(claim(&both), ["pwd", "otp", "mfa"]);
        assert_eq!(claim(&[Amr::Pwd]), ["pwd"]);
        assert_eq!(claim(&[Amr::Swk]), ["swk"]);
        assert_eq!(claim(&[Amr::Email, Amr::Hwk]), ["email", "hwk", "mfa"]);
        assert!(decode("").is_empty());
    }
}
