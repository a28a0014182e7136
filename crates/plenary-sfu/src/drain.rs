//! The engine: draining str0m sessions until each waits for time or input.
//!
//! A frame written to N subscribers becomes N × (packets per frame)
//! datagrams. Drained one session after the other, subscriber k's first
//! packet would wait behind (k - 1) × (packets per frame) others, and none
//! would leave before the whole fan-out was computed. Instead the sessions
//! with work sit in a ring that [`Sfu::poll_output`] steps lazily: each step
//! polls one session until it yields one datagram (or waits), then moves to
//! the next, so packet 1 goes to every subscriber before packet 2, and the
//! caller sends each datagram as soon as it is produced, as a per-packet
//! SFU would.

use plenary_proto::ParticipantId;
use str0m::Input;
use tracing::{debug, warn};

use crate::sfu::{Output, Sfu};

/// Most `Input::Timeout`s one drain of a session feeds inline. str0m's
/// pacer releases one queued packet per timeout (even unpaced audio), so a
/// subscriber with a packet from each of 29 speakers queued needs 29 rounds
/// at once; leaving each to the caller's next wake-up (at least 1 ms apart,
/// see [`crate::participant::Participant::due_at`]) caps a subscriber at
/// 1000 packets per second, less than 30 participants' audio, and its queue
/// then grows without bound.
const MAX_INLINE_TIMEOUTS: usize = 256;

/// One session in the ring, with what its drain has done so far.
#[derive(Debug)]
pub(crate) struct Draining {
    id: ParticipantId,
    /// Give the session `Input::Timeout(now)` before polling it (its timer
    /// was due when [`Sfu::handle_timeout`] ran).
    feed: bool,
    /// A packet went out since the last timeout fed: the pacer may have
    /// more to release at once.
    sent: bool,
    /// Timeouts fed inline in this drain.
    fed: usize,
}

impl Draining {
    /// Drain `id` as it is.
    pub(crate) fn new(id: ParticipantId) -> Self {
        Draining { id, feed: false, sent: false, fed: 0 }
    }

    /// Feed `id` its due timeout first, then drain it.
    pub(crate) fn fed(id: ParticipantId) -> Self {
        Draining { feed: true, ..Draining::new(id) }
    }
}

impl Sfu {
    /// Queues the sessions in `work` for draining (and, through their
    /// events, the sessions those touch); [`Sfu::poll_output`] does it.
    pub(crate) fn process(&mut self, work: Vec<ParticipantId>) {
        self.ring.extend(work.into_iter().map(Draining::new));
    }

    /// Drains every session in the ring. Run before any new input, so
    /// that str0m's rule holds: a session is polled until it waits before
    /// it is given more input.
    pub(crate) fn settle(&mut self) {
        while let Some(d) = self.ring.pop_front() {
            self.step_session(d);
        }
    }

    /// Does one step of the drain; false when every session waits and
    /// nothing needs renegotiating.
    pub(crate) fn step(&mut self) -> bool {
        if let Some(d) = self.ring.pop_front() {
            self.step_session(d);
            return true;
        }
        if self.touched.is_empty() {
            return false;
        }
        // A frame touches every subscriber: dedup in O(n log n), not O(n²).
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        for id in touched {
            // Nothing to negotiate is the rule: only a new offer needs the
            // session drained again.
            if self.negotiate(id) {
                self.ring.push_back(Draining::new(id));
            }
        }
        true
    }

    /// Polls `d`'s session until it yields one datagram (then it goes to
    /// the back of the ring), an event (handled; the session stays at the
    /// front), or waits.
    fn step_session(&mut self, mut d: Draining) {
        let Some(now) = self.last_now else { return };
        let id = d.id;
        let Some(rtc) = self.participants.get_mut(&id).and_then(|p| p.rtc.as_mut()) else { return };
        if d.feed {
            d.feed = false;
            if let Err(e) = rtc.handle_input(Input::Timeout(now)) {
                debug!(participant = %id, error = %e, "timeout handling failed");
            }
            if let Some(p) = self.participants.get_mut(&id) {
                p.timeout_fed_at(now);
            }
        }
        let Some(p) = self.participants.get_mut(&id) else { return };
        let Some(rtc) = p.rtc.as_mut() else { return };
        loop {
            if !rtc.is_alive() {
                break;
            }
            match rtc.poll_output() {
                Ok(str0m::Output::Transmit(t)) => {
                    d.sent = true;
                    self.queue.push_back(Output::Transmit(t));
                    self.ring.push_back(d);
                    return;
                }
                Ok(str0m::Output::Timeout(t)) => {
                    if t <= now && d.sent && d.fed < MAX_INLINE_TIMEOUTS {
                        d.sent = false;
                        d.fed += 1;
                        p.timeout_fed = Some(now);
                        p.media_written = false;
                        if let Err(e) = rtc.handle_input(Input::Timeout(now)) {
                            debug!(participant = %id, error = %e, "timeout handling failed");
                        }
                        continue;
                    }
                    p.next_timeout = Some(t);
                    self.touched.push(id);
                    return;
                }
                Ok(str0m::Output::Event(e)) => {
                    self.ring.push_front(d);
                    let mut work = Vec::new();
                    self.handle_event(now, id, e, &mut work);
                    self.process(work);
                    return;
                }
                Err(e) => {
                    warn!(participant = %id, error = %e, "session failed");
                    rtc.disconnect();
                    break;
                }
            }
        }
        self.queue.push_back(Output::Disconnected(id));
        self.remove(id);
    }
}
