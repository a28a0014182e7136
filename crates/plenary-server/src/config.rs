//! `plenary serve` configuration: command-line flags, the same settings from
//! `PLENARY_*` environment variables, and an optional TOML file
//! (`--config FILE`). Flags and environment win over the file, the file wins
//! over built-in defaults.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use serde::Deserialize;

/// Flags of `plenary serve`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (keys as the flags, with `_`).
    #[arg(long, env = "PLENARY_CONFIG")]
    pub config: Option<PathBuf>,
    /// HTTP/WebSocket listen address [default: 127.0.0.1:8080].
    #[arg(long, env = "PLENARY_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Media port: one UDP port for every peer, and ICE-TCP on the same
    /// port number [default: 8081; 0 picks a free port].
    #[arg(long, env = "PLENARY_RTC_PORT")]
    pub rtc_port: Option<u16>,
    /// IP address put in ICE candidates [default: the listen IP, or
    /// 127.0.0.1 when listening on all interfaces].
    #[arg(long, env = "PLENARY_PUBLIC_IP")]
    pub public_ip: Option<IpAddr>,
    /// PEM certificate chain; serves HTTPS/WSS with rustls when given with --tls-key.
    #[arg(long, env = "PLENARY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "PLENARY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A STUN or TURN URL handed to clients (repeatable); none by default.
    #[arg(long = "ice-server", env = "PLENARY_ICE_SERVERS", value_delimiter = ',')]
    pub ice_servers: Vec<String>,
    /// Disable ICE-TCP (passive TCP candidates on the media port).
    #[arg(long, env = "PLENARY_NO_ICE_TCP")]
    pub no_ice_tcp: bool,
    /// Serve the web client from this directory instead of the embedded copy (development).
    #[arg(long, env = "PLENARY_WEB_DIR")]
    pub web_dir: Option<PathBuf>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "PLENARY_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Operator tap: write every forwarded RTP packet, after SRTP
    /// decryption, to this pcap file (to check that media is end-to-end
    /// encrypted). Off by default.
    #[arg(long, env = "PLENARY_TAP", value_name = "FILE.pcap")]
    pub tap: Option<PathBuf>,
    /// Seconds a client may take to send a request's headers, to finish
    /// the TLS handshake, or to send its first ICE-TCP frame; also how long
    /// an idle keep-alive connection stays open. Slower clients are
    /// disconnected [default: 10].
    #[arg(long, env = "PLENARY_HEADER_TIMEOUT", value_name = "SECONDS")]
    pub header_timeout: Option<u64>,
    /// Most connections one address (IPv4 address or IPv6 /64) may hold
    /// open on the HTTP port, and on the ICE-TCP port; the next one gets
    /// HTTP 429 or is closed. 0 = no limit [default: 256].
    #[arg(long, env = "PLENARY_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// Most signaling (WebSocket) sessions one address may hold at once;
    /// the next upgrade request gets HTTP 429. Behind NAT or a reverse
    /// proxy many participants share one address: raise it there.
    /// 0 = no limit [default: 128].
    #[arg(long, env = "PLENARY_MAX_SESSIONS_PER_IP", value_name = "N")]
    pub max_sessions_per_ip: Option<usize>,
    /// Most audio streams each participant receives: the loudest other
    /// speakers of the room, ranked by the RFC 6464 audio levels senders
    /// put in clear. 0 forwards everyone's audio to everyone [default: 3].
    #[arg(long, env = "PLENARY_AUDIO_STREAMS", value_name = "N")]
    pub audio_streams: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    rtc_port: Option<u16>,
    public_ip: Option<IpAddr>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    #[serde(default)]
    ice_servers: Vec<String>,
    #[serde(default)]
    no_ice_tcp: bool,
    web_dir: Option<PathBuf>,
    log_format: Option<String>,
    tap: Option<PathBuf>,
    header_timeout: Option<u64>,
    max_connections_per_ip: Option<usize>,
    max_sessions_per_ip: Option<usize>,
    audio_streams: Option<usize>,
}

/// The resolved settings.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// Media port (0 = any free).
    pub rtc_port: u16,
    /// Address in candidates.
    pub public_ip: IpAddr,
    /// TLS certificate and key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// STUN/TURN URLs for clients.
    pub ice_servers: Vec<String>,
    /// ICE-TCP enabled.
    pub ice_tcp: bool,
    /// Development asset directory.
    pub web_dir: Option<PathBuf>,
    /// Log as JSON lines.
    pub log_json: bool,
    /// Operator tap file.
    pub tap: Option<PathBuf>,
    /// Limits on slow and greedy clients.
    pub limits: ClientLimits,
    /// Audio streams forwarded to each participant (0 = all).
    pub audio_streams: usize,
}

/// Audio streams each participant receives by default: the three loudest
/// other speakers, as Jitsi's "route loudest only" and other services do.
pub const DEFAULT_AUDIO_STREAMS: usize = 3;

/// What one client may hold and how slow it may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// Longest time for a request head, a TLS handshake, the first ICE-TCP
    /// frame, or an idle keep-alive connection.
    pub header_timeout: Duration,
    /// Open connections per address on the HTTP port and on the ICE-TCP
    /// port (each counted apart); 0 = no limit.
    pub connections_per_ip: usize,
    /// Signaling sessions per address; 0 = no limit.
    pub sessions_per_ip: usize,
}

impl Default for ClientLimits {
    /// 10 s, 256 connections, 128 sessions: far above what a browser (at
    /// most 6 HTTP connections and 1 session per meeting) or a test that
    /// runs 30 clients from 127.0.0.1 needs.
    fn default() -> Self {
        ClientLimits { header_timeout: Duration::from_secs(10), connections_per_ip: 256, sessions_per_ip: 128 }
    }
}

impl ServeArgs {
    /// Merges flags/env with the file and defaults.
    ///
    /// # Errors
    /// Unreadable or invalid TOML, a lone TLS file, an unknown log format.
    pub fn resolve(self) -> Result<ServeConfig> {
        let file: FileConfig = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let listen = self.listen.or(file.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        let public_ip = self
            .public_ip
            .or(file.public_ip)
            .unwrap_or_else(|| if listen.ip().is_unspecified() { IpAddr::from([127, 0, 0, 1]) } else { listen.ip() });
        let tls = match (self.tls_cert.or(file.tls_cert), self.tls_key.or(file.tls_key)) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => anyhow::bail!("--tls-cert and --tls-key go together"),
        };
        let ice_servers = if self.ice_servers.is_empty() { file.ice_servers } else { self.ice_servers };
        for url in &ice_servers {
            if !(url.starts_with("stun:") || url.starts_with("turn:") || url.starts_with("turns:")) {
                anyhow::bail!("ICE server {url:?} must start with stun:, turn: or turns:");
            }
        }
        let log_json = match self.log_format.or(file.log_format).as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => anyhow::bail!("unknown log format {other:?} (text or json)"),
        };
        let defaults = ClientLimits::default();
        let header_timeout =
            self.header_timeout.or(file.header_timeout).map_or(defaults.header_timeout, Duration::from_secs);
        if header_timeout.is_zero() {
            anyhow::bail!("--header-timeout must be at least 1 second");
        }
        let limits = ClientLimits {
            header_timeout,
            connections_per_ip: self
                .max_connections_per_ip
                .or(file.max_connections_per_ip)
                .unwrap_or(defaults.connections_per_ip),
            sessions_per_ip: self.max_sessions_per_ip.or(file.max_sessions_per_ip).unwrap_or(defaults.sessions_per_ip),
        };
        Ok(ServeConfig {
            listen,
            rtc_port: self.rtc_port.or(file.rtc_port).unwrap_or(8081),
            public_ip,
            tls,
            ice_servers,
            ice_tcp: !(self.no_ice_tcp || file.no_ice_tcp),
            web_dir: self.web_dir.or(file.web_dir),
            log_json,
            tap: self.tap.or(file.tap),
            limits,
            audio_streams: self.audio_streams.or(file.audio_streams).unwrap_or(DEFAULT_AUDIO_STREAMS),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file_and_defaults() {
        let dir = std::env::temp_dir().join(format!("plenary-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("p.toml");
        std::fs::write(
            &file,
            "listen = \"0.0.0.0:9000\"\nrtc_port = 9001\nice_servers = [\"stun:example.org\"]\nheader_timeout = 3\n\
             max_sessions_per_ip = 7\naudio_streams = 0\n",
        )
        .unwrap();
        let args = ServeArgs { config: Some(file.clone()), rtc_port: Some(7000), ..Default::default() };
        let c = args.resolve().unwrap();
        assert_eq!(c.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(c.rtc_port, 7000);
        assert_eq!(c.public_ip, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(c.ice_servers, vec!["stun:example.org".to_string()]);
        assert_eq!(c.audio_streams, 0, "every audio stream, from the file");
        assert_eq!(
            c.limits,
            ClientLimits { header_timeout: Duration::from_secs(3), sessions_per_ip: 7, ..ClientLimits::default() }
        );
        std::fs::write(&file, "listn = 1").unwrap();
        assert!(ServeArgs { config: Some(file), ..Default::default() }.resolve().is_err(), "unknown keys are errors");
        let d = ServeArgs::default().resolve().unwrap();
        assert_eq!(d.listen, "127.0.0.1:8080".parse().unwrap());
        assert!(d.tls.is_none() && d.ice_tcp);
        assert_eq!(d.limits, ClientLimits::default());
        assert_eq!(d.audio_streams, DEFAULT_AUDIO_STREAMS);
        let zero = ServeArgs { header_timeout: Some(0), ..Default::default() };
        assert!(zero.resolve().is_err(), "a zero header timeout would cut off every client");
    }
}
