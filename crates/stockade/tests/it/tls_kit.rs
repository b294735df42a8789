//! Fixtures for the listener tests (`tls.rs`, `tls_reload.rs`, `tls_scan.rs`,
//! `connection_limits.rs`, `redirector.rs`): a throw-away CA and server
//! certificates (rcgen), the real connection loop on 127.0.0.1:0, rustls
//! clients pinned to one protocol version, a small HTTP/1.1 exchange over
//! any stream, and ClientHello records written byte by byte as a scanner
//! sends them (rustls clients cannot speak TLS 1.0/1.1 or offer a static-RSA
//! suite).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use stockade::config::TlsFiles;
use stockade::http::listener::{self, ServeOptions};
use stockade::http::tls::Tls;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A CA that issues server certificates for `localhost` and 127.0.0.1.
pub struct Pki {
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

/// A server certificate: its chain (leaf then CA) and key as PEM, and the
/// leaf's DER to recognise it on a connection.
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
    pub leaf: CertificateDer<'static>,
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Stockade test CA");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        Pki { ca, ca_key }
    }

    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    pub fn issue(&self, common_name: &str) -> Issued {
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        Issued {
            chain_pem: format!("{}{}", cert.pem(), self.ca.pem()),
            key_pem: key.serialize_pem(),
            leaf: cert.der().clone(),
        }
    }

    /// A rustls client trusting only this CA, speaking only `versions`,
    /// offering `alpn`.
    pub fn client(
        &self,
        versions: &[&'static SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// reqwest trusting only this CA (HTTP/2 when ALPN agrees).
    pub fn reqwest(&self, addr: SocketAddr) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem().as_bytes()).unwrap())
            .resolve("localhost", addr)
            .build()
            .unwrap()
    }
}

/// Writes `issued` as `cert.pem` and `key.pem` in `dir` (each replaced by a
/// rename, as certbot's symlink swap appears to a reader).
pub fn write_pair(dir: &Path, issued: &Issued) -> TlsFiles {
    let files = TlsFiles {
        cert_file: dir.join("cert.pem"),
        key_file: dir.join("key.pem"),
    };
    replace(&files.cert_file, issued.chain_pem.as_bytes());
    replace(&files.key_file, issued.key_pem.as_bytes());
    files
}

pub fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The real connection loop on 127.0.0.1:0 until dropped or stopped.
pub struct Served {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Served {
    pub async fn start(router: Router, options: ServeOptions) -> Served {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(listener::serve(
            listener,
            router,
            async {
                let _ = rx.await;
            },
            options,
        ));
        Served {
            addr,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// `router` over TLS with the pair in `files`; the certificates are
    /// returned to reload.
    pub async fn tls(
        router: Router,
        files: &TlsFiles,
        header_read_timeout: Duration,
    ) -> (Served, Tls) {
        let tls = Tls::load(files).unwrap();
        let options = ServeOptions {
            header_read_timeout,
            ..ServeOptions::default()
        }
        .with_tls(tls.acceptor.clone());
        (Served::start(router, options).await, tls)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A TLS connection to `addr` as `localhost`.
pub async fn connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// An HTTP/1.1 response: status, head, body.
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Answer {
    /// The first header `name` (any case), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends `request` as it is and reads one response (by `Content-Length`;
/// without one, to the end of the connection).
pub async fn exchange<S>(stream: &mut S, request: &[u8]) -> Answer
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream.write_all(request).await.unwrap();
    stream.flush().await.unwrap();
    read_answer(stream).await
}

pub async fn read_answer<S: AsyncRead + Unpin>(stream: &mut S) -> Answer {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before a response head: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    let mut answer = Answer {
        status,
        head,
        body: buf[head_end..].to_vec(),
    };
    match answer
        .header("content-length")
        .map(|n| n.parse::<usize>().unwrap())
    {
        Some(len) => {
            while answer.body.len() < len {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed inside a body");
                answer.body.extend_from_slice(&chunk[..n]);
            }
        }
        None => {
            stream.read_to_end(&mut answer.body).await.unwrap();
        }
    }
    answer
}

/// `GET path` on a kept-alive connection.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").into_bytes()
}

/// Waits for the server to end the connection: `Ok(bytes it sent first)`
/// on end of stream or reset, within `bound` (generous: noise must not
/// fail it), else `Err`.
pub async fn closed_within<S: AsyncRead + Unpin>(
    stream: &mut S,
    bound: Duration,
) -> Result<Vec<u8>, String> {
    let mut seen = Vec::new();
    let read = async {
        loop {
            let mut chunk = [0u8; 1024];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
    };
    match tokio::time::timeout(bound, read).await {
        Ok(()) => Ok(seen),
        Err(_) => Err(format!("still open after {bound:?}")),
    }
}

/// TLS record and ClientHello constants.
pub mod hello {
    pub const TLS10: u16 = 0x0301;
    pub const TLS11: u16 = 0x0302;
    pub const TLS12: u16 = 0x0303;
    /// TLS_RSA_WITH_AES_128_GCM_SHA256: AEAD, but static RSA key exchange
    /// (no forward secrecy).
    pub const RSA_AES128_GCM: u16 = 0x009c;
    /// TLS_RSA_WITH_AES_128_CBC_SHA (what TLS 1.0/1.1 clients offer).
    pub const RSA_AES128_CBC: u16 = 0x002f;
    /// TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA: forward secret, but CBC.
    pub const ECDHE_ECDSA_AES128_CBC: u16 = 0xc009;
    /// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 (accepted: the control).
    pub const ECDHE_ECDSA_AES128_GCM: u16 = 0xc02b;

    pub const ALERT: u8 = 0x15;
    pub const HANDSHAKE: u8 = 0x16;
    pub const PROTOCOL_VERSION: u8 = 70;
    pub const HANDSHAKE_FAILURE: u8 = 40;

    fn ext(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
        out.extend(kind.to_be_bytes());
        out.extend((body.len() as u16).to_be_bytes());
        out.extend(body);
    }

    /// A ClientHello record offering `version` (no `supported_versions`
    /// extension, as TLS 1.0–1.2 clients send) and `suites`, with SNI
    /// localhost, P-256 and X25519, and ECDSA and RSA signatures.
    pub fn client_hello(version: u16, suites: &[u16]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend(version.to_be_bytes());
        body.extend([0x5a; 32]);
        body.push(0);
        body.extend(((suites.len() * 2) as u16).to_be_bytes());
        for s in suites {
            body.extend(s.to_be_bytes());
        }
        body.extend([1, 0]);
        let mut exts = Vec::new();
        let name = b"localhost";
        let mut sni = ((name.len() + 3) as u16).to_be_bytes().to_vec();
        sni.push(0);
        sni.extend((name.len() as u16).to_be_bytes());
        sni.extend(name);
        ext(&mut exts, 0x0000, &sni);
        ext(&mut exts, 0x000a, &[0, 4, 0, 0x17, 0, 0x1d]);
        ext(&mut exts, 0x000b, &[1, 0]);
        ext(&mut exts, 0x000d, &[0, 6, 4, 3, 8, 4, 4, 1]);
        body.extend((exts.len() as u16).to_be_bytes());
        body.extend(exts);
        let mut handshake = vec![1];
        handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
        handshake.extend(body);
        let mut record = vec![HANDSHAKE];
        record.extend(TLS10.to_be_bytes());
        record.extend((handshake.len() as u16).to_be_bytes());
        record.extend(handshake);
        record
    }
}
