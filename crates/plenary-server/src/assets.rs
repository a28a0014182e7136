//! The browser client, embedded at compile time from `web/` (or served from
//! a directory given with `--web-dir`, for development).

use std::borrow::Cow;
use std::path::{Component, Path, PathBuf};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../../web/"]
struct Web;

/// Where web assets come from.
#[derive(Debug, Clone)]
pub enum Assets {
    /// Compiled into the binary.
    Embedded,
    /// Read from this directory on every request.
    Dir(PathBuf),
}

impl Assets {
    /// The file at `path` (relative, `/`-separated), if it exists and the
    /// path stays inside the asset root.
    pub fn get(&self, path: &str) -> Option<Cow<'static, [u8]>> {
        let rel = Path::new(path);
        if path.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return None;
        }
        match self {
            Assets::Embedded => Web::get(path).map(|f| f.data),
            Assets::Dir(root) => std::fs::read(root.join(rel)).ok().map(Cow::Owned),
        }
    }

    /// An HTTP response for `path`, or 404.
    pub fn respond(&self, path: &str) -> Response {
        match self.get(path) {
            Some(body) => {
                let mime = mime_guess::from_path(path).first_or_octet_stream();
                let mut res = (StatusCode::OK, body.into_owned()).into_response();
                if let Ok(v) = HeaderValue::from_str(mime.as_ref()) {
                    res.headers_mut().insert(header::CONTENT_TYPE, v);
                }
                res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                res
            }
            None => (StatusCode::NOT_FOUND, "not found").into_response(),
        }
    }
}
