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

fn main() -> ExitCode {
    let mut listen: Option<SocketAddr> = None;
    let mut master = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--listen", Some(v)) => listen = v.parse().ok(),
            ("--srtp-master", Some(v)) => master = MasterKey::from_hex(&v),
            _ => {
                eprintln!("usage: plenary-relay --listen <addr:port> [--srtp-master <56 hex digits>]");
                return ExitCode::from(2);
            }
        }
    }
    let Some(listen) = listen else {
        eprintln!("plenary-relay: --listen <addr:port> is required");
        return ExitCode::from(2);
    };
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
