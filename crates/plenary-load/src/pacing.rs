//! When a publisher's video packets leave: a leaky-bucket pacer, off by
//! default.
//!
//! Off (rate 0), a frame's packets are written back to back, which is what
//! a WebRTC sender does with a frame of this harness's default stream:
//! libwebrtc's `PacingController` lets its media debt grow to
//! `send_burst_interval` (`kDefaultBurstInterval`, 40 ms, capped by
//! `kMaxBurstSize` = 63 kB) at the pacing rate before it waits, and its
//! pacing rate is `kDefaultPaceMultiplier` (2.5) times the target rate, so
//! a 1 Mbit/s stream may burst 12.5 kB (a 4-packet delta frame or a
//! 12-packet key frame of the default stream); str0m's `LeakyBucketPacer`
//! does the same with a 40 ms window at 1.1 times the estimate.
//!
//! On, packet k of a frame leaves once the bucket's debt, drained at `rate`,
//! is at most `rate × burst`: with `burst` 0 each packet waits until the
//! previous one has drained (`size × 8 / rate` seconds), as libwebrtc did
//! before the burst interval (its pacer then spread a frame at 2.5 times the
//! target rate). A frame written while an earlier one is still draining
//! (a key frame) queues behind it. Used to measure what a paced publisher
//! changes, with `plenary load --pace-kbps`.

use std::time::{Duration, Instant};

/// A leaky bucket: debt in time to drain at the pacing rate.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// Pacing rate, bits per second; 0 means no pacing.
    bps: u64,
    /// Debt the bucket may carry and still send at once.
    burst: Duration,
    /// Debt (time to drain at `bps`) as of `at`.
    debt: Duration,
    /// When `debt` was last brought up to date.
    at: Option<Instant>,
}

impl Pacer {
    /// A pacer at `bps` bits per second (0: no pacing) that lets `burst`
    /// worth of debt go out back to back.
    pub fn new(bps: u32, burst: Duration) -> Pacer {
        Pacer { bps: u64::from(bps), burst, debt: Duration::ZERO, at: None }
    }

    /// Whether packets are paced at all.
    pub fn is_on(&self) -> bool {
        self.bps > 0
    }

    /// Debt left at `t` (not before `at`).
    fn debt_at(&self, t: Instant) -> Duration {
        match self.at {
            Some(at) => self.debt.saturating_sub(t.saturating_duration_since(at)),
            None => Duration::ZERO,
        }
    }

    /// The earliest time at or after `now` that a packet may leave.
    pub fn next_departure(&self, now: Instant) -> Instant {
        match self.at {
            Some(at) if self.is_on() => now.max(at + self.debt.saturating_sub(self.burst)),
            _ => now,
        }
    }

    /// Records a packet of `bytes` leaving at `t` (not before the previous one).
    pub fn sent(&mut self, t: Instant, bytes: usize) {
        if !self.is_on() {
            return;
        }
        let drain = Duration::from_nanos((bytes as u64 * 8).saturating_mul(1_000_000_000) / self.bps);
        self.debt = self.debt_at(t) + drain;
        self.at = Some(t);
    }

    /// Departure times of the packets of a frame (payload sizes `sizes`,
    /// bytes) written at `now`, in order; each is recorded as sent.
    pub fn schedule(&mut self, now: Instant, sizes: impl IntoIterator<Item = usize>) -> Vec<Instant> {
        let mut t = now;
        sizes
            .into_iter()
            .map(|bytes| {
                t = self.next_departure(t);
                self.sent(t, bytes);
                t
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1000.0
    }

    #[test]
    fn off_sends_a_frame_back_to_back() {
        let now = Instant::now();
        let mut p = Pacer::new(0, Duration::ZERO);
        assert_eq!(p.schedule(now, [1100; 12]), vec![now; 12]);
    }

    #[test]
    fn a_delta_frame_is_spread_at_the_pacing_rate() {
        // 4 packets of 1100 bytes at 2.5 Mbit/s: 3.52 ms apart, the last
        // one 10.56 ms after the first, all within the 33 ms frame interval.
        let now = Instant::now();
        let mut p = Pacer::new(2_500_000, Duration::ZERO);
        let t = p.schedule(now, [1100; 4]);
        let offsets: Vec<f64> = t.iter().map(|t| ms(*t - now)).collect();
        for (got, want) in offsets.iter().zip([0.0, 3.52, 7.04, 10.56]) {
            assert!((got - want).abs() < 0.001, "{offsets:?}");
        }
        // The bucket is empty again 14.08 ms after the first packet.
        assert_eq!(p.next_departure(now + Duration::from_millis(20)), now + Duration::from_millis(20));
    }

    #[test]
    fn a_frame_written_while_the_last_drains_queues_behind_it() {
        // A 12-packet key frame at 2.5 Mbit/s drains for 42.24 ms; the
        // next frame, written 33 ms later, starts when it has drained.
        let now = Instant::now();
        let mut p = Pacer::new(2_500_000, Duration::ZERO);
        let key = p.schedule(now, [1100; 12]);
        assert!((ms(key[11] - now) - 38.72).abs() < 0.001);
        let next = p.schedule(now + Duration::from_millis(33), [1100; 4]);
        assert!((ms(next[0] - now) - 42.24).abs() < 0.001, "{:?}", ms(next[0] - now));
    }

    #[test]
    fn a_burst_allowance_sends_that_much_at_once() {
        // libwebrtc's default: 40 ms at the pacing rate goes out at once
        // (12.5 kB at 2.5 Mbit/s), so a whole delta frame is one burst.
        let now = Instant::now();
        let mut p = Pacer::new(2_500_000, Duration::from_millis(40));
        assert_eq!(p.schedule(now, [1100; 4]), vec![now; 4]);
        // Past the allowance the next packet waits for the excess to drain.
        let mut p = Pacer::new(2_500_000, Duration::from_millis(10));
        let t = p.schedule(now, [1100; 4]);
        assert_eq!(&t[..3], &[now; 3], "3 packets = 10.56 ms of debt, the 4th waits");
        assert!((ms(t[3] - now) - 0.56).abs() < 0.001, "{:?}", ms(t[3] - now));
    }
}
