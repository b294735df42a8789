//! Fuzz target for the WebAuthn input path: what a client sends to
//! `register/finish`, `login/finish`, `POST /v1/auth/mfa {webauthn}` and
//! `POST /v1/auth/reauth {webauthn}`, read as the server reads it
//! (`stockade::mfa::webauthn::parse`: the size cap, then the
//! `webauthn-rs` types) and verified by `webauthn-rs` with the server's
//! relying party (`stockade::mfa::webauthn::relying_party`, public URL
//! `https://id.example.com`). See docs/fuzzing.md.
//!
//! Properties:
//! * nothing panics, whatever the bytes;
//! * raw mode: the input as JSON, read as a registration and as an
//!   assertion; whatever parses is verified against a registration state
//!   and an authentication state made once per process — it must never
//!   verify (no authenticator signed it for those challenges);
//! * CBOR mode (first byte odd): the rest of the input is the
//!   `attestationObject`, inside a response whose `clientDataJSON` is right
//!   for the registration state (type, challenge, origin), so the fuzzer
//!   reaches `webauthn-rs`'s CBOR and attestation parsing; it may verify
//!   only if the bytes carry a well-formed attestation, which then names a
//!   credential.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use stockade::config::Config;
use stockade::mfa::webauthn::{parse, relying_party};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::prelude::Url;
use webauthn_authenticator_rs::softtoken::SoftToken;
use webauthn_rs::prelude::{
    CreationChallengeResponse, DiscoverableAuthentication, Passkey, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, Webauthn,
};

const ORIGIN: &str = "https://id.example.com";

struct Fixture {
    wa: Webauthn,
    creation: CreationChallengeResponse,
    registration: PasskeyRegistration,
    authentication: DiscoverableAuthentication,
    /// A stored credential, for the assertion path.
    passkey: Passkey,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mut env = BTreeMap::new();
        env.insert("STOCKADE_PUBLIC_URL".to_owned(), ORIGIN.to_owned());
        env.insert("STOCKADE_DATA_DIR".to_owned(), std::env::temp_dir().display().to_string());
        let config = Config::load(None, &env).expect("config");
        let wa = relying_party(&config).expect("relying party");
        let (creation, registration) = wa
            .start_passkey_registration(uuid::Uuid::from_u128(7), "pat@acme.test", "Pat", None)
            .expect("registration state");
        let (_, authentication) = wa
            .start_discoverable_authentication()
            .expect("authentication state");
        // A credential as the server stores one, made by a software
        // authenticator once (the assertion path needs a public key).
        let (mut token, _ca) = SoftToken::new(true).expect("soft token");
        let origin = Url::parse(ORIGIN).expect("origin");
        let (ccr, reg_state) = wa
            .start_passkey_registration(uuid::Uuid::from_u128(8), "bo@beta.test", "Bo", None)
            .expect("registration state");
        let made = token.do_registration(origin, ccr).expect("soft token registers");
        let passkey = wa.finish_passkey_registration(&made, &reg_state).expect("verifies");
        Fixture { wa, creation, registration, authentication, passkey }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    // Raw mode: the input as the client's JSON.
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        if let Ok(reg) = parse::<RegisterPublicKeyCredential>(&value) {
            assert!(f.wa.finish_passkey_registration(&reg, &f.registration).is_err());
        }
        if let Ok(cred) = parse::<PublicKeyCredential>(&value) {
            let verified =
                f.wa.finish_discoverable_authentication_v2(&cred, f.authentication.clone(), &f.passkey);
            assert!(verified.is_err());
        }
    }
    // CBOR mode: the bytes as the attestation object, with the right client data.
    if let Some((&mode, rest)) = data.split_first() {
        if mode & 1 == 1 {
            let client_data = json!({
                "type": "webauthn.create",
                "challenge": B64.encode(f.creation.public_key.challenge.as_ref() as &[u8]),
                "origin": ORIGIN,
            });
            let response = json!({
                "id": "AAAA", "rawId": "AAAA", "type": "public-key",
                "response": {
                    "attestationObject": B64.encode(rest),
                    "clientDataJSON": B64.encode(client_data.to_string()),
                },
            });
            if let Ok(reg) = parse::<RegisterPublicKeyCredential>(&response) {
                if let Ok(passkey) = f.wa.finish_passkey_registration(&reg, &f.registration) {
                    assert!(!passkey.cred_id().is_empty());
                }
            }
        }
    }
});
