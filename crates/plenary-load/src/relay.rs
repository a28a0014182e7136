//! `--target udp-relay` / `srtp-relay`: the baselines (owned by helper
//! "janus"; placeholder).

use crate::LoadError;
use crate::target::{StartOptions, Target};

/// Starts a relay baseline, with SRTP AES-128-GCM per packet if `srtp`.
///
/// # Errors
/// [`LoadError::Unsupported`] until implemented.
pub async fn start(_opts: &StartOptions, srtp: bool) -> Result<Box<dyn Target>, LoadError> {
    Err(LoadError::Unsupported(if srtp { "srtp-relay" } else { "udp-relay" }))
}
