//! When and how often a participant whose connection was lost tries
//! again: which failures are worth a fresh session, and the back-off
//! between attempts (the browser client's: 0.5, 1, 2, 4, 8, 8, 8 s).
//!
//! The server ends a participant's session when its ICE connection fails
//! or its WebSocket closes, and a restarted server knows nobody, so the way
//! back is always a fresh session: a new WebSocket and `join` (a new
//! participant id), a new ICE/DTLS connection and, in end-to-end encrypted
//! meetings, a new MLS identity that the group adds again (or a new group
//! after a server restart).

use std::time::{Duration, Instant};

use crate::ClientError;

/// Waits before each attempt after a loss; after the last one `join`
/// gives up with the error that caused the loss.
pub const RECONNECT_DELAYS: [Duration; 7] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(8),
    Duration::from_secs(8),
];

/// Whether a fresh session may succeed where this one failed: network and
/// server-side losses yes; a refusal by the server, a bad link or file, a
/// full disk no.
pub(crate) fn is_transient(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Connect { .. }
            | ClientError::Timeout { .. }
            | ClientError::Closed
            | ClientError::Signaling(_)
            | ClientError::MediaTimeout(_)
            | ClientError::MediaLost
            | ClientError::Socket(_)
    )
}

/// An outage that ended: the media of a fresh session connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outage {
    /// Attempts it took.
    pub attempts: u32,
    /// From the loss to the new media connection.
    pub duration: Duration,
}

/// Reconnection attempts since the connection was lost.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    /// Attempts made since the loss (0 while connected).
    pub attempt: u32,
    lost_at: Option<Instant>,
}

impl Backoff {
    /// The wait before the next attempt, or `None` when all are used up.
    pub fn next(&mut self, now: Instant) -> Option<Duration> {
        let delay = *RECONNECT_DELAYS.get(self.attempt as usize)?;
        self.lost_at.get_or_insert(now);
        self.attempt += 1;
        Some(delay)
    }

    /// Media connected: ends the outage, if there was one.
    pub fn connected(&mut self, now: Instant) -> Option<Outage> {
        let lost_at = self.lost_at.take()?;
        let outage = Outage { attempts: self.attempt, duration: now - lost_at };
        self.attempt = 0;
        Some(outage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_gives_up_and_starts_over_after_a_connection() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert_eq!(b.connected(t0), None, "the first connection is no reconnection");
        let delays: Vec<Duration> = std::iter::from_fn(|| b.next(t0)).collect();
        assert_eq!(delays, RECONNECT_DELAYS);
        assert_eq!(b.next(t0), None);
        let mut b = Backoff::default();
        b.next(t0);
        b.next(t0 + Duration::from_secs(1));
        let outage = b.connected(t0 + Duration::from_secs(3)).unwrap();
        assert_eq!(outage, Outage { attempts: 2, duration: Duration::from_secs(3) });
        assert_eq!(b.next(t0), Some(RECONNECT_DELAYS[0]), "a new loss starts from the shortest wait");
    }

    #[test]
    fn only_losses_are_retried() {
        assert!(is_transient(&ClientError::Closed));
        assert!(is_transient(&ClientError::MediaLost));
        assert!(is_transient(&ClientError::Connect { url: "ws://x".into(), reason: "refused".into() }));
        assert!(!is_transient(&ClientError::IncompleteLink));
        assert!(!is_transient(&ClientError::Server {
            code: plenary_proto::ErrorCode::RoomFull,
            message: "full".into()
        }));
    }
}
