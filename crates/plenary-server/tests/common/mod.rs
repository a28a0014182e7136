//! Helpers shared by the server's integration tests.

#![allow(dead_code)]

use std::path::PathBuf;

/// A free loopback TCP port number (also used for UDP: the OS rarely reuses it at once).
pub fn free_port() -> u16 {
    let s = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

/// A file made by `scripts/test-media.sh`, in `$PLENARY_MEDIA_DIR` or the
/// workspace's `.media/`, if it exists.
pub fn media(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("PLENARY_MEDIA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.media"));
    let p = dir.join(name);
    p.is_file().then_some(p)
}
