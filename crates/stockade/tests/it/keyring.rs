//! Signing keys at rest and rotation with overlap, on SQLite and PostgreSQL.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Duration, Utc};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use stockade::clock::Clock;
use stockade::crypto::jwt::{
    ACCESS_TOKEN_TTL, Claims, Keyring, RETIRED_KEY_GRACE, SigningAlg, TokenError,
};
use stockade::crypto::keyring::{self, KeyringError};
use stockade::crypto::keys::{self, Keys, SigningMaterial};
use stockade::db::Db;

use crate::testkit::{TestDb, fixed_clock, test_config};

const ISS: &str = "https://auth.example.com";
const AUD: &str = "stockade";

/// A fixed master key, so that several configurations share one database.
fn master_b64() -> String {
    B64.encode([42u8; 32])
}

/// Development keys (a generated Ed25519 key) in a fresh directory.
fn ed25519_keys() -> (Keys, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let master = master_b64();
    let cfg = test_config(dir.path(), &[("STOCKADE_MASTER_KEY", master.as_str())]);
    (keys::load(&cfg).unwrap(), dir)
}

/// 64 random bytes, hex (a weak secret is refused: `crypto::hs256`).
const HS256_SECRET: &str = "51dff8a269c92be4db4efad015b96c046168ecea7608ecba7d264f19daff9612172fb18e89c06a12b3a80fe9e2fbc6d7cff2e792a7712bc5956341d77f0de547";

fn hs256_keys() -> (Keys, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let master = master_b64();
    let cfg = test_config(
        dir.path(),
        &[
            ("STOCKADE_MASTER_KEY", master.as_str()),
            ("STOCKADE_JWT_ALG", "HS256"),
            ("STOCKADE_JWT_SECRET", HS256_SECRET),
        ],
    );
    (keys::load(&cfg).unwrap(), dir)
}

fn claims_at(now: DateTime<Utc>) -> Claims {
    Claims {
        iss: ISS.into(),
        aud: AUD.into(),
        sub: "user-1".into(),
        tid: "tenant-1".into(),
        sid: "session-1".into(),
        iat: now.timestamp(),
        exp: (now + ACCESS_TOKEN_TTL).timestamp(),
        jti: uuid::Uuid::new_v4().to_string(),
        act: None,
        amr: Vec::new(),
    }
}

fn jwks_kids(ring: &Keyring, now: DateTime<Utc>) -> Vec<String> {
    ring.jwks(now)["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// A stored row as an attacker with the database sees it: kid, sealed
/// secret, public key.
type RawRow = (String, Vec<u8>, Option<Vec<u8>>);

async fn raw_rows(db: &Db) -> Vec<RawRow> {
    let sql = "SELECT kid, sealed_secret, public_key FROM signing_keys ORDER BY kid";
    if let Some(pool) = db.sqlite_pool() {
        return sqlx::query_as(sql).fetch_all(pool).await.unwrap();
    }
    sqlx::query_as(sql)
        .fetch_all(&crate::testkit::owner_pool(db).await)
        .await
        .unwrap()
}

async fn raw_execute(db: &Db, sql: &str) {
    if let Some(pool) = db.sqlite_pool() {
        sqlx::query(sql).execute(pool).await.unwrap();
        return;
    }
    sqlx::query(sql)
        .execute(&crate::testkit::owner_pool(db).await)
        .await
        .unwrap();
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn load_imports_the_configured_key(t: &TestDb) {
    let clock = fixed_clock();
    let (keys, _dir) = ed25519_keys();
    let ring = keyring::load(&t.db, &keys, clock.as_ref()).await.unwrap();
    assert_eq!(ring.current_kid(), keys.signing.kid());
    assert_eq!(ring.current_alg(), SigningAlg::EdDsa);
    assert_eq!(jwks_kids(&ring, clock.now()), [keys.signing.kid()]);

    let stored = keyring::list(&t.db).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].kid, keys.signing.kid());
    assert_eq!(stored[0].alg, "EdDSA");
    assert_eq!(stored[0].created_at, clock.now());
    assert!(stored[0].is_current());

    // Loading again changes nothing, and tokens survive a restart.
    let token = ring.issue(&claims_at(clock.now())).unwrap();
    clock.advance(Duration::minutes(1));
    let again = keyring::load(&t.db, &keys, clock.as_ref()).await.unwrap();
    assert_eq!(again.current_kid(), keys.signing.kid());
    assert_eq!(keyring::list(&t.db).await.unwrap(), stored);
    assert!(again.verify(&token, clock.now(), ISS, AUD).is_ok());

    // The same for an HS256 secret, whose JWKS stays empty.
    let (hs, _dir) = hs256_keys();
    let ring = keyring::load(&t.db, &hs, clock.as_ref()).await.unwrap();
    assert_eq!(ring.current_kid(), hs.signing.kid());
    assert_eq!(ring.current_alg(), SigningAlg::Hs256);
    let token = ring.issue(&claims_at(clock.now())).unwrap();
    assert!(ring.verify(&token, clock.now(), ISS, AUD).is_ok());
    assert!(!ring.jwks(clock.now()).to_string().contains(HS256_SECRET));
}

async fn rotation_overlaps_for_the_token_lifetime(t: &TestDb) {
    let clock = fixed_clock();
    let (keys, _dir) = ed25519_keys();
    let before = keyring::load(&t.db, &keys, clock.as_ref()).await.unwrap();
    let old_kid = before.current_kid().to_owned();
    clock.advance(Duration::minutes(5));
    // The last token of the old key, issued just before the rotation.
    let old_token = before.issue(&claims_at(clock.now())).unwrap();

    let rotated_at = clock.now();
    let new_kid = keyring::rotate(&t.db, &keys, clock.as_ref()).await.unwrap();
    assert_ne!(new_kid, old_kid);
    assert_eq!(new_kid.len(), 16);
    // Audited in the platform chain, with the key ids only.
    let events = crate::audit::events_of(
        &t.db,
        stockade::ids::TenantId::PLATFORM,
        "crypto.signing_key.rotated",
    )
    .await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor_type, "system");
    assert_eq!(events[0].target_id.as_deref(), Some(new_kid.as_str()));
    let details: serde_json::Value = serde_json::from_str(&events[0].details).unwrap();
    assert_eq!(
        details,
        serde_json::json!({"kid": new_kid, "alg": "EdDSA", "retired_kids": [old_kid]})
    );

    let after = keyring::load(&t.db, &keys, clock.as_ref()).await.unwrap();
    assert_eq!(after.current_kid(), new_kid);
    let new_token = after.issue(&claims_at(clock.now())).unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(&new_token).unwrap().kid,
        Some(new_kid.clone())
    );
    assert!(after.verify(&old_token, clock.now(), ISS, AUD).is_ok());
    assert!(after.verify(&new_token, clock.now(), ISS, AUD).is_ok());
    assert_eq!(
        jwks_kids(&after, clock.now()),
        [new_kid.clone(), old_kid.clone()]
    );
    // The old keyring (an instance that has not reloaded yet) still works
    // for its own tokens, but does not know the new key.
    assert!(before.verify(&old_token, clock.now(), ISS, AUD).is_ok());
    assert_eq!(
        before.verify(&new_token, clock.now(), ISS, AUD),
        Err(TokenError::UnknownKey)
    );

    clock.set(rotated_at + RETIRED_KEY_GRACE - Duration::seconds(1));
    assert!(after.verify(&old_token, clock.now(), ISS, AUD).is_ok());
    let reloaded = keyring::load(&t.db, &keys, clock.as_ref()).await.unwrap();
    assert!(reloaded.verify(&old_token, clock.now(), ISS, AUD).is_ok());
    assert_eq!(jwks_kids(&reloaded, clock.now()).len(), 2);

    clock.set(rotated_at + RETIRED_KEY_GRACE);
    assert!(after.verify(&old_token, clock.now(), ISS, AUD).is_err());
    assert_eq!(jwks_kids(&after, clock.now()), [new_kid.as_str()]);
    let reloaded = keyring::load(&t.db, &keys, clock.as_ref()).await.unwrap();
    assert_eq!(reloaded.keys().len(), 1, "the old key is no longer loaded");
    assert!(reloaded.verify(&old_token, clock.now(), ISS, AUD).is_err());
    // The new key's token has expired with its own 15 minutes; a fresh one
    // verifies.
    assert_eq!(
        reloaded.verify(&new_token, clock.now(), ISS, AUD),
        Err(TokenError::Expired)
    );
    let fresh = reloaded.issue(&claims_at(clock.now())).unwrap();
    assert!(reloaded.verify(&fresh, clock.now(), ISS, AUD).is_ok());
    assert_eq!(jwks_kids(&reloaded, clock.now()), [new_kid]);
}

async fn reload_after_rotation_keeps_the_rotated_key(t: &TestDb) {
    let clock = fixed_clock();
    let (keys, _dir) = ed25519_keys();
    keyring::load(&t.db, &keys, clock.as_ref()).await.unwrap();
    clock.advance(Duration::hours(1));
    let first = keyring::rotate(&t.db, &keys, clock.as_ref()).await.unwrap();
    clock.advance(Duration::hours(1));
    let second = keyring::rotate(&t.db, &keys, clock.as_ref()).await.unwrap();
    clock.advance(Duration::hours(1));

    // A restart with the same configuration (the file still holds the
    // original key) keeps the rotated key current.
    let ring = keyring::load(&t.db, &keys, clock.as_ref()).await.unwrap();
    assert_eq!(ring.current_kid(), second);
    let stored = keyring::list(&t.db).await.unwrap();
    assert_eq!(stored.len(), 3);
    let current: Vec<&str> = stored
        .iter()
        .filter(|k| k.is_current())
        .map(|k| k.kid.as_str())
        .collect();
    assert_eq!(current, [second.as_str()]);
    let first_row = stored.iter().find(|k| k.kid == first).unwrap();
    assert!(first_row.retired_at.is_some());
}

async fn rotation_before_the_first_load_is_kept(t: &TestDb) {
    let clock = fixed_clock();
    let (keys, _dir) = ed25519_keys();
    let kid = keyring::rotate(&t.db, &keys, clock.as_ref()).await.unwrap();
    let ring = keyring::load(&t.db, &keys, clock.as_ref()).await.unwrap();
    assert_eq!(ring.current_kid(), kid);
    assert_eq!(keyring::list(&t.db).await.unwrap().len(), 2);
}

async fn replacing_the_configured_key_retires_the_old_one(t: &TestDb) {
    let clock = fixed_clock();
    let (first, _d1) = ed25519_keys();
    let (second, _d2) = ed25519_keys();
    let ring = keyring::load(&t.db, &first, clock.as_ref()).await.unwrap();
    let token = ring.issue(&claims_at(clock.now())).unwrap();

    clock.advance(Duration::minutes(1));
    let ring = keyring::load(&t.db, &second, clock.as_ref()).await.unwrap();
    assert_eq!(ring.current_kid(), second.signing.kid());
    assert!(ring.verify(&token, clock.now(), ISS, AUD).is_ok());
    assert_eq!(
        jwks_kids(&ring, clock.now()),
        [second.signing.kid(), first.signing.kid()]
    );

    // Going back to a key that was stored (and retired) does not demote the
    // current one: only a never-seen key or another algorithm does.
    let ring = keyring::load(&t.db, &first, clock.as_ref()).await.unwrap();
    assert_eq!(ring.current_kid(), second.signing.kid());
}

async fn switching_algorithm_makes_the_configured_key_current(t: &TestDb) {
    let clock = fixed_clock();
    let (ed, _d1) = ed25519_keys();
    let (hs, _d2) = hs256_keys();
    let ring = keyring::load(&t.db, &ed, clock.as_ref()).await.unwrap();
    let ed_token = ring.issue(&claims_at(clock.now())).unwrap();

    clock.advance(Duration::minutes(1));
    let ring = keyring::load(&t.db, &hs, clock.as_ref()).await.unwrap();
    assert_eq!(ring.current_kid(), hs.signing.kid());
    assert_eq!(ring.current_alg(), SigningAlg::Hs256);
    assert!(ring.verify(&ed_token, clock.now(), ISS, AUD).is_ok());
    // The retired Ed25519 key stays published while it verifies.
    assert_eq!(jwks_kids(&ring, clock.now()), [ed.signing.kid()]);

    clock.advance(Duration::minutes(1));
    let rotated = keyring::rotate(&t.db, &hs, clock.as_ref()).await.unwrap();
    let ring = keyring::load(&t.db, &hs, clock.as_ref()).await.unwrap();
    assert_eq!(ring.current_kid(), rotated);
    assert_eq!(ring.current_alg(), SigningAlg::Hs256);

    // Back to EdDSA: the stored Ed25519 key is current again.
    clock.advance(Duration::minutes(1));
    let ring = keyring::load(&t.db, &ed, clock.as_ref()).await.unwrap();
    assert_eq!(ring.current_kid(), ed.signing.kid());
    assert_eq!(ring.current_alg(), SigningAlg::EdDsa);
    let stored = keyring::list(&t.db).await.unwrap();
    assert_eq!(stored.iter().filter(|k| k.is_current()).count(), 1);
}

/// The secret halves of every stored key, opened with the master key.
fn opened_secrets(keys: &Keys, rows: &[RawRow]) -> Vec<Vec<u8>> {
    rows.iter()
        .map(|(kid, sealed, _)| {
            let aad = keyring::secret_aad(kid);
            assert!(aad.starts_with(b"stockade:signing_key:"));
            keys.master.open(1, &aad, sealed).unwrap().to_vec()
        })
        .collect()
}

async fn private_keys_are_never_stored_in_clear(t: &TestDb) {
    let clock = fixed_clock();
    let (keys, _dir) = ed25519_keys();
    let (hs, _d2) = hs256_keys();
    keyring::load(&t.db, &keys, clock.as_ref()).await.unwrap();
    keyring::rotate(&t.db, &keys, clock.as_ref()).await.unwrap();
    clock.advance(Duration::minutes(1));
    keyring::load(&t.db, &hs, clock.as_ref()).await.unwrap();
    keyring::rotate(&t.db, &hs, clock.as_ref()).await.unwrap();

    let rows = raw_rows(&t.db).await;
    assert_eq!(rows.len(), 4);
    let secrets = opened_secrets(&keys, &rows);

    // What must never appear: every PKCS#8 document, every Ed25519 seed,
    // every HS256 secret, in the configured and in the generated keys.
    let mut needles: Vec<Vec<u8>> = Vec::new();
    let SigningMaterial::Ed25519 { key, .. } = &keys.signing else {
        panic!("expected an Ed25519 development key")
    };
    needles.push(key.to_pkcs8_der().unwrap().as_bytes().to_vec());
    needles.push(key.to_bytes().to_vec());
    needles.push(HS256_SECRET.as_bytes().to_vec());
    for ((kid, _, public), secret) in rows.iter().zip(&secrets) {
        needles.push(secret.clone());
        match public {
            Some(public) => {
                let key = SigningKey::from_pkcs8_der(secret).unwrap();
                assert_eq!(key.verifying_key().as_bytes(), public.as_slice(), "{kid}");
                needles.push(key.to_bytes().to_vec());
            }
            None => assert!(secret.len() >= 64, "{kid}"),
        }
    }

    for (kid, sealed, public) in &rows {
        for needle in &needles {
            assert!(!contains(sealed, needle), "{kid}: secret in clear");
            if let Some(public) = public {
                assert!(!contains(public, needle), "{kid}: secret in public_key");
            }
        }
    }
    // On SQLite, the whole file (and its write-ahead log) as stored on disk.
    if t.db.sqlite_pool().is_some() {
        let path = Path::new(&t.name);
        let mut files = vec![std::fs::read(path).unwrap()];
        if let Ok(wal) = std::fs::read(format!("{}-wal", t.name)) {
            files.push(wal);
        }
        // The scan works: the public keys are there in clear.
        let public = rows.iter().find_map(|r| r.2.as_ref()).unwrap();
        assert!(files.iter().any(|f| contains(f, public)));
        for file in &files {
            for needle in &needles {
                assert!(!contains(file, needle), "secret in the database file");
            }
        }
    }
}

async fn tampered_rows_are_refused(t: &TestDb) {
    let clock = fixed_clock();
    let (keys, _dir) = ed25519_keys();
    keyring::load(&t.db, &keys, clock.as_ref()).await.unwrap();
    let new_kid = keyring::rotate(&t.db, &keys, clock.as_ref()).await.unwrap();

    // Another master key cannot open the stored keys.
    let dir = tempfile::tempdir().unwrap();
    let other_master = B64.encode([7u8; 32]);
    let cfg = test_config(
        dir.path(),
        &[("STOCKADE_MASTER_KEY", other_master.as_str())],
    );
    let stranger = Keys {
        master: keys::load(&cfg).unwrap().master,
        signing: SigningMaterial::Ed25519 {
            key: match &keys.signing {
                SigningMaterial::Ed25519 { key, .. } => key.clone(),
                SigningMaterial::Hs256 { .. } => panic!("expected Ed25519"),
            },
            kid: keys.signing.kid().to_owned(),
        },
        development: true,
    };
    assert!(matches!(
        keyring::load(&t.db, &stranger, clock.as_ref()).await,
        Err(KeyringError::Unseal { .. })
    ));

    // Move the retired key's sealed secret onto the current row: the kid in
    // the associated data no longer matches, so it does not open.
    raw_execute(
        &t.db,
        &format!(
            "UPDATE signing_keys SET sealed_secret = \
             (SELECT sealed_secret FROM signing_keys WHERE kid = '{}') WHERE kid = '{new_kid}'",
            keys.signing.kid()
        ),
    )
    .await;
    let err = keyring::load(&t.db, &keys, clock.as_ref())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, KeyringError::Unseal { kid } if *kid == new_kid),
        "{err:?}"
    );
    // The error names the key, never its material.
    assert!(err.to_string().contains(&new_kid));
}

async fn a_second_current_key_is_impossible(t: &TestDb) {
    let clock = fixed_clock();
    let (keys, _dir) = ed25519_keys();
    keyring::load(&t.db, &keys, clock.as_ref()).await.unwrap();
    keyring::rotate(&t.db, &keys, clock.as_ref()).await.unwrap();
    let sql = "UPDATE signing_keys SET retired_at = NULL";
    let result = match t.db.sqlite_pool() {
        Some(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
        None => sqlx::query(sql)
            .execute(&crate::testkit::owner_pool(&t.db).await)
            .await
            .map(|_| ()),
    };
    assert!(
        result.is_err(),
        "the partial unique index allows one current key"
    );
}

async fn the_app_role_cannot_delete_keys(t: &TestDb) {
    let Some(pool) = t.db.postgres_app_pool() else {
        return;
    };
    let clock = fixed_clock();
    let (keys, _dir) = ed25519_keys();
    keyring::load(&t.db, &keys, clock.as_ref()).await.unwrap();
    let err = sqlx::query("DELETE FROM signing_keys")
        .execute(pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
}

crate::both_backends!(
    load_imports_the_configured_key,
    rotation_overlaps_for_the_token_lifetime,
    reload_after_rotation_keeps_the_rotated_key,
    rotation_before_the_first_load_is_kept,
    replacing_the_configured_key_retires_the_old_one,
    switching_algorithm_makes_the_configured_key_current,
    private_keys_are_never_stored_in_clear,
    tampered_rows_are_refused,
    a_second_current_key_is_impossible,
    the_app_role_cannot_delete_keys,
);
