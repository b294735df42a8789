//! Certificate renewal without a restart (issue #20 item 1): the files are
//! replaced as `certbot renew` does, new handshakes get the new certificate,
//! a connection opened before keeps working, and a broken replacement is
//! refused while the current certificate stays.

use std::time::Duration;

use rustls::version::TLS13;
use stockade::http::tls::{Reload, Tls};

use crate::tls_kit::{self, Pki, Served, connect, exchange, get};

fn leaf_of(tls: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn router() -> axum::Router {
    axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }))
}

#[tokio::test]
async fn renewed_files_are_served_to_new_connections_and_open_ones_live_on() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let first = pki.issue("first");
    let files = tls_kit::write_pair(dir.path(), &first);
    let (served, tls) = Served::tls(router(), &files, Duration::from_secs(10)).await;
    let watch = tls.certificates.clone().watch(Duration::from_millis(100));
    let client = pki.client(&[&TLS13], &[]);
    let mut kept = connect(served.addr, client.clone()).await.unwrap();
    assert_eq!(leaf_of(&kept), first.leaf.to_vec());
    assert_eq!(exchange(&mut kept, &get("/healthz")).await.status, 200);

    // Renewed: the watcher sees the files change (polled every 100 ms here;
    // the loop is bounded at 10 s of noise).
    let second = pki.issue("second");
    tls_kit::write_pair(dir.path(), &second);
    let mut seen = Vec::new();
    for _ in 0..100 {
        let fresh = connect(served.addr, client.clone()).await.unwrap();
        seen = leaf_of(&fresh);
        if seen == second.leaf.to_vec() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen,
        second.leaf.to_vec(),
        "the renewed certificate is never served"
    );
    // The connection opened before the renewal still answers, on its
    // first certificate.
    assert_eq!(exchange(&mut kept, &get("/healthz")).await.status, 200);
    assert_eq!(leaf_of(&kept), first.leaf.to_vec());
    watch.abort();
    served.stop().await;
}

#[tokio::test]
async fn a_broken_replacement_keeps_the_current_certificate() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let good = pki.issue("good");
    let files = tls_kit::write_pair(dir.path(), &good);
    let (served, tls) = Served::tls(router(), &files, Duration::from_secs(10)).await;
    let client = pki.client(&[&TLS13], &[]);
    let other = pki.issue("other");
    // Each broken shape, looked at once (no watcher here: each call is one look).
    for (cert, key, says) in [
        // A renewal half-written: the new certificate with the old key.
        (
            other.chain_pem.clone(),
            good.key_pem.clone(),
            "does not hold the key",
        ),
        (
            "not a certificate\n".to_owned(),
            good.key_pem.clone(),
            "no CERTIFICATE block",
        ),
        (good.chain_pem.clone(), String::new(), "no private key"),
        (
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_owned(),
            good.key_pem.clone(),
            "cannot be used",
        ),
    ] {
        tls_kit::replace(&files.cert_file, cert.as_bytes());
        tls_kit::replace(&files.key_file, key.as_bytes());
        match tls.certificates.reload() {
            Reload::Kept(e) => {
                assert!(e.contains(says), "{e}");
                assert!(!e.contains("PRIVATE KEY-----"), "{e}");
            }
            other => panic!("{says}: {other:?}"),
        }
        // Looked at again unchanged: reported once, nothing to do.
        assert_eq!(tls.certificates.reload(), Reload::Unchanged);
        let fresh = connect(served.addr, client.clone()).await.unwrap();
        assert_eq!(leaf_of(&fresh), good.leaf.to_vec(), "{says}");
    }
    // Files gone (mid-rename): kept too.
    std::fs::remove_file(&files.key_file).unwrap();
    assert!(matches!(tls.certificates.reload(), Reload::Kept(e) if e.contains("cannot read")));
    // Then the good renewal arrives and is taken.
    tls_kit::write_pair(dir.path(), &other);
    assert_eq!(tls.certificates.reload(), Reload::Replaced);
    let fresh = connect(served.addr, client.clone()).await.unwrap();
    assert_eq!(leaf_of(&fresh), other.leaf.to_vec());
    served.stop().await;
}

/// At start a bad pair is one line naming the file and the fault.
#[test]
fn a_bad_pair_at_start_is_one_clear_line() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let a = pki.issue("a");
    let b = pki.issue("b");
    let files = tls_kit::write_pair(dir.path(), &a);
    assert!(Tls::load(&files).is_ok());
    tls_kit::replace(&files.key_file, b.key_pem.as_bytes());
    let err = Tls::load(&files).err().unwrap();
    assert_eq!(
        err,
        format!(
            "STOCKADE_TLS_KEY_FILE ({}) does not hold the key of the certificate in STOCKADE_TLS_CERT_FILE ({})",
            files.key_file.display(),
            files.cert_file.display()
        )
    );
    let missing = stockade::config::TlsFiles {
        cert_file: dir.path().join("nope.pem"),
        key_file: files.key_file.clone(),
    };
    let err = Tls::load(&missing).err().unwrap();
    assert!(err.starts_with("STOCKADE_TLS_CERT_FILE ("), "{err}");
    assert!(err.contains("cannot read it"), "{err}");
    assert!(!err.contains('\n'));
}
