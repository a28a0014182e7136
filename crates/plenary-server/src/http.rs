//! HTTP routes: the web client, `/ws` signaling and `/healthz`.

use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use plenary_proto::{MAX_CLIENT_MESSAGE_BYTES, RoomId};

use crate::assets::Assets;
use crate::limits::PerAddress;
use crate::media::MediaHandle;
use crate::ws_socket::{UnfinishedBudget, Upgrade};

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    /// The media loop.
    pub media: MediaHandle,
    /// Web client files.
    pub assets: Assets,
    /// Open signaling sessions per address.
    pub sessions: Arc<PerAddress>,
    /// Bytes of unfinished incoming signaling messages, all connections.
    pub unfinished: Arc<AtomicUsize>,
}

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/ws", get(ws))
        .route("/", get(|State(s): State<AppState>| async move { s.assets.respond("index.html") }))
        .route("/m/{room}", get(meeting))
        .fallback(get(static_file))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// Upgrades to a signaling session, or answers `429 Too Many Requests`
/// when the client's address holds too many sessions already.
async fn ws(State(s): State<AppState>, ConnectInfo(remote): ConnectInfo<SocketAddr>, upgrade: Upgrade) -> Response {
    let slot = match s.sessions.acquire(remote.ip()) {
        Ok(slot) => slot,
        Err(e) => {
            return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "10")], e.to_string()).into_response();
        }
    };
    // Once joined, frames up to 4x the protocol limit reach the decoder
    // and get a typed error; larger ones close the connection. Before
    // joining, messages over PRE_JOIN_MESSAGE_BYTES close it. All sessions
    // of one address together may hold ADDRESS_UNFINISHED_BYTES of
    // unfinished messages, all sessions SERVER_UNFINISHED_BYTES.
    let unfinished = UnfinishedBudget {
        address: slot.held_bytes(),
        per_address: crate::ws::ADDRESS_UNFINISHED_BYTES,
        server: Arc::clone(&s.unfinished),
        per_server: crate::ws::SERVER_UNFINISHED_BYTES,
    };
    upgrade.accept(
        MAX_CLIENT_MESSAGE_BYTES * 4,
        crate::ws::PRE_JOIN_MESSAGE_BYTES,
        unfinished,
        move |socket, limit| async move {
            crate::ws::serve(socket, limit, s.media).await;
            drop(slot);
        },
    )
}

async fn meeting(State(s): State<AppState>, Path(room): Path<String>) -> Response {
    if RoomId::parse(&room).is_err() {
        return (StatusCode::NOT_FOUND, "This meeting link is not valid.").into_response();
    }
    s.assets.respond("meeting.html")
}

async fn static_file(State(s): State<AppState>, uri: Uri) -> Response {
    s.assets.respond(uri.path().trim_start_matches('/'))
}

/// Nothing may load from another origin (DESIGN.md, threat model); no
/// referrer leaves the page.
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data: blob:; media-src 'self' blob: mediastream:; connect-src 'self'; \
             worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    res
}
