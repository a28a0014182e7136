//! The server side of the `plenary` binary (src/main.rs) as a library, so
//! that fuzz targets (crates/plenary-server/fuzz) and tests reach the
//! parsers of network input: the WebSocket transport ([`ws_socket`]) and
//! connection ([`ws`]), ICE-TCP framing ([`tcp`]), the MLS Delivery
//! Service ([`ds`]). The binary is the only user of the rest; nothing here
//! is a stable API.

pub mod assets;
pub mod client_queue;
pub mod config;
pub mod ds;
#[doc(hidden)]
pub mod ds_test_messages;
pub mod http;
pub mod limits;
pub mod listen;
pub mod media;
pub mod meeting_key;
pub mod serve;
pub mod tap;
pub mod tcp;
pub mod udp_out;
pub mod ws;
pub mod ws_socket;
