//! The server's keys: the master key (wraps tenant data keys) and the token
//! signing key (Ed25519 by default, or an HS256 secret).
//!
//! In development, missing keys are generated into `<data_dir>/keys/` with file
//! mode 0600 and a marker line, so production can recognise and refuse them.
//! In production every key must be configured explicitly.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::config::{Config, JwtAlg, Secret};
use crate::crypto::random;

/// The first line of every key file Stockade generates for development.
pub const DEV_MARKER: &str =
    "# stockade development key: generated for development only, never use in production";

pub use crate::crypto::master::MasterKey;
pub use stockade_core::crypto::jwt::SigningMaterial;

#[derive(Debug)]
pub struct Keys {
    pub master: std::sync::Arc<MasterKey>,
    pub signing: SigningMaterial,
    /// True when any key in use was generated for development.
    pub development: bool,
}

/// Loads the configured keys. Outside production, missing keys are generated
/// and persisted under `<data_dir>/keys/`. Every problem is reported, one line
/// each, so an operator can fix them all in one go.
pub fn load(cfg: &Config) -> Result<Keys, Vec<String>> {
    let production = cfg.is_production();
    let mut problems = if production {
        cfg.production_problems()
    } else {
        Vec::new()
    };
    let mut development = false;
    let key_dir = cfg.data_dir.join("keys");

    let master = match &cfg.master_key {
        Some(secret) => check_secret_file(secret, production, &mut problems)
            .and_then(|()| parse_master(secret, production, &mut problems, &mut development)),
        None if production => None, // already reported by production_problems
        None => match dev_master(&key_dir) {
            Ok(key) => {
                development = true;
                Some(key)
            }
            Err(e) => {
                problems.push(format!("cannot create the development master key: {e:#}"));
                None
            }
        },
    };

    let signing = match cfg.jwt_alg {
        JwtAlg::EdDsa => match &cfg.signing_key_file {
            Some(path) => load_ed25519(path, production, &mut problems, &mut development),
            None if production => None,
            None => match dev_signing(&key_dir) {
                Ok(key) => {
                    development = true;
                    Some(ed25519_material(key))
                }
                Err(e) => {
                    problems.push(format!("cannot create the development signing key: {e:#}"));
                    None
                }
            },
        },
        JwtAlg::Hs256 => match &cfg.jwt_secret {
            Some(secret) => {
                let text = secret.value.expose_secret();
                let marked = text.contains(DEV_MARKER);
                if marked {
                    development = true;
                    if production {
                        problems.push(format!(
                            "{} is a development key: generate a real secret for production",
                            secret.origin
                        ));
                    }
                }
                // Production lists a weak secret in production_problems; a
                // development key there is already named above.
                let weak = crate::crypto::hs256::problem(secret);
                if let Some(problem) = weak.clone().filter(|_| !production) {
                    problems.push(problem);
                }
                check_secret_file(secret, production, &mut problems);
                match weak {
                    Some(_) => None,
                    // The HMAC key is the text as configured (see `crypto::hs256`).
                    None => Some(SigningMaterial::Hs256 {
                        kid: kid_for(text.as_bytes()),
                        secret: Zeroizing::new(text.as_bytes().to_vec()),
                    }),
                }
            }
            None => {
                if !production {
                    problems.push(
                        "STOCKADE_JWT_ALG=HS256 needs STOCKADE_JWT_SECRET_FILE (at least 512 bits)"
                            .to_owned(),
                    );
                }
                None
            }
        },
    };

    match (master, signing) {
        (Some(master), Some(signing)) if problems.is_empty() => Ok(Keys {
            master: std::sync::Arc::new(master),
            signing,
            development,
        }),
        _ => Err(problems),
    }
}

/// In production a key file must not be readable by group or others.
fn check_secret_file(secret: &Secret, production: bool, problems: &mut Vec<String>) -> Option<()> {
    if let (true, Some(path)) = (production, &secret.file) {
        check_mode(path, problems);
    }
    Some(())
}

fn check_mode(path: &Path, problems: &mut Vec<String>) {
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            problems.push(format!(
                "key file {} is readable by group or others (mode {mode:o}): chmod 600 it",
                path.display()
            ));
        }
    }
}

fn parse_master(
    secret: &Secret,
    production: bool,
    problems: &mut Vec<String>,
    development: &mut bool,
) -> Option<MasterKey> {
    let text = secret.value.expose_secret();
    if text.contains(DEV_MARKER) {
        *development = true;
        if production {
            problems.push(format!(
                "{} is a development key: generate a real master key for production",
                secret.origin
            ));
            return None;
        }
    }
    match MasterKey::parse(text, secret.file.clone()) {
        Some(key) => Some(key),
        None => {
            problems.push(format!(
                "{} is not a master key: one base64-encoded 32-byte key, or lines \
                 `vN:<base64 32 bytes>` with distinct versions N >= 1",
                secret.origin
            ));
            None
        }
    }
}

fn load_ed25519(
    path: &Path,
    production: bool,
    problems: &mut Vec<String>,
    development: &mut bool,
) -> Option<SigningMaterial> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => Zeroizing::new(t),
        Err(e) => {
            problems.push(format!(
                "cannot read STOCKADE_SIGNING_KEY_FILE ({}): {e}",
                path.display()
            ));
            return None;
        }
    };
    if text.contains(DEV_MARKER) {
        *development = true;
        if production {
            problems.push(format!(
                "STOCKADE_SIGNING_KEY_FILE ({}) is a development key: generate a real signing key for production",
                path.display()
            ));
            return None;
        }
    }
    if production {
        check_mode(path, problems);
    }
    match parse_ed25519_pem(&text) {
        Some(key) => Some(ed25519_material(key)),
        None => {
            problems.push(format!(
                "STOCKADE_SIGNING_KEY_FILE ({}) is not an Ed25519 private key in PKCS#8 PEM",
                path.display()
            ));
            None
        }
    }
}

fn parse_ed25519_pem(text: &str) -> Option<SigningKey> {
    let pem: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    SigningKey::from_pkcs8_pem(&pem).ok()
}

fn ed25519_material(key: SigningKey) -> SigningMaterial {
    let kid = kid_for(key.verifying_key().as_bytes());
    SigningMaterial::Ed25519 { key, kid }
}

/// A key id: the first 16 hex digits of SHA-256 of the public (or, for HS256,
/// a hash of the secret) key, so it names the key without revealing it.
pub(crate) fn kid_for(public: &[u8]) -> String {
    let digest = Sha256::digest(public);
    hex::encode(digest).chars().take(16).collect()
}

fn dev_master(dir: &Path) -> anyhow::Result<MasterKey> {
    let path = dir.join("master.key");
    if path.exists() {
        let text = Zeroizing::new(std::fs::read_to_string(&path)?);
        return MasterKey::parse(&text, Some(path.clone()))
            .ok_or_else(|| anyhow::anyhow!("{} is not a valid master key", path.display()));
    }
    let bytes = random::secret_bytes::<32>()?;
    let body = Zeroizing::new(format!("{DEV_MARKER}\n{}\n", B64.encode(bytes.as_slice())));
    write_private(&path, body.as_bytes())?;
    MasterKey::parse(&body, Some(path))
        .ok_or_else(|| anyhow::anyhow!("cannot read back the development master key"))
}

fn dev_signing(dir: &Path) -> anyhow::Result<SigningKey> {
    let path = dir.join("signing-ed25519.pem");
    if path.exists() {
        let text = Zeroizing::new(std::fs::read_to_string(&path)?);
        return parse_ed25519_pem(&text)
            .ok_or_else(|| anyhow::anyhow!("{} is not a valid signing key", path.display()));
    }
    let seed = random::secret_bytes::<32>()?;
    let key = SigningKey::from_bytes(&seed);
    let pem = key
        .to_pkcs8_pem(Default::default())
        .map_err(|e| anyhow::anyhow!("cannot encode the signing key: {e}"))?;
    let body = Zeroizing::new(format!("{DEV_MARKER}\n{}", pem.as_str()));
    write_private(&path, body.as_bytes())?;
    Ok(key)
}

/// Creates `path` with mode 0600 (its directory 0700); never overwrites.
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

/// Creates a directory (and parents) readable only by its owner.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn config(dir: &Path, extra: &[(&str, String)]) -> Config {
        let mut env = BTreeMap::new();
        env.insert(
            "STOCKADE_DATA_DIR".to_owned(),
            dir.to_str().unwrap().to_owned(),
        );
        for (k, v) in extra {
            env.insert((*k).to_owned(), v.clone());
        }
        Config::load(None, &env).unwrap()
    }

    #[test]
    fn development_keys_are_generated_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), &[]);
        let first = load(&cfg).unwrap();
        assert!(first.development);
        for name in ["master.key", "signing-ed25519.pem"] {
            let meta = std::fs::metadata(dir.path().join("keys").join(name)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
        }
        let dir_mode = std::fs::metadata(dir.path().join("keys"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let second = load(&cfg).unwrap();
        assert_eq!(first.master.key_bytes(1), second.master.key_bytes(1));
        assert_eq!(first.signing.kid(), second.signing.kid());
        assert!(!format!("{first:?}").contains(&B64.encode(*first.master.key_bytes(1).unwrap())));
    }

    #[test]
    fn production_refuses_development_keys_one_line_each() {
        let dir = tempfile::tempdir().unwrap();
        load(&config(dir.path(), &[])).unwrap();
        let keys = dir.path().join("keys");
        let cfg = config(
            dir.path(),
            &[
                ("STOCKADE_PROFILE", "production".into()),
                ("STOCKADE_PUBLIC_URL", "https://app.example.com".into()),
                ("STOCKADE_TRUSTED_PROXIES", "none".into()),
                (
                    "STOCKADE_MASTER_KEY_FILE",
                    keys.join("master.key").display().to_string(),
                ),
                (
                    "STOCKADE_SIGNING_KEY_FILE",
                    keys.join("signing-ed25519.pem").display().to_string(),
                ),
            ],
        );
        let problems = load(&cfg).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().all(|p| p.contains("development key")));
    }

    #[test]
    fn production_accepts_real_keys_and_refuses_loose_file_modes() {
        let dir = tempfile::tempdir().unwrap();
        let master = dir.path().join("m.key");
        let signing = dir.path().join("s.pem");
        let seed = random::secret_bytes::<32>().unwrap();
        write_private(&master, B64.encode([7u8; 32]).as_bytes()).unwrap();
        let pem = SigningKey::from_bytes(&seed)
            .to_pkcs8_pem(Default::default())
            .unwrap();
        write_private(&signing, pem.as_bytes()).unwrap();
        let cfg = config(
            dir.path(),
            &[
                ("STOCKADE_PROFILE", "production".into()),
                ("STOCKADE_PUBLIC_URL", "https://app.example.com".into()),
                ("STOCKADE_TRUSTED_PROXIES", "none".into()),
                ("STOCKADE_MASTER_KEY_FILE", master.display().to_string()),
                ("STOCKADE_SIGNING_KEY_FILE", signing.display().to_string()),
            ],
        );
        let keys = load(&cfg).unwrap();
        assert!(!keys.development);
        assert_eq!(*keys.master.key_bytes(1).unwrap(), [7u8; 32]);

        std::fs::set_permissions(&signing, std::fs::Permissions::from_mode(0o644)).unwrap();
        let problems = load(&cfg).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("readable by group or others"));
    }

    #[test]
    fn malformed_keys_are_named_without_their_contents() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(
            dir.path(),
            &[("STOCKADE_MASTER_KEY", "not-base64-secret!".into())],
        );
        let problems = load(&cfg).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("STOCKADE_MASTER_KEY"));
        assert!(!problems[0].contains("not-base64-secret"));
    }
}
