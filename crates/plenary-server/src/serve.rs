//! `plenary serve`: binds the sockets, starts the media loop and the HTTP
//! server, prints the URL to open.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use plenary_proto::IceServer;
use plenary_sfu::{Sfu, SfuConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use crate::assets::Assets;
use crate::config::ServeConfig;
use crate::http::{AppState, router};
use crate::limits::PerAddress;
use crate::listen::{self, HttpLimits};
use crate::media::{self, MediaHandle};
use crate::tap::Tap;
use crate::tcp::{TcpLimits, TcpMux};

/// Runs the server until Ctrl-C.
///
/// # Errors
/// A socket that cannot be bound, unreadable TLS files.
pub async fn run(cfg: ServeConfig) -> Result<()> {
    let media_bind = SocketAddr::new(cfg.listen.ip(), cfg.rtc_port);
    let udp = UdpSocket::bind(media_bind).await.with_context(|| format!("binding UDP media port {media_bind}"))?;
    let port = udp.local_addr()?.port();
    // All participants' media, STUN and DTLS share this socket: a small
    // buffer drops joiners' handshakes whenever the media loop falls behind.
    let wanted = plenary_client::udp_buffer::SERVER_RECV_BUFFER;
    match plenary_client::udp_buffer::enlarge_recv_buffer(&udp, wanted) {
        Ok(granted) if granted < wanted => warn!(
            granted,
            wanted,
            "UDP receive buffer smaller than wanted; raise net.core.rmem_max (sysctl) to avoid packet loss under load"
        ),
        Ok(granted) => info!(granted, "UDP receive buffer"),
        Err(e) => warn!(error = %e, "cannot size the UDP receive buffer"),
    }
    let advertised = SocketAddr::new(cfg.public_ip, port);

    let tcp = if cfg.ice_tcp {
        match TcpListener::bind(SocketAddr::new(cfg.listen.ip(), port)).await {
            Ok(l) => Some(TcpMux::start(
                l,
                advertised,
                TcpLimits {
                    first_frame_timeout: cfg.limits.header_timeout,
                    connections: PerAddress::new("ICE-TCP connections", cfg.limits.connections_per_ip),
                },
            )),
            Err(e) => {
                warn!(error = %e, port, "ICE-TCP disabled: cannot bind the TCP media port");
                None
            }
        }
    } else {
        None
    };

    let tap = match &cfg.tap {
        Some(path) => {
            let t = Tap::create(path).with_context(|| format!("creating tap file {}", path.display()))?;
            warn!(file = %path.display(), "OPERATOR TAP ON: every forwarded RTP packet is written to disk after SRTP decryption");
            Some(t)
        }
        None => None,
    };
    let sfu = Sfu::new(SfuConfig {
        tap: tap.is_some(),
        audio_streams: cfg.audio_streams,
        udp_candidates: vec![advertised],
        tcp_candidates: if tcp.is_some() { vec![advertised] } else { Vec::new() },
        ice_servers: cfg
            .ice_servers
            .iter()
            .map(|u| IceServer { urls: vec![u.clone()], username: None, credential: None })
            .collect(),
        ..SfuConfig::default()
    });
    let (tx, rx) = mpsc::channel(4096);
    tokio::spawn(media::run(sfu, udp, advertised, tcp, tap, rx));

    let assets = match &cfg.web_dir {
        Some(d) => Assets::Dir(d.clone()),
        None => Assets::Embedded,
    };
    let sessions = PerAddress::new("signaling sessions", cfg.limits.sessions_per_ip);
    let app =
        router(AppState { media: MediaHandle { commands: tx }, assets, sessions, unfinished: Default::default() });
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    let host = if cfg.listen.ip().is_unspecified() { cfg.public_ip } else { cfg.listen.ip() };
    let tls = match &cfg.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    let listener = TcpListener::bind(cfg.listen).await.with_context(|| format!("binding HTTP on {}", cfg.listen))?;
    let bound = listener.local_addr()?;
    announce(scheme, host, bound.port(), advertised, tcp_enabled(cfg.ice_tcp));
    let limits = HttpLimits {
        header_timeout: cfg.limits.header_timeout,
        connections: PerAddress::new("HTTP connections", cfg.limits.connections_per_ip),
    };
    listen::serve(listener, tls, app, limits, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    info!("stopped");
    Ok(())
}

/// rustls acceptor for the PEM certificate chain and private key; offers
/// HTTP/1.1 only (ALPN), which is what the listener speaks.
fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading TLS certificate {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading TLS key {}", key.display()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("loading TLS certificate and key")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn tcp_enabled(b: bool) -> &'static str {
    if b { "udp+tcp" } else { "udp" }
}

fn announce(scheme: &str, host: std::net::IpAddr, port: u16, media: SocketAddr, media_proto: &str) {
    let host = match host {
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    };
    info!(media = %media, proto = media_proto, "media port ready");
    println!("Plenary is running. Open {scheme}://{host}:{port}/ in a browser.");
}
