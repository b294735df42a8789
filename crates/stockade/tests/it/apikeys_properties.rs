//! API-key properties under proptest (issue #7): a key answers exactly for
//! its scopes within its creator's grants (on both backends), and the
//! parser accepts only canonical keys. `fuzz/` runs the parser properties
//! too (docs/fuzzing.md); example-based tests stay in the other
//! `apikeys_*` files.

use proptest::prelude::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::apikeys::get;
use crate::auth::{server, signup};
use crate::roles::{call, member_with_id as member};
use crate::testkit::Backend;

/// Permissions with an endpoint that needs exactly them.
const PROBES: &[(&str, &str)] = &[
    ("settings:manage", "/v1/tenant/settings"),
    ("members:manage", "/v1/members"),
];

#[derive(Debug, Clone)]
struct Case {
    /// The creator's role grants (always with api_keys:manage).
    creator: Vec<bool>,
    /// The key's scopes.
    scopes: Vec<bool>,
    /// The creator's grants after a change of role.
    later: Vec<bool>,
}

fn case() -> impl Strategy<Value = Case> {
    let mask = || prop::collection::vec(any::<bool>(), PROBES.len());
    (mask(), mask(), mask()).prop_map(|(creator, scopes, later)| Case {
        creator,
        scopes,
        later,
    })
}

fn pick(mask: &[bool]) -> Vec<&'static str> {
    PROBES
        .iter()
        .zip(mask)
        .filter(|(_, m)| **m)
        .map(|(p, _)| p.0)
        .collect()
}

/// A key answers exactly for scopes ∩ its creator's current grants; a key
/// with a scope its creator lacks is never made.
async fn scopes_are_bounded_by_the_creator(backend: Backend, c: Case) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let role = |name: &str, mask: &[bool]| {
        let mut perms = pick(mask);
        perms.push("api_keys:manage");
        json!({"name": name, "permissions": perms})
    };
    for (name, mask) in [("before", &c.creator), ("after", &c.later)] {
        let (st, _) = call(
            &s,
            Method::POST,
            "/v1/roles",
            &owner.access,
            Some(role(name, mask)),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED);
    }
    let (creator, creator_id) = member(&s, "acme", "c@acme.test", "before").await;
    let scopes = pick(&c.scopes);
    let (st, body) = call(
        &s,
        Method::POST,
        "/v1/api-keys",
        &creator.access,
        Some(json!({"name": "p", "scopes": scopes})),
    )
    .await;
    let allowed = !scopes.is_empty() && c.scopes.iter().zip(&c.creator).all(|(s, h)| !s || *h);
    if !allowed {
        assert!(
            st == StatusCode::FORBIDDEN || st == StatusCode::BAD_REQUEST,
            "{st} {body}"
        );
        s.stop().await;
        return;
    }
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let key = body["key"].as_str().unwrap().to_owned();
    let check = |held: Vec<bool>| {
        let s = &s;
        let key = key.clone();
        let c = c.clone();
        async move {
            for (i, (_, path)) in PROBES.iter().enumerate() {
                let want = c.scopes[i] && held[i];
                let got = get(s, path, &key).await;
                assert_eq!(got == StatusCode::OK, want, "{path}: {got} for {c:?}");
            }
        }
    };
    check(c.creator.clone()).await;
    let (st, _) = call(
        &s,
        Method::PATCH,
        &format!("/v1/members/{creator_id}"),
        &owner.access,
        Some(json!({"role": "after"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    check(c.later.clone()).await;
    s.stop().await;
}

fn run(backend: Backend, c: Case) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(scopes_are_bounded_by_the_creator(backend, c));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn key_permissions_are_scopes_within_the_creator_on_sqlite(c in case()) {
        run(Backend::Sqlite, c);
    }

    #[test]
    fn key_permissions_are_scopes_within_the_creator_on_postgres(c in case()) {
        run(Backend::Postgres, c);
    }

    /// Any string: the parser never panics, and what it accepts is the
    /// canonical spelling of a key.
    #[test]
    fn the_parser_accepts_only_canonical_keys(s in "stk_(live|test)_[0-9a-f]{16}_[A-Za-z0-9_-]{43}|.{0,80}") {
        if let Ok(k) = stockade::apikeys::parse(&s) {
            use secrecy::ExposeSecret;
            let encoded = k.encode();
            prop_assert_eq!(encoded.expose_secret(), s.as_str());
        }
    }

    /// Changing any one character of a real key makes it fail to parse or
    /// fail to verify.
    #[test]
    fn one_changed_character_is_refused(i in 0usize..69, c in "[A-Za-z0-9_-]") {
        use secrecy::ExposeSecret;
        let key = stockade::apikeys::ApiKey::generate(stockade::apikeys::KeyEnv::Test).unwrap();
        let hk = [3u8; 32];
        let hash = key.hash(&hk);
        let text = key.encode().expose_secret().to_owned();
        let mut chars: Vec<char> = text.chars().collect();
        prop_assume!(chars[i].to_string() != c);
        chars[i] = c.chars().next().unwrap();
        let changed: String = chars.into_iter().collect();
        if let Ok(k) = stockade::apikeys::parse(&changed) {
            prop_assert!(!k.verify(&hk, &hash));
        }
    }
}
