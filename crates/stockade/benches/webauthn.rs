//! Criterion benchmark of a WebAuthn assertion verify (issue #19 item 10):
//! the client's JSON read with the server's size cap
//! (`mfa::webauthn::parse`), then `webauthn-rs` verifying it as the server
//! configures the relying party (`mfa::webauthn::relying_party`, public URL
//! `https://id.example.com`): client data (type, challenge, origin), RP id
//! hash, user-verification flag, the P-256 ECDSA signature and the counter
//! against the stored credential. The credential and assertion come from
//! `webauthn-authenticator-rs`'s `SoftToken`, as in the integration tests.
//! The database around it (ceremony take, credential read, counter write)
//! is not included: see the `/v1/auth/mfa` load row for the whole request.
//! Run: `cargo bench --bench webauthn`.

// reason: a benchmark harness aborts on any set-up failure; there is no caller
// to hand an error to, and a panic with a message is the clearest report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use stockade::config::Config;
use stockade::mfa::webauthn::{parse, relying_party};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::prelude::Url;
use webauthn_authenticator_rs::softtoken::SoftToken;
use webauthn_rs::prelude::{Passkey, PublicKeyCredential};

fn verify(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env = BTreeMap::new();
    env.insert(
        "STOCKADE_DATA_DIR".to_owned(),
        dir.path().display().to_string(),
    );
    env.insert(
        "STOCKADE_PUBLIC_URL".to_owned(),
        "https://id.example.com".to_owned(),
    );
    let config = Config::load(None, &env).expect("config");
    let wa = relying_party(&config).expect("relying party");
    let origin = Url::parse("https://id.example.com").expect("origin");
    let (mut token, _ca) = SoftToken::new(true).expect("soft token");

    let (ccr, registration) = wa
        .start_passkey_registration(uuid::Uuid::new_v4(), "pat@acme.test", "Pat", None)
        .expect("begin registration");
    let response = token
        .do_registration(origin.clone(), ccr)
        .expect("authenticator registers");
    let passkey: Passkey = wa
        .finish_passkey_registration(&response, &registration)
        .expect("registration verifies");

    let (mut options, state) = wa
        .start_discoverable_authentication()
        .expect("begin authentication");
    options.public_key.allow_credentials = vec![webauthn_rs_proto::AllowCredentials {
        type_: "public-key".to_owned(),
        id: passkey.cred_id().to_vec(),
        transports: None,
    }];
    options.mediation = None;
    let assertion = token
        .do_authentication(origin, options)
        .expect("authenticator asserts");
    let json = serde_json::to_value(&assertion).expect("assertion JSON");

    c.bench_function("webauthn/assertion_verify", |b| {
        b.iter(|| {
            let cred: PublicKeyCredential = parse(black_box(&json)).expect("parses");
            let result = wa
                .finish_discoverable_authentication_v2(&cred, state.clone(), &passkey)
                .expect("verifies");
            black_box(result)
        })
    });
}

criterion_group!(benches, verify);
criterion_main!(benches);
