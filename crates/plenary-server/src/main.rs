//! `plenary`: end-to-end encrypted video conferencing in one binary.
//!
//! - `plenary serve` runs the server: web client, WebSocket signaling and
//!   the SFU on one UDP media port (plus ICE-TCP on the same port number).
//! - `plenary join URL --name NAME` joins a meeting as a native participant.
//! - `plenary load --target plenary,janus` measures SFUs under load.

mod join;

use plenary_server::{config, serve};

use anyhow::Result;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "plenary", version, about = "End-to-end encrypted video conferencing")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server (web client, signaling, media forwarding).
    Serve(config::ServeArgs),
    /// Join a meeting as a native participant, publishing files.
    Join(join::JoinArgs),
    /// Load-test an SFU (this one, Janus, or a relay baseline); see crate plenary-load.
    Load(plenary_load::cli::LoadArgs),
}

fn init_logging(json: bool, default_filter: &str) {
    let filter = EnvFilter::try_from_env("PLENARY_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Colours only on a terminal: a log redirected to a file stays plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// `e` and its causes, `: `-separated, leaving out a cause whose text the
/// message already holds (our errors' messages name their causes, as
/// `cannot open x.ogg: No such file or directory`).
fn reason(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg = format!("{msg}: {c}");
        }
    }
    msg
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Cmd::Load(args) = cli.cmd {
        init_logging(false, "warn");
        // Its own single-threaded runtime, pinned to the generator's core.
        if let Err(e) = plenary_load::cli::main(args) {
            // The reason, not a backtrace; a bad flag value exits 2 like clap's own errors.
            eprintln!("plenary load: {e}");
            std::process::exit(if matches!(e, plenary_load::LoadError::Usage(_)) { 2 } else { 1 });
        }
        return Ok(());
    }
    if let Cmd::Join(args) = cli.cmd {
        init_logging(false, "warn");
        // One thread: a participant's session is one task, and a packet read
        // on a worker thread then handed to the task on another cost a
        // futex wake-up each (a third of a client's CPU in a room of 30).
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        if let Err(e) = rt.block_on(join::run(args)) {
            // A participant wants the reason, not a backtrace.
            eprintln!("plenary: {}", reason(&e));
            std::process::exit(1);
        }
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.cmd {
        Cmd::Serve(args) => {
            let cfg = args.resolve()?;
            init_logging(cfg.log_json, "info,str0m=warn,dimpl=warn,is=warn");
            rt.block_on(serve::run(cfg))
        }
        Cmd::Join(_) | Cmd::Load(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::reason;

    #[test]
    fn a_failed_join_says_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let e = plenary_client::ClientError::from(plenary_client::source::SourceError::Open {
            path: "x.ogg".into(),
            source: io,
        });
        assert_eq!(reason(&anyhow::Error::new(e)), "cannot open x.ogg: No such file or directory");
        // A cause the message does not name is still given.
        let e = anyhow::anyhow!("disk full").context("cannot write");
        assert_eq!(reason(&e), "cannot write: disk full");
    }
}
