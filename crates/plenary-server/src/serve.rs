//! `plenary serve`: binds the sockets, starts the media loop and the HTTP
//! server, prints the URL to open.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use plenary_proto::IceServer;
use plenary_sfu::{Sfu, SfuConfig};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::assets::Assets;
use crate::config::ServeConfig;
use crate::http::{AppState, router};
use crate::media::{self, MediaHandle};
use crate::tap::Tap;
use crate::tcp::TcpMux;

/// Runs the server until Ctrl-C.
///
/// # Errors
/// A socket that cannot be bound, unreadable TLS files.
pub async fn run(cfg: ServeConfig) -> Result<()> {
    let media_bind = SocketAddr::new(cfg.listen.ip(), cfg.rtc_port);
    let udp = UdpSocket::bind(media_bind).await.with_context(|| format!("binding UDP media port {media_bind}"))?;
    let port = udp.local_addr()?.port();
    let advertised = SocketAddr::new(cfg.public_ip, port);

    let tcp = if cfg.ice_tcp {
        match TcpListener::bind(SocketAddr::new(cfg.listen.ip(), port)).await {
            Ok(l) => Some(TcpMux::start(l, advertised)),
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
    let app = router(AppState { media: MediaHandle { commands: tx }, assets });
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    let host = if cfg.listen.ip().is_unspecified() { cfg.public_ip } else { cfg.listen.ip() };

    match &cfg.tls {
        Some((cert, key)) => {
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .context("loading TLS certificate and key")?;
            let handle = axum_server::Handle::new();
            let h2 = handle.clone();
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                h2.graceful_shutdown(None);
            });
            announce(scheme, host, cfg.listen.port(), advertised, tcp_enabled(cfg.ice_tcp));
            axum_server::bind_rustls(cfg.listen, tls).handle(handle).serve(app.into_make_service()).await?;
        }
        None => {
            let listener =
                TcpListener::bind(cfg.listen).await.with_context(|| format!("binding HTTP on {}", cfg.listen))?;
            let bound = listener.local_addr()?;
            announce(scheme, host, bound.port(), advertised, tcp_enabled(cfg.ice_tcp));
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await?;
        }
    }
    info!("stopped");
    Ok(())
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
