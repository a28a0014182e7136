//! `--target udp-relay` / `--target srtp-relay`: the baselines, the
//! machine's forwarding limit. The `plenary-relay` binary
//! ([`crate::relay_server`]) is started like a server under test (pinned
//! with `taskset`, its CPU read from `/proc`) on a free loopback port;
//! publishers send it the same RTP packet stream they send the SFUs,
//! subscribers register with a hello datagram and receive every packet.
//! The SRTP variant decrypts each packet once and encrypts it once per
//! subscriber with AEAD_AES_128_GCM (RFC 7714, [`crate::relay_srtp`]).
//!
//! A relay has one room: every subscriber receives every publisher.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::LoadError;
use crate::process::{ServerProcess, free_port, wait_ready};
use crate::relay_server::hello;
use crate::relay_srtp::{MasterKey, PeerSrtp};
use crate::target::{BoxFuture, Peer, PeerLink, Role, StartOptions, Target, TargetKind, UdpLink};

/// A running `plenary-relay`.
pub struct Relay {
    process: ServerProcess,
    addr: SocketAddr,
    master: Option<MasterKey>,
    next_subscriber: AtomicU32,
}

/// The relay binary: `plenary-relay` beside `plenary_bin` (both are
/// built by `cargo build --release -p plenary-server -p plenary-load`).
pub fn relay_bin(plenary_bin: &Path) -> PathBuf {
    plenary_bin.with_file_name("plenary-relay")
}

/// Starts `plenary-relay` pinned to `opts.server_cpu` on a free loopback
/// port; with SRTP AES-128-GCM per packet if `srtp`.
///
/// # Errors
/// [`LoadError::Start`] if the binary is missing (build it with `cargo
/// build --release -p plenary-load`) or does not start.
pub async fn start(opts: &StartOptions, srtp: bool) -> Result<Box<dyn Target>, LoadError> {
    let target = if srtp { "srtp-relay" } else { "udp-relay" };
    let bin = relay_bin(&opts.plenary_bin);
    if !bin.exists() {
        return Err(LoadError::Start {
            target,
            reason: format!("{} not found: build it with cargo build --release -p plenary-load", bin.display()),
        });
    }
    let master = srtp.then(MasterKey::random);
    let mut last = None;
    for attempt in 0..3 {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut args = vec!["--listen".to_owned(), addr.to_string()];
        if let Some(m) = &master {
            args.extend(["--srtp-master".to_owned(), m.to_hex()]);
        }
        let log = opts.work_dir.join(format!("{target}-{attempt}.log"));
        let mut process = ServerProcess::spawn(&bin, &args, &[], opts.server_cpu, log)?;
        // Ready once it said so; a port taken meanwhile makes it exit.
        let ready = wait_ready(target, &mut process, Duration::from_secs(10), || {
            std::fs::read_to_string(opts.work_dir.join(format!("{target}-{attempt}.log")))
                .is_ok_and(|l| l.contains("listening on"))
        })
        .await;
        match ready {
            Ok(()) => return Ok(Box::new(Relay { process, addr, master, next_subscriber: AtomicU32::new(1) })),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(LoadError::Start { target, reason: "no attempt".into() }))
}

impl Target for Relay {
    fn kind(&self) -> TargetKind {
        if self.master.is_some() { TargetKind::SrtpRelay } else { TargetKind::UdpRelay }
    }

    fn pid(&self) -> u32 {
        self.process.pid()
    }

    fn open<'a>(&'a self, _room: &'a str, role: Role) -> BoxFuture<'a, Result<Vec<Peer>, LoadError>> {
        Box::pin(async move {
            let mut peers = Vec::new();
            if role.publishes() {
                let crypto = self.master.map(|m| Arc::new(PeerSrtp::new(&m.for_peer(0))) as _);
                let link = UdpLink { server: self.addr, hello: Vec::new(), crypto };
                peers.push(Peer { role: Role::Publisher, link: PeerLink::Udp(link) });
            }
            if role.subscribes() {
                let id = self.next_subscriber.fetch_add(1, Ordering::Relaxed);
                let crypto = self.master.map(|m| Arc::new(PeerSrtp::new(&m.for_peer(id))) as _);
                let link = UdpLink { server: self.addr, hello: hello(id), crypto };
                peers.push(Peer { role: Role::Subscriber, link: PeerLink::Udp(link) });
            }
            Ok(peers)
        })
    }
}
