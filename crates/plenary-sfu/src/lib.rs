//! Plenary's selective forwarding unit (SFU), sans-IO on top of
//! [str0m](https://docs.rs/str0m).
//!
//! [`Sfu`] owns no socket, thread or clock. The server feeds it signaling
//! messages ([`Sfu::join`], [`Sfu::handle_message`], [`Sfu::leave`]),
//! datagrams ([`Sfu::handle_receive`]) and the passage of time
//! ([`Sfu::handle_timeout`]), each with the current `Instant`, then drains
//! [`Sfu::poll_output`] until it returns [`Output::Timeout`]: datagrams to
//! send, signaling messages for a participant, participants whose media
//! session died.
//!
//! What it does (see DESIGN.md, Media path):
//! - rooms are created on first join and dropped when the last one leaves;
//! - every participant receives every other participant's tracks, added to
//!   its session by SDP offers from the SFU;
//! - per subscriber one simulcast layer of each video (RFC 8853), chosen
//!   from the size the subscriber renders it at; switches happen on a key
//!   frame of the new layer, requested with a PLI (RFC 4585 §6.3.1), and
//!   RTP timestamps are rewritten so the subscriber sees one continuous
//!   stream (its SSRC and sequence numbers come from the outgoing stream);
//! - key frame requests from subscribers reach the publisher, rate limited;
//!   NACK/RTX is handled per hop by str0m;
//! - the active speaker of each room, from RFC 6464 audio levels, and, if
//!   configured ([`SfuConfig::audio_streams`]), audio forwarded only from the
//!   loudest few speakers to each subscriber;
//! - adaptive quality: a TWCC bandwidth estimate per subscriber, shared
//!   among the videos it watches (the smallest layer of each first, then
//!   upgrades for the active speaker and larger tiles beside audio), reported to it every 2 s (`quality`); publishers
//!   are told which simulcast layers nobody receives (`layers_paused`);
//!   a publisher whose video stalls while its audio arrives is marked
//!   (`connection_quality`).
//!
//! The SFU reads only RTP headers and header extensions and, for VP8, the
//! payload descriptor and the clear key frame header bytes: it never needs
//! the media itself, which senders encrypt end to end (SFrame, RFC 9605).
//!
//! ```
//! use std::time::Instant;
//! use plenary_sfu::{Output, Sfu, SfuConfig};
//! let mut sfu = Sfu::new(SfuConfig::default());
//! let now = Instant::now();
//! let alice = sfu.join(now, "room-1", "{}".into(), 1).unwrap();
//! // Alice is told she joined an empty room.
//! assert!(matches!(sfu.poll_output(now), Output::Signal(p, _) if p == alice));
//! ```

mod adaptive;
mod alloc;
mod config;
mod drain;
mod error;
mod fanout;
mod history;
mod layer;
mod loudest;
mod participant;
mod sdp_check;
mod sfu;
mod speaker;
mod track;

pub use config::SfuConfig;
pub use error::SfuError;
pub use layer::{Allowance, LayerInfo, LayerSelector, Verdict};
pub use sfu::{MAX_AUDIO_QUEUE_AGE, Output, Sfu, SfuStats};
pub use speaker::SpeakerDetector;
pub use track::vp8_keyframe_size;
