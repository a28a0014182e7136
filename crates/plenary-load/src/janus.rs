//! `--target janus`: Janus VideoRoom (owned by helper "janus"; placeholder).

use crate::LoadError;
use crate::target::{StartOptions, Target};

/// Starts Janus.
///
/// # Errors
/// [`LoadError::Unsupported`] until implemented.
pub async fn start(_opts: &StartOptions) -> Result<Box<dyn Target>, LoadError> {
    Err(LoadError::Unsupported("janus"))
}
