//! What `stockade serve` listens on: the API (HTTPS when
//! `STOCKADE_TLS_CERT_FILE`/`STOCKADE_TLS_KEY_FILE` are set, else plain
//! HTTP) and, with `STOCKADE_HTTP_REDIRECT_LISTEN`, the plain-HTTP
//! redirector. Both run the same connection loop (`super::listener`) and
//! stop together; the certificate files are watched while they run.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;

use super::listener::{self, ServeOptions};
use super::redirector;
use super::tls::{self, Tls};
use crate::config::Config;

/// Why the listeners could not start: a TLS pair that cannot be used is a
/// configuration error (exit 2), an address that cannot be bound is not.
#[derive(Debug)]
pub enum StartError {
    Tls(String),
    Bind(String),
}

impl StartError {
    pub fn line(&self) -> &str {
        match self {
            Self::Tls(line) | Self::Bind(line) => line,
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Tls(_) => 2,
            Self::Bind(_) => 1,
        }
    }
}

/// The bound listeners, not yet serving.
pub struct Listeners {
    api: TcpListener,
    api_addr: SocketAddr,
    tls: Option<Tls>,
    redirect: Option<(TcpListener, SocketAddr)>,
    options: ServeOptions,
    redirect_router: Option<Router>,
}

impl Listeners {
    /// Reads the TLS pair, then binds the API and the redirector.
    pub async fn bind(config: &Config) -> Result<Self, StartError> {
        let tls = match &config.tls {
            Some(files) => Some(Tls::load(files).map_err(StartError::Tls)?),
            None => None,
        };
        let (api, api_addr) = bind(config.listen).await?;
        let redirect = match config.http_redirect_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let redirect_router = match (&config.public_url, &redirect) {
            (Some(public), Some(_)) => Some(redirector::router(
                public,
                config.acme_challenge_dir.clone(),
            )),
            _ => None,
        };
        Ok(Self {
            api,
            api_addr,
            tls,
            redirect,
            options: ServeOptions::from_config(config),
            redirect_router,
        })
    }

    /// `https://addr` or `http://addr`, then the public URL and the
    /// redirector when there are.
    pub fn describe(&self, config: &Config) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut text = format!("{scheme}://{}", self.api_addr);
        let mut notes = Vec::new();
        if config.public_url.is_some() {
            notes.push(format!("public URL {}", config.base_url()));
        }
        if let Some((_, addr)) = &self.redirect {
            notes.push(format!("HTTP redirector on http://{addr}"));
        }
        if !notes.is_empty() {
            text.push_str(&format!(" ({})", notes.join("; ")));
        }
        text
    }

    /// Serves `router` (and the redirector) until `shutdown` resolves.
    pub async fn serve(
        self,
        router: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let when_stopped = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        let watch = self
            .tls
            .as_ref()
            .map(|t| t.certificates.clone().watch(tls::RELOAD_EVERY));
        let api_options = match &self.tls {
            Some(t) => self.options.clone().with_tls(t.acceptor.clone()),
            None => self.options.clone(),
        };
        let api = listener::serve(self.api, router, when_stopped(), api_options);
        let served = match (self.redirect, self.redirect_router) {
            (Some((listener, _)), Some(router)) => {
                let redirect = listener::serve(listener, router, when_stopped(), self.options);
                let (api, redirect) = tokio::join!(api, redirect);
                api.and(redirect)
            }
            _ => api.await,
        };
        if let Some(watch) = watch {
            watch.abort();
        }
        served
    }
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| StartError::Bind(format!("cannot listen on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| StartError::Bind(format!("cannot read the listening address: {e}")))?;
    Ok((listener, local))
}

/// `config check`'s lines about listening: a TLS pair that cannot be used
/// is a problem; otherwise what will be served.
pub fn check(config: &Config) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    match &config.tls {
        Some(files) => {
            Tls::load(files)?;
            lines.push(format!(
                "tls: on (TLS 1.3 and 1.2; certificate {}, key {}, re-read when they change)",
                files.cert_file.display(),
                files.key_file.display()
            ));
        }
        None if config.behind_tls_proxy => {
            lines.push("tls: off (plain HTTP; a TLS proxy in front, X-Forwarded-Proto from the trusted proxies)".to_owned())
        }
        None => lines.push("tls: off (plain HTTP)".to_owned()),
    }
    if let Some(addr) = config.http_redirect_listen {
        lines.push(format!(
            "http redirector: {addr} answers 308 to {}{}",
            config.base_url(),
            match &config.acme_challenge_dir {
                Some(dir) => format!(", ACME challenges from {}", dir.display()),
                None => String::new(),
            }
        ));
    }
    Ok(lines)
}
