//! `plenary join`: the native participant (crate plenary-client).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

/// Flags of `plenary join`.
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// Meeting link with its secret, e.g.
    /// http://localhost:8080/m/abc123#AAECAwQFBgcICQoLDA0ODw (the part after
    /// # never leaves this machine; without it, the join fails).
    pub url: String,
    /// Display name shown to the others.
    #[arg(long)]
    pub name: String,
    /// VP8 IVF file to publish, looped in real time.
    #[arg(long)]
    pub video: Option<PathBuf>,
    /// Ogg Opus file to publish, looped in real time.
    #[arg(long)]
    pub audio: Option<PathBuf>,
    /// Leave after this many seconds of connected media (default: until Ctrl-C).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Write every received track to DIR as IVF (video) or Ogg (audio).
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// Print JSON lines (joined, participants, tracks, per-second frame
    /// counts, epochs, names, chat, final summary) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Receive no video: tell the server every video is hidden (as a client
    /// showing no video tiles does); audio is still received. For filling
    /// benchmark rooms cheaply.
    #[arg(long)]
    pub hide_video: bool,
    /// Send each line typed on stdin as an end-to-end encrypted chat message
    /// (on by itself when stdin is a terminal). Incoming chat and raised
    /// hands are printed as `<name>: <text>` lines.
    #[arg(long)]
    pub chat_stdin: bool,
}

/// Runs the participant; an error ends the process non-zero with its message.
///
/// # Errors
/// Whatever [`plenary_client::join`] reports, or a negative duration.
pub async fn run(args: JoinArgs) -> Result<()> {
    let duration = match args.duration {
        Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => anyhow::bail!("--duration must be a positive number of seconds, got {s}"),
        None => None,
    };
    plenary_client::join(plenary_client::JoinOptions {
        url: args.url,
        name: args.name,
        video: args.video,
        audio: args.audio,
        duration,
        record: args.record,
        json: args.json,
        hide_video: args.hide_video,
        chat_stdin: args.chat_stdin || std::io::IsTerminal::is_terminal(&std::io::stdin()),
    })
    .await?;
    Ok(())
}
