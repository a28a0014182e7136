//! Builders of the `mls` envelopes the Delivery Service ([`crate::ds`])
//! reads, shared by its unit tests and the `ds_messages` fuzz target; not
//! an API. Each is unpadded base64url of version byte 1, the kind byte and
//! a body shaped as `ds` parses it (the MLS content stays opaque bytes).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// An envelope of `kind` (1 join request, 2 commit, 3 Welcome, 4
/// application message) around `body`.
pub fn envelope(kind: u8, body: &[u8]) -> String {
    let mut b = vec![1u8, kind];
    b.extend_from_slice(body);
    URL_SAFE_NO_PAD.encode(b)
}

/// A join request whose KeyPackageRef is 32 bytes of `r` (then a 32-byte
/// join proof and the KeyPackage).
pub fn join_request(r: u8) -> String {
    let mut body = vec![32u8];
    body.extend_from_slice(&[r; 32]);
    body.extend_from_slice(&[0u8; 32]);
    body.extend_from_slice(b"keypackage");
    envelope(1, &body)
}

/// A commit made in `epoch` (big-endian u64, then the commit).
pub fn commit(epoch: u64) -> String {
    let mut body = epoch.to_be_bytes().to_vec();
    body.extend_from_slice(b"commit");
    envelope(2, &body)
}

/// A Welcome naming the KeyPackageRefs of `refs` (each as in [`join_request`]).
pub fn welcome(refs: &[u8]) -> String {
    let mut body = u16::try_from(refs.len()).unwrap_or(0).to_be_bytes().to_vec();
    for r in refs {
        body.push(32);
        body.extend_from_slice(&[*r; 32]);
    }
    body.extend_from_slice(b"welcome");
    envelope(3, &body)
}
