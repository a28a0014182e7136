//! Per-address limits on what one client may hold open: HTTP connections,
//! signaling (WebSocket) sessions, ICE-TCP connections. A client over its
//! limit is refused at once, so one address cannot exhaust the server's
//! sockets or tasks.
//!
//! "One address" is one IPv4 address, or one IPv6 /64 prefix (one host or
//! network usually holds a whole /64; IPv4-mapped IPv6 counts as IPv4).
//!
//! Refusals are counted, not logged per client: the operator should not
//! learn who participates (DESIGN.md, threat model), so no address is ever
//! logged. At most one warning per [`WARN_EVERY`] per limit gives the total.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::warn;

/// Shortest time between two warnings about refusals of one limit.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// Why a client was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// The address already holds `limit` of `what`.
    #[error("too many {what} from one address (limit {limit}); close some and retry")]
    PerAddress {
        /// What is limited, e.g. "signaling sessions".
        what: &'static str,
        /// The limit.
        limit: usize,
    },
}

/// The part of an address that limits count: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum AddrKey {
    V4(u32),
    V6Prefix(u64),
}

impl AddrKey {
    fn of(ip: IpAddr) -> AddrKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => AddrKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => AddrKey::V6Prefix((u128::from(v6) >> 64) as u64),
        }
    }
}

/// What one address holds: its open things, and a byte count its slots
/// share (see [`Slot::held`]).
#[derive(Debug, Default)]
struct Held {
    open: usize,
    bytes: Arc<AtomicUsize>,
}

/// A count of open things per address, with a limit.
#[derive(Debug)]
pub struct PerAddress {
    what: &'static str,
    limit: usize,
    open: Mutex<HashMap<AddrKey, Held>>,
    refused: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
}

/// One open thing, counted until dropped.
#[derive(Debug)]
pub struct Slot {
    owner: Arc<PerAddress>,
    key: AddrKey,
    bytes: Arc<AtomicUsize>,
}

impl Slot {
    /// A byte count shared by every slot its address holds of this limit
    /// at once (e.g. bytes of unfinished incoming messages, counted by the
    /// user of the slots); the address's entry, and so the count, starts
    /// anew once it holds no slot.
    pub fn held_bytes(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.bytes)
    }
}

impl PerAddress {
    /// A limit of `limit` open `what` per address; 0 means no limit.
    pub fn new(what: &'static str, limit: usize) -> Arc<PerAddress> {
        Arc::new(PerAddress {
            what,
            limit,
            open: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
            last_warning: Mutex::new(None),
        })
    }

    /// Counts one more open thing for `ip`, until the slot is dropped.
    ///
    /// # Errors
    /// [`LimitError::PerAddress`] if `ip` already holds the limit; the
    /// refusal is counted (see [`PerAddress::refused`]).
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, LimitError> {
        let key = AddrKey::of(ip);
        {
            let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
            let held = open.entry(key).or_default();
            if self.limit == 0 || held.open < self.limit {
                held.open += 1;
                return Ok(Slot { owner: Arc::clone(self), key, bytes: Arc::clone(&held.bytes) });
            }
        }
        let total = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        let mut last = self.last_warning.lock().unwrap_or_else(PoisonError::into_inner);
        if last.is_none_or(|t| now.duration_since(t) >= WARN_EVERY) {
            *last = Some(now);
            warn!(
                what = self.what,
                limit = self.limit,
                refused_total = total,
                "per-address limit reached: refused (the address is not logged; raise the limit if many \
                 participants share one address, e.g. behind NAT or a reverse proxy)"
            );
        }
        Err(LimitError::PerAddress { what: self.what, limit: self.limit })
    }

    /// How many were refused since the start.
    #[cfg(test)]
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// How many `ip` holds open now.
    #[cfg(test)]
    pub fn open(&self, ip: IpAddr) -> usize {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).get(&AddrKey::of(ip)).map_or(0, |h| h.open)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = open.get_mut(&self.key) {
            held.open = held.open.saturating_sub(1);
            if held.open == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refuses_over_the_limit_and_frees_on_drop() {
        let l = PerAddress::new("things", 2);
        let a = l.acquire(ip("192.0.2.1")).unwrap();
        let _b = l.acquire(ip("192.0.2.1")).unwrap();
        assert_eq!(l.acquire(ip("192.0.2.1")).unwrap_err(), LimitError::PerAddress { what: "things", limit: 2 });
        assert!(l.acquire(ip("192.0.2.2")).is_ok(), "another address is not affected");
        assert_eq!(l.refused(), 1);
        drop(a);
        assert_eq!(l.open(ip("192.0.2.1")), 1);
        assert!(l.acquire(ip("192.0.2.1")).is_ok(), "a closed slot is free again");
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let l = PerAddress::new("things", 1);
        let _a = l.acquire(ip("2001:db8:1:2::1")).unwrap();
        assert!(l.acquire(ip("2001:db8:1:2:ffff::9")).is_err(), "same /64");
        assert!(l.acquire(ip("2001:db8:1:3::1")).is_ok(), "another /64");
        let _v4 = l.acquire(ip("198.51.100.7")).unwrap();
        assert!(l.acquire(ip("::ffff:198.51.100.7")).is_err(), "IPv4-mapped is the same address");
    }

    #[test]
    fn an_address_slots_share_one_byte_count() {
        let l = PerAddress::new("things", 0);
        let a = l.acquire(ip("192.0.2.1")).unwrap();
        let b = l.acquire(ip("192.0.2.1")).unwrap();
        let other = l.acquire(ip("192.0.2.2")).unwrap();
        a.held_bytes().fetch_add(10, Ordering::Relaxed);
        assert_eq!(b.held_bytes().load(Ordering::Relaxed), 10, "same address");
        assert_eq!(other.held_bytes().load(Ordering::Relaxed), 0, "another address");
        drop((a, b));
        assert_eq!(l.acquire(ip("192.0.2.1")).unwrap().held_bytes().load(Ordering::Relaxed), 0, "starts anew");
    }

    #[test]
    fn zero_means_no_limit() {
        let l = PerAddress::new("things", 0);
        let slots: Vec<_> = (0..1000).map(|_| l.acquire(ip("127.0.0.1")).unwrap()).collect();
        assert_eq!(l.open(ip("127.0.0.1")), 1000);
        drop(slots);
        assert_eq!(l.open(ip("127.0.0.1")), 0);
    }
}
