//! A tiny HTTP/1.1 JSON client for Janus's REST transport: one TCP
//! connection per request (hyper's connection-level client), so a long-poll
//! GET never blocks the POSTs that go beside it.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::JanusError;

/// The largest response body accepted (Janus's SDPs and events are a few
/// KiB; a long poll returns at most `maxev` of them).
const MAX_BODY: usize = 4 << 20;

/// `http://addr` with a per-request timeout.
#[derive(Debug, Clone)]
pub(crate) struct Http {
    pub(crate) addr: SocketAddr,
}

impl Http {
    /// POSTs `body` as JSON to `path` and returns the JSON answer, which
    /// must echo the request's `transaction` (Janus does, errors included).
    pub(crate) async fn post(&self, path: &str, body: &Value, timeout: Duration) -> Result<Value, JanusError> {
        let bytes = Bytes::from(serde_json::to_vec(body).map_err(|e| JanusError::Protocol(e.to_string()))?);
        let answer = self.request("POST", path, bytes, timeout).await?;
        check_transaction(body, &answer)?;
        Ok(answer)
    }

    /// GETs `path` and returns the JSON answer.
    pub(crate) async fn get(&self, path: &str, timeout: Duration) -> Result<Value, JanusError> {
        self.request("GET", path, Bytes::new(), timeout).await
    }

    async fn request(&self, method: &str, path: &str, body: Bytes, timeout: Duration) -> Result<Value, JanusError> {
        let fut = async {
            let stream = tokio::net::TcpStream::connect(self.addr).await.map_err(JanusError::Http)?;
            stream.set_nodelay(true).map_err(JanusError::Http)?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| JanusError::Protocol(format!("HTTP handshake: {e}")))?;
            let conn = tokio::spawn(conn);
            let req = Request::builder()
                .method(method)
                .uri(path)
                .header("host", self.addr.to_string())
                .header("content-type", "application/json")
                .body(Full::new(body))
                .map_err(|e| JanusError::Protocol(e.to_string()))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| JanusError::Protocol(format!("HTTP {method} {path}: {e}")))?;
            let status = resp.status();
            let limited = http_body_util::Limited::new(resp.into_body(), MAX_BODY);
            let bytes = limited
                .collect()
                .await
                .map_err(|e| JanusError::Protocol(format!("HTTP body of {method} {path}: {e}")))?
                .to_bytes();
            conn.abort();
            if !status.is_success() {
                return Err(JanusError::Status { status: status.as_u16(), path: path.to_string() });
            }
            serde_json::from_slice(&bytes).map_err(|e| JanusError::Protocol(format!("JSON from {method} {path}: {e}")))
        };
        tokio::time::timeout(timeout, fut).await.map_err(|_| JanusError::Timeout(format!("HTTP {method} {path}")))?
    }
}

/// An answer to a request carrying a `transaction` must carry the same one:
/// an answer to another request (a confused proxy, a broken server) would
/// otherwise be taken for this one.
pub(crate) fn check_transaction(request: &Value, answer: &Value) -> Result<(), JanusError> {
    let Some(sent) = request.get("transaction") else { return Ok(()) };
    match answer.get("transaction") {
        Some(got) if got == sent => Ok(()),
        got => Err(JanusError::Protocol(format!(
            "answer to transaction {sent} carries transaction {}",
            got.map_or_else(|| "none".to_string(), Value::to_string)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A fake Janus: answers every connection's request with `respond(request body)`
    /// (a whole HTTP response, or `None` to hold the connection open, silent).
    async fn fake(respond: fn(&Value) -> Option<Vec<u8>>) -> Http {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else { return };
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 4096];
                    // Headers, then Content-Length bytes of body.
                    let body = loop {
                        let Ok(n @ 1..) = s.read(&mut buf).await else { return };
                        req.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&req).to_string();
                        let Some(end) = text.find("\r\n\r\n") else { continue };
                        let len = text
                            .lines()
                            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(str::to_owned))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if req.len() >= end + 4 + len {
                            break serde_json::from_slice(&req[end + 4..end + 4 + len]).unwrap_or(Value::Null);
                        }
                    };
                    match respond(&body) {
                        Some(r) => {
                            let _ = s.write_all(&r).await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(3600)).await,
                    }
                });
            }
        });
        Http { addr }
    }

    fn ok(body: &[u8]) -> Vec<u8> {
        let mut r = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
        r.extend_from_slice(body);
        r
    }

    fn echo(req: &Value, mut answer: Value) -> Option<Vec<u8>> {
        answer["transaction"] = req["transaction"].clone();
        Some(ok(answer.to_string().as_bytes()))
    }

    const T: Duration = Duration::from_secs(20);

    static POLLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    #[tokio::test]
    async fn a_long_poll_answered_at_once_with_nothing_does_not_spin() {
        let http = fake(|req| {
            if req.is_null() {
                // GET: the long poll, answered at once, empty.
                POLLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Some(ok(b"[]"));
            }
            echo(req, json!({"janus": "success", "data": {"id": 7}}))
        })
        .await;
        let session = crate::janus::JanusSession::create(http).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let polls = POLLS.load(std::sync::atomic::Ordering::Relaxed);
        drop(session);
        assert!((1..=10).contains(&polls), "{polls} long polls in 1 s");
    }

    fn create() -> Value {
        json!({"janus": "create", "transaction": "t0"})
    }

    #[tokio::test]
    async fn a_hostile_or_broken_janus_gets_typed_errors_not_hangs() {
        // The well-behaved answer, for contrast.
        let http = fake(|req| echo(req, json!({"janus": "success", "data": {"id": 7}}))).await;
        assert_eq!(http.post("/janus", &create(), T).await.unwrap()["data"]["id"], 7);

        let http = fake(|_| Some(ok(b"{\"janus\": \"success\", \"data\": {"))).await;
        assert!(matches!(http.post("/janus", &create(), T).await, Err(JanusError::Protocol(m)) if m.contains("JSON")));

        // An answer to another transaction is not taken for this one.
        let http = fake(|_| Some(ok(br#"{"janus":"success","transaction":"t9","data":{"id":7}}"#))).await;
        assert!(matches!(http.post("/janus", &create(), T).await, Err(JanusError::Protocol(m)) if m.contains("t9")));
        let http = fake(|_| Some(ok(br#"{"janus":"success","data":{"id":7}}"#))).await;
        assert!(matches!(http.post("/janus", &create(), T).await, Err(JanusError::Protocol(_))));

        // A body over the limit (read no further than it).
        let http = fake(|_| {
            let mut r = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n[", 64 << 20).into_bytes();
            r.resize(MAX_BODY + (1 << 20), b' ');
            Some(r)
        })
        .await;
        assert!(matches!(http.post("/janus", &create(), T).await, Err(JanusError::Protocol(m)) if m.contains("body")));

        let http = fake(|_| Some(b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\n".to_vec())).await;
        assert!(matches!(http.post("/janus", &create(), T).await, Err(JanusError::Status { status: 503, .. })));
        let http = fake(|_| Some(b"SSH-2.0-OpenSSH\r\n".to_vec())).await;
        assert!(matches!(http.post("/janus", &create(), T).await, Err(JanusError::Protocol(_))));

        // Never answers: the request's timeout ends it.
        let http = fake(|_| None).await;
        let started = tokio::time::Instant::now();
        assert!(matches!(
            http.post("/janus", &create(), Duration::from_millis(300)).await,
            Err(JanusError::Timeout(_))
        ));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
