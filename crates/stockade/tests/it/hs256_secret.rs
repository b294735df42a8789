//! An operator's weak HS256 secret, as `stockade config check` and `serve`
//! judge it (issue #17 item 12): bits are counted, not characters.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use base64::Engine;

use crate::cli::{run, stockade};

fn error_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.starts_with('{'))
        .map(str::to_owned)
        .collect()
}

fn private_file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// `stockade <args>` in production with HS256 and the secret in a file.
fn production_with_secret(dir: &Path, args: &[&str], secret_text: &str) -> Output {
    let master = private_file(
        dir,
        "master.key",
        &base64::engine::general_purpose::STANDARD.encode([9u8; 32]),
    );
    let secret = private_file(dir, "jwt.secret", secret_text);
    run(stockade(dir)
        .args(args)
        .env("STOCKADE_PROFILE", "production")
        .env("STOCKADE_PUBLIC_URL", "https://app.example.com")
        .env("STOCKADE_TRUSTED_PROXIES", "none")
        .env("STOCKADE_MASTER_KEY_FILE", &master)
        .env("STOCKADE_JWT_ALG", "HS256")
        .env("STOCKADE_JWT_SECRET_FILE", &secret))
}

#[test]
fn sixty_four_xs_are_not_a_512_bit_secret() {
    let dir = tempfile::tempdir().unwrap();
    // 64 characters of "x" were accepted as 512 bits; base64 of a
    // repeated byte, a 32-byte block pasted twice, and a long lower-case
    // passphrase are just as weak.
    let block =
        hex::decode("51dff8a269c92be4db4efad015b96c046168ecea7608ecba7d264f19daff9612").unwrap();
    let pasted_twice =
        base64::engine::general_purpose::STANDARD.encode([block.clone(), block].concat());
    let weak = [
        ("x".repeat(64), "shorter than 512 bits"),
        ("x".repeat(96), "low in entropy"),
        (pasted_twice, "low in entropy"),
        (
            "thequickbrownfoxjumpsoverthelazydogwhilethefivewizardsboxjumpquicklyandpackmyboxwithjugs"
                .to_owned(),
            "low in entropy",
        ),
        (
            "Tr0ub4dor&3-correct-horse-battery-staple-!!-and-some-more-words-here##".to_owned(),
            "not base64 or hex",
        ),
    ];
    for (text, reason) in &weak {
        for cmd in [&["config", "check"][..], &["serve"][..]] {
            let out = production_with_secret(dir.path(), cmd, text);
            assert_eq!(out.status.code(), Some(2), "{cmd:?}: {reason}");
            let lines = error_lines(&out);
            assert_eq!(lines.len(), 1, "{cmd:?}: {lines:?}");
            let line = &lines[0];
            assert!(
                line.starts_with("error: STOCKADE_JWT_SECRET_FILE"),
                "{line}"
            );
            assert!(line.contains(reason), "{line}");
            assert!(line.contains("openssl rand -base64 64"), "{line}");
            // Never the value, nor any telling part of it.
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!all.contains(&text[..12]), "{cmd:?}: the secret was echoed");
        }
    }
    // serve never started.
    assert!(!dir.path().join("stockade-data").exists());
}

#[test]
fn random_secrets_as_base64_or_hex_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = [0u8; 64];
    getrandom::fill(&mut bytes).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    // As `openssl rand -base64 64` writes it: wrapped at 64 columns.
    let (a, b) = b64.split_at(64);
    for text in [format!("{a}\n{b}\n"), hex::encode(bytes)] {
        let out = production_with_secret(dir.path(), &["config", "check"], &text);
        assert!(out.status.success(), "{:?}", error_lines(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("profile=production"));
    }
}

#[test]
fn development_refuses_a_weak_secret_too() {
    // Outside production missing keys are generated, but a weak secret
    // given explicitly is refused before any command uses it.
    let dir = tempfile::tempdir().unwrap();
    let out = run(stockade(dir.path())
        .args(["tenant", "create", "--slug", "acme", "--name", "Acme"])
        .env("STOCKADE_JWT_ALG", "HS256")
        .env("STOCKADE_JWT_SECRET", "x".repeat(64)));
    assert_eq!(out.status.code(), Some(2));
    let lines = error_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("STOCKADE_JWT_SECRET "), "{lines:?}");
    assert!(!lines[0].contains("xxxx"));
}
