//! `plenary-relay`: the load harness's baseline relay (see
//! `plenary_load::relay_server`). Started by `plenary load --target
//! udp-relay|srtp-relay`, pinned like the servers under test.
//!
//! ```text
//! plenary-relay --listen 127.0.0.1:40000 [--srtp-master <56 hex digits>]
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;

use plenary_load::relay_server;
use plenary_load::relay_srtp::MasterKey;

fn usage(why: &str) -> ExitCode {
    eprintln!("plenary-relay: {why}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut listen: Option<SocketAddr> = None;
    let mut master = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--listen", Some(v)) => match v.parse() {
                Ok(a) => listen = Some(a),
                Err(_) => return usage(&format!("--listen {v:?} is not an addr:port")),
            },
            // A bad key must not quietly give the plain relay.
            ("--srtp-master", Some(v)) => match MasterKey::from_hex(&v) {
                Some(m) => master = Some(m),
                None => return usage("--srtp-master takes 56 hex digits (16-byte key, 12-byte salt)"),
            },
            _ => return usage("usage: plenary-relay --listen <addr:port> [--srtp-master <56 hex digits>]"),
        }
    }
    let Some(listen) = listen else { return usage("--listen <addr:port> is required") };
    let socket = match relay_server::bind(listen) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("plenary-relay: bind {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "plenary-relay listening on {listen} ({})",
        if master.is_some() { "SRTP AES-128-GCM" } else { "plain UDP" }
    );
    match relay_server::run(&socket, master) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plenary-relay: {e}");
            ExitCode::FAILURE
        }
    }
}
