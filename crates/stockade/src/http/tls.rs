//! HTTPS on the listener (SPEC §2.14, issue #20 item 1), with rustls and
//! its *ring* provider:
//!
//! - TLS 1.3 and 1.2 only (rustls speaks nothing older); 1.3 is chosen
//!   whenever the client offers it;
//! - only AEAD suites with ephemeral (forward-secret) key exchange:
//!   [`ALLOWED_SUITES`], the server's order preferred over the client's;
//! - ALPN `h2` then `http/1.1`; no 0-RTT data;
//! - the certificate chain and key from `STOCKADE_TLS_CERT_FILE` and
//!   `STOCKADE_TLS_KEY_FILE` (PEM), re-read when their contents change
//!   (looked at every [`RELOAD_EVERY`], and at once on SIGHUP): new
//!   handshakes get the new pair, open connections keep theirs, and a
//!   broken replacement is logged and the current pair kept — the renewal
//!   model of Let's Encrypt clients (`certbot renew` rewrites the files).
//!
//! A bad pair at start is one error line naming the file and what is wrong.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, ServerConfig};
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;
use zeroize::Zeroizing;

use crate::config::TlsFiles;

/// How often the certificate files are looked at for a renewal.
pub const RELOAD_EVERY: Duration = Duration::from_secs(5);

/// The suites offered: TLS 1.3's three, and TLS 1.2's ECDHE (forward
/// secret) with AES-GCM or ChaCha20-Poly1305 (AEAD). No CBC, RC4, 3DES,
/// static RSA key exchange or export suite can be negotiated.
pub const ALLOWED_SUITES: [CipherSuite; 9] = [
    CipherSuite::TLS13_AES_256_GCM_SHA384,
    CipherSuite::TLS13_AES_128_GCM_SHA256,
    CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// The *ring* provider, keeping only [`ALLOWED_SUITES`] (today exactly its
/// defaults; the filter keeps it so if a later rustls adds others).
pub fn provider() -> CryptoProvider {
    let ring = rustls::crypto::ring::default_provider();
    CryptoProvider {
        cipher_suites: ring
            .cipher_suites
            .iter()
            .copied()
            .filter(|s| ALLOWED_SUITES.contains(&s.suite()))
            .collect(),
        ..ring
    }
}

/// What the listener needs: the acceptor for handshakes, and the
/// certificates it serves (to reload).
#[derive(Clone)]
pub struct Tls {
    pub acceptor: TlsAcceptor,
    pub certificates: Arc<Certificates>,
}

impl Tls {
    /// Reads the pair; a problem is one line naming the file.
    pub fn load(files: &TlsFiles) -> Result<Self, String> {
        let provider = Arc::new(provider());
        let certificates = Arc::new(Certificates::load(files.clone(), provider.clone())?);
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(certificates.clone());
        config.ignore_client_order = true;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.max_early_data_size = 0;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certificates,
        })
    }
}

/// The pair being served, swapped whole when the files change.
#[derive(Debug)]
pub struct Certificates {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// A digest of what the files held (or why they could not be read) when
    /// last looked at, so each change is loaded, or reported, once.
    seen: Mutex<[u8; 32]>,
}

/// What one look at the files did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The files hold what was last looked at.
    Unchanged,
    /// A new pair is served to new handshakes.
    Replaced,
    /// The files changed but cannot be used: the current pair is kept.
    Kept(String),
}

impl Certificates {
    fn load(files: TlsFiles, provider: Arc<CryptoProvider>) -> Result<Self, String> {
        let (cert, key) = read(&files)?;
        let pair = certified(&files, &cert, &key, &provider)?;
        Ok(Self {
            seen: Mutex::new(digest(&cert, &key)),
            files,
            provider,
            current: RwLock::new(Arc::new(pair)),
        })
    }

    /// The pair new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Looks at the files once: a changed, usable pair replaces the current
    /// one; a changed, unusable one is reported once and the current kept.
    pub fn reload(&self) -> Reload {
        let (outcome, seen) = match read(&self.files) {
            Ok((cert, key)) => {
                let seen = digest(&cert, &key);
                if seen == *self.seen.lock().unwrap_or_else(PoisonError::into_inner) {
                    return Reload::Unchanged;
                }
                match certified(&self.files, &cert, &key, &self.provider) {
                    Ok(pair) => {
                        *self.current.write().unwrap_or_else(PoisonError::into_inner) =
                            Arc::new(pair);
                        (Reload::Replaced, seen)
                    }
                    Err(e) => (Reload::Kept(e), seen),
                }
            }
            Err(e) => {
                let seen: [u8; 32] = Sha256::digest(e.as_bytes()).into();
                (Reload::Kept(e), seen)
            }
        };
        let mut last = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if *last == seen {
            return Reload::Unchanged;
        }
        *last = seen;
        match &outcome {
            Reload::Replaced => tracing::info!(
                cert_file = %self.files.cert_file.display(),
                "TLS certificate reloaded: new connections get the new one"
            ),
            Reload::Kept(e) => tracing::warn!(
                error = %e,
                "the TLS certificate files changed but cannot be used: keeping the current certificate"
            ),
            Reload::Unchanged => {}
        }
        outcome
    }

    /// Looks at the files every `every`, and at once on SIGHUP, until the
    /// returned task is aborted.
    pub fn watch(self: Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut hangup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    Some(()) = async {
                        match hangup.as_mut() {
                            Some(h) => h.recv().await,
                            None => std::future::pending().await,
                        }
                    } => tracing::info!("SIGHUP: re-reading the TLS certificate files"),
                }
                let me = self.clone();
                // File reads and key parsing, off the async threads.
                let _ = tokio::task::spawn_blocking(move || me.reload()).await;
            }
        })
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Both files' bytes; the key's are wiped when dropped.
fn read(files: &TlsFiles) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>), String> {
    let cert = std::fs::read(&files.cert_file).map_err(|e| {
        format!(
            "STOCKADE_TLS_CERT_FILE ({}): cannot read it: {e}",
            files.cert_file.display()
        )
    })?;
    let key = std::fs::read(&files.key_file)
        .map(Zeroizing::new)
        .map_err(|e| {
            format!(
                "STOCKADE_TLS_KEY_FILE ({}): cannot read it: {e}",
                files.key_file.display()
            )
        })?;
    Ok((cert, key))
}

fn digest(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((cert.len() as u64).to_be_bytes());
    h.update(cert);
    h.update(key);
    h.finalize().into()
}

/// The chain (end-entity first) and its key, checked to belong together.
fn certified(
    files: &TlsFiles,
    cert: &[u8],
    key: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    let cert_file = files.cert_file.display();
    let key_file = files.key_file.display();
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!("STOCKADE_TLS_CERT_FILE ({cert_file}): not a PEM certificate chain: {e}")
        })?;
    if chain.is_empty() {
        return Err(format!(
            "STOCKADE_TLS_CERT_FILE ({cert_file}): no CERTIFICATE block in it"
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|_| {
        format!(
            "STOCKADE_TLS_KEY_FILE ({key_file}): no private key in it (PEM: PKCS#8, PKCS#1 or SEC1)"
        )
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => format!(
            "STOCKADE_TLS_KEY_FILE ({key_file}) does not hold the key of the certificate in STOCKADE_TLS_CERT_FILE ({cert_file})"
        ),
        other => format!(
            "STOCKADE_TLS_CERT_FILE ({cert_file}) and STOCKADE_TLS_KEY_FILE ({key_file}) cannot be used: {other}"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every suite the provider offers is forward secret and AEAD, and they
    /// are exactly *ring*'s defaults: nothing was lost by the filter.
    #[test]
    fn only_forward_secret_aead_suites() {
        let ours: Vec<CipherSuite> = provider().cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(ours, ALLOWED_SUITES);
        let defaults: Vec<CipherSuite> = rustls::crypto::ring::DEFAULT_CIPHER_SUITES
            .iter()
            .map(|s| s.suite())
            .collect();
        assert_eq!(defaults, ALLOWED_SUITES);
        for suite in ALLOWED_SUITES {
            let name = format!("{suite:?}");
            let tls13 = name.starts_with("TLS13_");
            let ecdhe = name.starts_with("TLS_ECDHE_ECDSA_WITH_")
                || name.starts_with("TLS_ECDHE_RSA_WITH_");
            let aead = name.contains("_GCM_") || name.contains("_CHACHA20_POLY1305_");
            assert!((tls13 || ecdhe) && aead, "{name}");
        }
    }
}
