//! From a meeting link to the signaling endpoint and room id.
//!
//! A meeting link is `http(s)://HOST[:PORT][/PREFIX]/m/<room>[?query][#fragment]`.
//! The WebSocket endpoint is `ws(s)://HOST[:PORT][/PREFIX]/ws`. The fragment
//! holds the meeting secret (DESIGN.md): it is dropped here and never sent
//! anywhere; the query is ignored.

use plenary_proto::RoomId;
use url::Url;

/// Why a meeting link is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// Not a URL at all.
    #[error("not a URL: {0}")]
    Parse(String),
    /// A scheme other than http, https, ws or wss.
    #[error("unsupported scheme {0:?} (expected http or https)")]
    Scheme(String),
    /// No host.
    #[error("the link has no host")]
    NoHost,
    /// The path does not end in `/m/<room>`.
    #[error("the link's path does not end in /m/<room>")]
    NoRoom,
    /// The room part is not a valid room id.
    #[error("bad room id: {0}")]
    BadRoom(#[from] plenary_proto::RoomIdError),
}

/// A parsed meeting link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingUrl {
    /// Signaling endpoint, `ws://…/ws` or `wss://…/ws`, without query or fragment.
    pub ws_url: Url,
    /// Room id.
    pub room: RoomId,
}

impl MeetingUrl {
    /// Parses a meeting link.
    ///
    /// # Errors
    /// [`UrlError`] for anything but `http(s)://host[:port][/prefix]/m/<room>`
    /// (`ws`/`wss` are accepted as synonyms).
    ///
    /// ```
    /// use plenary_client::MeetingUrl;
    /// let m = MeetingUrl::parse("http://127.0.0.1:8080/m/standup?name=x#secret").unwrap();
    /// assert_eq!(m.ws_url.as_str(), "ws://127.0.0.1:8080/ws");
    /// assert_eq!(m.room.as_str(), "standup");
    /// ```
    pub fn parse(link: &str) -> Result<MeetingUrl, UrlError> {
        let mut url = Url::parse(link.trim()).map_err(|e| UrlError::Parse(e.to_string()))?;
        let ws_scheme = match url.scheme() {
            "http" | "ws" => "ws",
            "https" | "wss" => "wss",
            other => return Err(UrlError::Scheme(other.to_owned())),
        };
        if url.host_str().is_none_or(str::is_empty) {
            return Err(UrlError::NoHost);
        }
        url.set_fragment(None);
        url.set_query(None);
        let path = url.path().trim_end_matches('/').to_owned();
        let (prefix, room) = path.rsplit_once('/').ok_or(UrlError::NoRoom)?;
        let prefix = prefix.strip_suffix("/m").ok_or(UrlError::NoRoom)?;
        let room = RoomId::parse(room)?;
        url.set_path(&format!("{prefix}/ws"));
        // Both schemes are "special" in the url crate, so this cannot fail.
        url.set_scheme(ws_scheme).map_err(|()| UrlError::Scheme(ws_scheme.to_owned()))?;
        Ok(MeetingUrl { ws_url: url, room })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_links() {
        let m = MeetingUrl::parse("https://meet.example.org/m/abc-123_X#k3y").unwrap();
        assert_eq!(m.ws_url.as_str(), "wss://meet.example.org/ws");
        assert_eq!(m.room.as_str(), "abc-123_X");
        let m = MeetingUrl::parse("http://[::1]:18080/plenary/m/r1/?autojoin=1&name=a").unwrap();
        assert_eq!(m.ws_url.as_str(), "ws://[::1]:18080/plenary/ws");
        assert_eq!(m.room.as_str(), "r1");
        let m = MeetingUrl::parse("  http://localhost:8080/m/r  ").unwrap();
        assert_eq!(m.ws_url.as_str(), "ws://localhost:8080/ws");
    }

    #[test]
    fn the_fragment_never_reaches_the_ws_url() {
        let m = MeetingUrl::parse("http://h:1/m/r?q=1#secret-part").unwrap();
        assert!(!m.ws_url.as_str().contains("secret"));
        assert!(!m.ws_url.as_str().contains('#'));
        assert!(!m.ws_url.as_str().contains('?'));
    }

    #[test]
    fn rejects_bad_links() {
        assert!(matches!(MeetingUrl::parse("not a url"), Err(UrlError::Parse(_))));
        assert!(matches!(MeetingUrl::parse("ftp://h/m/r"), Err(UrlError::Scheme(_))));
        assert!(matches!(MeetingUrl::parse("http://h/x/r"), Err(UrlError::NoRoom)));
        assert!(matches!(MeetingUrl::parse("http://h/"), Err(UrlError::NoRoom)));
        assert!(matches!(MeetingUrl::parse("http://h/m/"), Err(UrlError::NoRoom)));
        assert!(matches!(MeetingUrl::parse("http://h/m/a%20b"), Err(UrlError::BadRoom(_))));
    }
}
