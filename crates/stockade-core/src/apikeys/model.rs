//! The key itself: format, strict parser, generation and keyed hash. It must
//! not store, look up or log a key, and nothing here prints its secret.
//!
//! `stk_<env>_<public id>_<secret>`: `env` is `live` (production profile)
//! or `test` (development); the public id is 16 lower-case hex digits (64
//! random bits) and names the key in lists and logs; the secret is 32 bytes
//! from the OS CSPRNG as 43 unpadded base64url characters. Every part has a
//! fixed length, so the secret may contain `_` and `-` without ambiguity;
//! only the canonical spelling of a key parses.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Every key starts with this; a bearer token that does is an API key.
pub const PREFIX: &str = "stk_";
/// Hex digits of the public id.
const PUBLIC_ID_LEN: usize = 16;
/// Base64url characters of the 32-byte secret.
const SECRET_LEN: usize = 43;
/// Length of every key: `stk_` + env (4) + `_` + public id + `_` + secret.
pub const KEY_LEN: usize = PREFIX.len() + 4 + 1 + PUBLIC_ID_LEN + 1 + SECRET_LEN;

/// Which deployment a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEnv {
    Live,
    Test,
}

impl KeyEnv {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Test => "test",
        }
    }

    /// `live` for the production profile, `test` otherwise.
    pub fn for_config(config: &(impl Deployment + ?Sized)) -> Self {
        match config.is_production() {
            true => Self::Live,
            false => Self::Test,
        }
    }
}

/// What a key's environment depends on: whether the deployment runs the
/// production profile (implemented by `stockade::config::Config`; this
/// crate reads no configuration).
pub trait Deployment {
    fn is_production(&self) -> bool;
}

impl<T: Deployment + ?Sized> Deployment for std::sync::Arc<T> {
    fn is_production(&self) -> bool {
        (**self).is_production()
    }
}

/// Why a string is not an API key (never says anything about a stored key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not an API key: wrong length")]
    Length,
    #[error("not an API key: wrong prefix or environment")]
    Prefix,
    #[error("not an API key: malformed public id")]
    PublicId,
    #[error("not an API key: malformed secret")]
    Secret,
}

/// A parsed key. The secret is wiped on drop and never printed.
pub struct ApiKey {
    pub env: KeyEnv,
    pub public_id: String,
    secret: SecretBox<[u8; 32]>,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("env", &self.env)
            .field("public_id", &self.public_id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// Parses `stk_<env>_<16 hex>_<43 base64url>` strictly (the fuzz target).
pub fn parse(input: &str) -> Result<ApiKey, ParseError> {
    let bytes = input.as_bytes();
    if bytes.len() != KEY_LEN {
        return Err(ParseError::Length);
    }
    let env = match input.get(..PREFIX.len() + 5) {
        Some("stk_live_") => KeyEnv::Live,
        Some("stk_test_") => KeyEnv::Test,
        _ => return Err(ParseError::Prefix),
    };
    let id_start = PREFIX.len() + 5;
    let id_end = id_start + PUBLIC_ID_LEN;
    let public_id = input.get(id_start..id_end).ok_or(ParseError::PublicId)?;
    if !public_id
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(ParseError::PublicId);
    }
    if input.get(id_end..=id_end) != Some("_") {
        return Err(ParseError::PublicId);
    }
    let secret_text = input.get(id_end + 1..).ok_or(ParseError::Secret)?;
    // The standard decoder refuses padding and non-zero trailing bits, so
    // each secret has exactly one accepted spelling.
    let decoded = Zeroizing::new(
        URL_SAFE_NO_PAD
            .decode(secret_text)
            .map_err(|_| ParseError::Secret)?,
    );
    let secret: [u8; 32] = decoded
        .as_slice()
        .try_into()
        .map_err(|_| ParseError::Secret)?;
    Ok(ApiKey {
        env,
        public_id: public_id.to_owned(),
        secret: SecretBox::new(Box::new(secret)),
    })
}

/// Whether a bearer token is meant as an API key (then it never falls back
/// to being read as an access token).
pub fn looks_like_key(token: &str) -> bool {
    token.starts_with(PREFIX)
}

impl ApiKey {
    /// A fresh key: public id and secret from the OS CSPRNG.
    pub fn generate(env: KeyEnv) -> anyhow::Result<Self> {
        let id = crate::crypto::random::secret_bytes::<8>()?;
        let secret = crate::crypto::random::secret_bytes::<32>()?;
        Ok(Self {
            env,
            public_id: hex::encode(id.as_slice()),
            secret: SecretBox::new(Box::new(*secret)),
        })
    }

    /// Builds a key from its parts (tests, the fuzz target, benchmarks).
    pub fn from_parts(env: KeyEnv, public_id: &str, secret: [u8; 32]) -> Result<Self, ParseError> {
        let ok = public_id.len() == PUBLIC_ID_LEN
            && public_id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok {
            return Err(ParseError::PublicId);
        }
        Ok(Self {
            env,
            public_id: public_id.to_owned(),
            secret: SecretBox::new(Box::new(secret)),
        })
    }

    /// The whole key, as shown once to its creator.
    pub fn encode(&self) -> SecretString {
        let secret = Zeroizing::new(URL_SAFE_NO_PAD.encode(self.secret.expose_secret()));
        SecretString::from(format!(
            "{}{}_{}_{}",
            PREFIX,
            self.env.as_str(),
            self.public_id,
            secret.as_str()
        ))
    }

    /// The part that is safe to show again: `stk_<env>_<public id>`.
    pub fn prefix(&self) -> String {
        display_prefix(self.env, &self.public_id)
    }

    /// HMAC-SHA256 under the server's API-key key, over the public id and
    /// the secret: what is stored.
    pub fn hash(&self, hmac_key: &[u8; 32]) -> [u8; 32] {
        self.mac(hmac_key).finalize().into_bytes().into()
    }

    /// Whether `stored` is this key's hash, in constant time.
    pub fn verify(&self, hmac_key: &[u8; 32], stored: &[u8]) -> bool {
        self.mac(hmac_key).verify_slice(stored).is_ok()
    }

    fn mac(&self, hmac_key: &[u8; 32]) -> Hmac<Sha256> {
        // A 32-byte key is always accepted; the error arm is unreachable.
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(hmac_key) {
            Ok(m) => m,
            Err(_) => <Hmac<Sha256> as Mac>::new(&Default::default()),
        };
        mac.update(b"stockade:api_key:v1:");
        mac.update(self.public_id.as_bytes());
        mac.update(b":");
        mac.update(self.secret.expose_secret());
        mac
    }
}

/// `stk_<env>_<public id>`: names a key without revealing it.
pub fn display_prefix(env: KeyEnv, public_id: &str) -> String {
    format!("{PREFIX}{}_{public_id}", env.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_hash() {
        let key = ApiKey::generate(KeyEnv::Test).unwrap();
        let text = key.encode();
        let text = text.expose_secret();
        assert_eq!(text.len(), KEY_LEN);
        assert!(text.starts_with(&key.prefix()));
        let back = parse(text).unwrap();
        assert_eq!(back.public_id, key.public_id);
        assert_eq!(back.encode().expose_secret(), text);
        let hk = [7u8; 32];
        let h = key.hash(&hk);
        assert!(back.verify(&hk, &h));
        assert!(!back.verify(&[8u8; 32], &h));
        assert!(!back.verify(&hk, &h[..31]));
        assert!(!format!("{back:?}").contains(&text[26..]));
    }

    #[test]
    fn strict_syntax() {
        let good = ApiKey::from_parts(KeyEnv::Live, "0123456789abcdef", [0xff; 32])
            .unwrap()
            .encode();
        let good = good.expose_secret().to_owned();
        assert!(parse(&good).is_ok());
        let mut bad = vec![
            String::new(),
            good.replace("stk_live", "stk_prod"),
            good.replace("stk_", "STK_"),
            good.replace("0123456789abcdef", "0123456789ABCDEF"),
            good.replace("0123456789abcdef", "0123456789abcdeg"),
            format!("{good}A"),
            good[..good.len() - 1].to_owned(),
            format!(" {}", &good[1..]),
        ];
        // Non-canonical trailing bits in the last character.
        let mut chars: Vec<char> = good.chars().collect();
        *chars.last_mut().unwrap() = '9';
        bad.push(chars.iter().collect());
        // Separator replaced.
        let mut chars: Vec<char> = good.chars().collect();
        chars[25] = '-';
        bad.push(chars.iter().collect());
        for b in bad {
            assert!(parse(&b).is_err(), "{b}");
        }
    }
}
