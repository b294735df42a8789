//! Fuzz target for the API-key parser (`stockade::apikeys::parse`), which
//! reads every `Authorization: Bearer stk_…` before anything is
//! authenticated. See docs/fuzzing.md.
//!
//! Properties:
//! * nothing panics, whatever the bytes;
//! * an accepted key is its own canonical spelling (`encode() == input`),
//!   has the fixed length, and verifies against its own hash only;
//! * positive direction: from any 40 input bytes a well-formed key is built
//!   (8 bytes as the hex public id, 32 as the secret); it must parse back
//!   to the same parts, and a one-byte change in it must not verify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secrecy::ExposeSecret;
use stockade::apikeys::{ApiKey, KEY_LEN, KeyEnv, parse};

const HMAC_KEY: [u8; 32] = [5; 32];

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(key) = parse(text) {
            assert_eq!(text.len(), KEY_LEN);
            assert_eq!(key.encode().expose_secret(), text);
            let hash = key.hash(&HMAC_KEY);
            assert!(key.verify(&HMAC_KEY, &hash));
            assert!(!key.verify(&[6; 32], &hash));
        }
    }
    if data.len() >= 40 {
        let (id, rest) = data.split_at(8);
        let mut secret = [0u8; 32];
        secret.copy_from_slice(&rest[..32]);
        let env = if rest.len() > 32 && rest[32] & 1 == 1 { KeyEnv::Live } else { KeyEnv::Test };
        let public_id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let built = ApiKey::from_parts(env, &public_id, secret).expect("valid parts");
        let text = built.encode().expose_secret().to_owned();
        let back = parse(&text).expect("a built key parses");
        assert_eq!(back.public_id, public_id);
        assert_eq!(back.env, env);
        let hash = built.hash(&HMAC_KEY);
        assert!(back.verify(&HMAC_KEY, &hash));
        // Flip one character of the secret part to another base64url one.
        let pos = 26 + usize::from(rest.get(33).copied().unwrap_or(0)) % 42;
        let mut chars: Vec<char> = text.chars().collect();
        chars[pos] = if chars[pos] == 'A' { 'B' } else { 'A' };
        let changed: String = chars.into_iter().collect();
        if let Ok(k) = parse(&changed) {
            assert!(!k.verify(&HMAC_KEY, &hash));
        }
    }
});
