//! Plenary native client (in progress).

pub mod ivf;
pub mod ogg;

/// Path of a file made by `scripts/test-media.sh`, if it exists: in
/// `$PLENARY_MEDIA_DIR` or the workspace's `.media/`.
#[cfg(test)]
pub(crate) fn test_media(name: &str) -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("PLENARY_MEDIA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.media"));
    let p = dir.join(name);
    p.is_file().then_some(p)
}
