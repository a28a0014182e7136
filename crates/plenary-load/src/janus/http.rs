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
    /// POSTs `body` as JSON to `path` and returns the JSON answer.
    pub(crate) async fn post(&self, path: &str, body: &Value, timeout: Duration) -> Result<Value, JanusError> {
        let body = Bytes::from(serde_json::to_vec(body).map_err(|e| JanusError::Protocol(e.to_string()))?);
        self.request("POST", path, body, timeout).await
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
