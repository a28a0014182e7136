//! The WebSocket opening handshake (RFC 6455 §4.2.1) as the server checks
//! it (`ws_socket::Upgrade`, an axum extractor): any method and any
//! `Connection`, `Upgrade`, `Sec-WebSocket-Version` and
//! `Sec-WebSocket-Key` headers, repeated or not. Never panics; a request
//! is accepted exactly when its key is one base64 value of 16 bytes and
//! the rest is a version-13 WebSocket GET, and then the answer is
//! `101 Switching Protocols` with the key's `Sec-WebSocket-Accept` (§4.2.2).
//!
//! Input: byte 0 picks the method (bit 0: GET or POST); then header
//! lines separated by `\n`, each `name-index value`, with the first byte
//! choosing among the four header names.
#![no_main]
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use axum::extract::FromRequestParts;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use plenary_server::ws_socket::{UnfinishedBudget, Upgrade, UpgradeError};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

const NAMES: [header::HeaderName; 4] =
    [header::CONNECTION, header::UPGRADE, header::SEC_WEBSOCKET_VERSION, header::SEC_WEBSOCKET_KEY];

fuzz_target!(|data: &[u8]| {
    let Some((&method, lines)) = data.split_first() else { return };
    let mut req = Request::new(());
    *req.method_mut() = if method & 1 == 0 { Method::GET } else { Method::POST };
    for line in lines.split(|&b| b == b'\n') {
        let Some((&name, value)) = line.split_first() else { continue };
        if let Ok(v) = HeaderValue::from_bytes(value) {
            req.headers_mut().append(NAMES[usize::from(name % 4)].clone(), v);
        }
    }
    let keys: Vec<HeaderValue> = req.headers().get_all(header::SEC_WEBSOCKET_KEY).iter().cloned().collect();
    let one_nonce = keys.len() == 1
        && keys[0].len() == 24
        && base64::engine::general_purpose::STANDARD.decode(keys[0].as_bytes()).is_ok_and(|k| k.len() == 16);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (mut parts, ()) = req.into_parts();
    parts.extensions.insert(on_upgrade);
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    rt.block_on(async {
        match Upgrade::from_request_parts(&mut parts, &()).await {
            Ok(upgrade) => {
                assert!(one_nonce, "accepted without one 16-byte nonce");
                assert_eq!(parts.method, Method::GET);
                let budget = UnfinishedBudget {
                    address: Arc::new(AtomicUsize::new(0)),
                    per_address: 1,
                    server: Arc::new(AtomicUsize::new(0)),
                    per_server: 1,
                };
                let response = upgrade.accept(1024, 1024, budget, |_, _| async {});
                assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
                let accept = response.headers().get(header::SEC_WEBSOCKET_ACCEPT).expect("Sec-WebSocket-Accept");
                assert_eq!(accept.as_bytes(), derive_accept_key(keys[0].as_bytes()).as_bytes());
            }
            Err(UpgradeError::BadKey | UpgradeError::NoKey) => assert!(!one_nonce, "a good key refused"),
            Err(_) => {}
        }
    });
});
