//! Connections are answered, not dropped (issue #17 item 16). Requests
//! refused before their body is read (401, a non-owner's 403 on
//! `POST /v1/platform/*`, a `DELETE` or `GET` with a body) are sent on ONE
//! keep-alive connection over raw TCP, with their bodies arriving in a
//! second segment as a fuzzer's often do, chunked, pipelined, and larger
//! than the limit. Every request must be answered; a connection may end only
//! after a response that says `Connection: close`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::auth::{server, signup};
use crate::testkit::Backend;

/// How long a response may take (the server may wait up to
/// `unread_body::DRAIN_TIME` for a body before it answers).
const READ_TIMEOUT: Duration = Duration::from_secs(15);
/// The pause between a request's head and the rest of its body.
const PAUSE: Duration = Duration::from_millis(150);

#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
}

impl Answer {
    fn closes(&self) -> bool {
        self.head.lines().any(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("connection:") && l.contains("close")
        })
    }
}

/// A raw HTTP/1.1 client connection.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        Conn {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    /// Writes `bytes`; false when the server has already closed.
    async fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok() && self.stream.flush().await.is_ok()
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(READ_TIMEOUT, self.stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            _ => false,
        }
    }

    /// The next response, or `None` when the connection ends (or is reset)
    /// before one arrives.
    async fn answer(&mut self) -> Option<Answer> {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if !self.fill().await {
                return None;
            }
        };
        let head = String::from_utf8(self.buf.drain(..end).collect()).unwrap();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        };
        if let Some(len) = header("content-length") {
            let len: usize = len.parse().unwrap();
            while self.buf.len() < len {
                if !self.fill().await {
                    return None;
                }
            }
            self.buf.drain(..len);
        } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let line_end = loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    if !self.fill().await {
                        return None;
                    }
                };
                let size_line =
                    String::from_utf8(self.buf.drain(..line_end + 2).collect()).unwrap();
                let size = usize::from_str_radix(size_line.trim(), 16).unwrap();
                while self.buf.len() < size + 2 {
                    if !self.fill().await {
                        return None;
                    }
                }
                self.buf.drain(..size + 2);
                if size == 0 {
                    break;
                }
            }
        }
        Some(Answer { status, head })
    }
}

fn head(method: &str, path: &str, token: Option<&str>, framing: &str) -> String {
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    format!(
        "{method} {path} HTTP/1.1\r\nhost: stockade.test\r\n{auth}content-type: application/json\r\n{framing}\r\n"
    )
}

fn body(len: usize) -> String {
    let pad = "x".repeat(len.saturating_sub(40));
    format!(r#"{{"confirm":true,"reason":"r","pad":"{pad}"}}"#)
}

fn chunked(body: &str, pieces: usize) -> Vec<String> {
    let size = body.len().div_ceil(pieces);
    let mut out: Vec<String> = body
        .as_bytes()
        .chunks(size)
        .map(|c| format!("{:x}\r\n{}\r\n", c.len(), std::str::from_utf8(c).unwrap()))
        .collect();
    out.push("0\r\n\r\n".to_owned());
    out
}

async fn early_rejections_keep_the_connection_answering(backend: Backend) {
    let Some(s) = server(backend, &[("STOCKADE_BODY_LIMIT", "2048")]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    let token = Some(a.access.as_str());
    let id = uuid::Uuid::now_v7();
    let suspend = format!("/v1/platform/tenants/{id}/suspend");
    let session = format!("/v1/auth/sessions/{id}");
    let b = body(600);
    let len = format!("content-length: {}\r\n", b.len());
    let te = "transfer-encoding: chunked\r\n";
    // (what, expected status, the segments sent with a pause between them:
    // the head with part of the body, then the rest.)
    let (half, rest) = b.split_at(b.len() / 2);
    let chunks = chunked(&b, 3);
    let cases: Vec<(&str, u16, Vec<String>)> = vec![
        (
            "non-owner on a platform route",
            403,
            vec![head("POST", &suspend, token, &len) + half, rest.to_owned()],
        ),
        (
            "no credentials",
            401,
            vec![
                head("POST", "/v1/platform/impersonate", None, &len) + half,
                rest.to_owned(),
            ],
        ),
        (
            "DELETE with a body",
            404,
            vec![
                head("DELETE", &session, token, &len) + half,
                rest.to_owned(),
            ],
        ),
        (
            "GET with a body",
            200,
            vec![head("GET", "/healthz", None, &len) + half, rest.to_owned()],
        ),
        (
            "chunked, in three segments",
            403,
            vec![
                head("POST", "/v1/platform/sign-in-links", token, te) + &chunks[0],
                chunks[1].clone(),
                chunks[2..].concat(),
            ],
        ),
        (
            "only the head first",
            401,
            vec![head("POST", &suspend, None, &len), b.clone()],
        ),
    ];
    let mut conn = Conn::open(s.addr).await;
    for (what, status, segments) in &cases {
        for (i, segment) in segments.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(PAUSE).await;
            }
            assert!(
                conn.send(segment.as_bytes()).await,
                "{what}: connection dropped while sending"
            );
        }
        let answer = conn
            .answer()
            .await
            .unwrap_or_else(|| panic!("{what}: no answer, the connection was dropped"));
        assert_eq!(answer.status, *status, "{what}: {}", answer.head);
        assert!(
            !answer.closes(),
            "{what}: the connection was given up: {}",
            answer.head
        );
        // The next request on the same connection is answered.
        assert!(
            conn.send(head("GET", "/healthz", None, "").as_bytes())
                .await,
            "{what}: connection dropped after the answer"
        );
        let next = conn.answer().await;
        assert!(
            next.as_ref().is_some_and(|n| n.status == 200),
            "{what}: the next request on the connection got {next:?} (server disconnected)"
        );
    }

    // A pipelined pair in one write: both answered, in order.
    let pair = head("POST", "/v1/platform/impersonate", token, &len)
        + &b
        + &head("GET", "/healthz", None, "");
    assert!(conn.send(pair.as_bytes()).await);
    let first = conn.answer().await.expect("first of the pair");
    assert_eq!(first.status, 403, "{}", first.head);
    let second = conn.answer().await.expect("second of the pair");
    assert_eq!(second.status, 200, "{}", second.head);

    // Larger than the limit: answered, with `Connection: close`, and only
    // then closed; the same for a chunked body and for a client waiting
    // for `100 Continue`.
    let big = body(64 * 1024);
    let big_len = format!("content-length: {}\r\n", big.len());
    let big_chunks = chunked(&big, 16);
    let heads = [
        (
            "over the limit",
            head("POST", "/v1/platform/impersonate", None, &big_len),
            big.clone(),
            401,
        ),
        (
            "over the limit, read by its handler",
            head("POST", "/v1/auth/login", None, &big_len),
            big.clone(),
            413,
        ),
        (
            "chunked over the limit",
            head("POST", &suspend, token, te),
            big_chunks.concat(),
            403,
        ),
        (
            "waiting for 100 Continue",
            head(
                "POST",
                &suspend,
                None,
                &(len.clone() + "expect: 100-continue\r\n"),
            ),
            String::new(),
            401,
        ),
    ];
    for (what, request_head, rest, status) in heads {
        let mut conn = Conn::open(s.addr).await;
        assert!(conn.send(request_head.as_bytes()).await);
        // The body goes out beside the reading, as a client's upload does;
        // the server may stop reading it.
        let (mut reader, mut writer) = conn.stream.into_split();
        let upload = tokio::spawn(async move {
            let _ = writer.write_all(rest.as_bytes()).await;
            writer
        });
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        let text = loop {
            match tokio::time::timeout(READ_TIMEOUT, reader.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => break String::from_utf8_lossy(&buf).into_owned(),
            }
        };
        let _ = upload.await;
        let answer = Answer {
            status: text
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{what}: no answer: {text:?}")),
            head: text.split("\r\n\r\n").next().unwrap_or_default().to_owned(),
        };
        assert_eq!(answer.status, status, "{what}: {text}");
        assert!(answer.closes(), "{what}: closed without saying so: {text}");
    }

    // And the first connection still serves.
    assert!(
        conn.send(head("GET", "/healthz", None, "").as_bytes())
            .await
    );
    assert_eq!(conn.answer().await.map(|a| a.status), Some(200));
    s.stop().await;
}

crate::both_servers!(early_rejections_keep_the_connection_answering);
