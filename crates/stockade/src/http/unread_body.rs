//! Every request is answered without leaving its body unread on the
//! connection (issue #17 item 16).
//!
//! A handler may answer before it reads the body (a 401 or 403 from the
//! `Principal` extractor, a 413 from the body limit, a 405, a `DELETE` that
//! takes no body). hyper then writes the response head at once, *as
//! keep-alive* (nothing has told it otherwise yet), and only afterwards, when
//! it sees the body dropped, tries one cheap read of what is already
//! buffered: if the rest of the body has not arrived, it closes the
//! connection after the response (hyper 1.x `Conn::poll_drain_or_close_read`).
//! A client that believed the keep-alive response sends its next request on
//! a closing socket and gets "server disconnected" (or a reset) — the
//! intermittent failures under fuzzing, whose bodies often arrive in a
//! second TCP segment.
//!
//! One mechanism, for every route, in the layer stack: [`answer_whole`]
//! watches the body; after the handler answers, if the body was not read to
//! its end, it reads and discards the rest — at most `drain_limit` bytes
//! within [`DRAIN_TIME`] — before the response goes out, so the connection
//! stays usable. If it cannot (too large, too slow, a body the handler kept,
//! an unanswered `Expect: 100-continue`), the response says
//! `Connection: close`, so the client knows not to reuse the connection.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Version, header};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::oneshot;
use tokio_stream::StreamExt;

/// How long the rest of an unread body may take to arrive before the
/// connection is closed instead.
pub const DRAIN_TIME: Duration = Duration::from_secs(5);

/// The middleware; its state is the most bytes it reads and discards.
pub(crate) async fn answer_whole(
    State(drain_limit): State<usize>,
    req: Request,
    next: Next,
) -> Response {
    let http1 = matches!(req.version(), Version::HTTP_10 | Version::HTTP_11);
    if !http1 || req.body().is_end_stream() {
        return next.run(req).await;
    }
    let waits_for_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let too_large = declared_length(req.headers()).is_some_and(|n| n > drain_limit);
    let (parts, body) = req.into_parts();
    let (tx, mut rx) = oneshot::channel();
    let watched = Watched {
        inner: body,
        unread: Some(tx),
    };
    let mut res = next
        .run(Request::from_parts(parts, Body::new(watched)))
        .await;
    let whole = match rx.try_recv() {
        // Read to its end: the watcher dropped its sender without a word.
        Err(oneshot::error::TryRecvError::Closed) => true,
        // Dropped before its end: read the rest, if it may be.
        Ok(rest) => !waits_for_continue && !too_large && drain(rest, drain_limit).await,
        // Still held by someone (a task, the response): state unknown.
        Err(oneshot::error::TryRecvError::Empty) => false,
    };
    if !whole {
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

/// `Content-Length`, when given and well formed.
fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Reads and discards `body` up to its end; false when it is longer than
/// `limit`, fails, or does not end within [`DRAIN_TIME`].
async fn drain(body: Body, limit: usize) -> bool {
    let read = async {
        let mut stream = body.into_data_stream();
        let mut seen = 0usize;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    seen = seen.saturating_add(bytes.len());
                    if seen > limit {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
        true
    };
    tokio::time::timeout(DRAIN_TIME, read)
        .await
        .unwrap_or(false)
}

/// A request body that, dropped before its end, hands what is left of it
/// to [`answer_whole`]; at its end it drops that channel instead.
struct Watched {
    inner: Body,
    unread: Option<oneshot::Sender<Body>>,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            self.unread = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(tx) = self.unread.take() {
            if self.inner.is_end_stream() {
                return;
            }
            let rest = std::mem::take(&mut self.inner);
            // The receiver is gone only if the middleware itself was dropped
            // (the connection went away): then nothing is left to answer.
            let _ = tx.send(rest);
        }
    }
}
