//! When and how often a participant whose connection was lost tries
//! again: which failures are worth a fresh session, and the wait between
//! attempts (the browser client's: 0.5 s, then 1 s, each ±20 % at random).
//!
//! The server ends a participant's session when its ICE connection fails
//! or its WebSocket closes, and a restarted server knows nobody, so the way
//! back is always a fresh session: a new WebSocket and `join` (a new
//! participant id), a new ICE/DTLS connection and, in end-to-end encrypted
//! meetings, a new MLS identity that the group adds again (or a new group
//! after a server restart).

use std::time::{Duration, Instant};

use crate::ClientError;

/// The wait before the first attempt after a loss.
pub const FIRST_RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// The wait before every later attempt. Short and flat rather than doubling:
/// a server that restarts in 5 s is found again within about 1 s (issue #5:
/// media resumes within 10 s), and a waiting client costs the server one
/// refused TCP connection a second.
pub const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Attempts before `join` gives up with the error that caused the loss
/// (about 30 s of waiting).
pub const RECONNECT_ATTEMPTS: u32 = 30;

/// Each wait is scaled by a random factor in `1 ± RECONNECT_JITTER`, so that
/// a room full of clients cut off together does not return in lock-step.
pub const RECONNECT_JITTER: f64 = 0.2;

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
        if self.attempt >= RECONNECT_ATTEMPTS {
            return None;
        }
        let base = if self.attempt == 0 { FIRST_RECONNECT_DELAY } else { RECONNECT_DELAY };
        let delay = base.mul_f64(1.0 + RECONNECT_JITTER * (2.0 * rand::random::<f64>() - 1.0));
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
    fn waits_are_short_jittered_give_up_and_start_over_after_a_connection() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert_eq!(b.connected(t0), None, "the first connection is no reconnection");
        let delays: Vec<Duration> = std::iter::from_fn(|| b.next(t0)).collect();
        assert_eq!(delays.len(), RECONNECT_ATTEMPTS as usize);
        let within = |d: Duration, base: Duration| {
            d >= base.mul_f64(1.0 - RECONNECT_JITTER) && d <= base.mul_f64(1.0 + RECONNECT_JITTER)
        };
        assert!(within(delays[0], FIRST_RECONNECT_DELAY), "{delays:?}");
        assert!(delays[1..].iter().all(|d| within(*d, RECONNECT_DELAY)), "never above ~1 s: {delays:?}");
        assert!(delays.windows(2).any(|w| w[0] != w[1]), "jittered: {delays:?}");
        let total: Duration = delays.iter().sum();
        assert!(total > Duration::from_secs(20), "keeps trying for a while: {total:?}");
        assert_eq!(b.next(t0), None);
        let mut b = Backoff::default();
        b.next(t0);
        b.next(t0 + Duration::from_secs(1));
        let outage = b.connected(t0 + Duration::from_secs(3)).unwrap();
        assert_eq!(outage, Outage { attempts: 2, duration: Duration::from_secs(3) });
        let first = b.next(t0).unwrap();
        assert!(
            first <= FIRST_RECONNECT_DELAY.mul_f64(1.0 + RECONNECT_JITTER),
            "a new loss starts from the shortest wait"
        );
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
