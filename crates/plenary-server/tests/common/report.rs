//! What one `plenary join --json` process printed, read after it ended,
//! with the questions the meeting tests ask of it.
//!
//! The processes of a test start together but never quite at once: on a
//! loaded machine one enters the group, connects and leaves a second or more
//! after another. Totals over a whole run then mix in frames sent while the
//! receiver was not there yet or had left already, and the last epoch a
//! member saw may be the one the others made removing whoever left first.
//! So these helpers judge a pair of participants only over the time both
//! were in the meeting, as each one's own output tells it (no clock is
//! shared between processes): from the epoch they share to the first
//! departure.

use serde_json::Value;

/// Every JSON line of one run, in the order printed.
pub struct Report {
    /// The events.
    pub events: Vec<Value>,
}

/// Frames per second over a window of one run's per-second `frames`
/// reports, by the run's own clock (`t`, seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Frames counted over the window.
    pub frames: u64,
    /// Length of the window, seconds.
    pub seconds: f64,
}

impl Rate {
    /// Frames per second.
    pub fn per_second(&self) -> f64 {
        self.frames as f64 / self.seconds.max(1e-3)
    }
}

impl Report {
    /// The JSON lines of `stdout` (other lines are skipped).
    pub fn parse(stdout: &str) -> Report {
        Report { events: stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect() }
    }

    /// The `summary` event, if the run ended normally.
    pub fn summary(&self) -> Option<&Value> {
        self.events.iter().rev().find(|v| v["event"] == "summary")
    }

    /// Our participant id (from the summary).
    pub fn id(&self) -> Option<u64> {
        self.summary()?["participant_id"].as_u64()
    }

    /// Index of the first `participant_left` of any of `others`, or the end.
    fn first_departure(&self, others: &[u64]) -> usize {
        self.events
            .iter()
            .position(|v| {
                v["event"] == "participant_left" && v["participant_id"].as_u64().is_some_and(|id| others.contains(&id))
            })
            .unwrap_or(self.events.len())
    }

    /// Every (epoch, security code) reported, in order.
    pub fn epochs(&self) -> Vec<(u64, String)> {
        self.epochs_in(&self.events)
    }

    fn epochs_in(&self, events: &[Value]) -> Vec<(u64, String)> {
        events
            .iter()
            .filter(|v| v["event"] == "epoch")
            .filter_map(|v| Some((v["epoch"].as_u64()?, v["security_code"].as_str()?.to_owned())))
            .collect()
    }

    /// The last (epoch, security code) reported before any of `others`
    /// left: the group as it was with all of them in it. Epochs after a
    /// departure are the group rekeyed without the leaver.
    pub fn last_epoch_with(&self, others: &[u64]) -> Option<(u64, String)> {
        self.epochs_in(&self.events[..self.first_departure(others)]).pop()
    }

    /// How many `kind` frames `count` says, at one `frames` report: `from`
    /// `Some(id)` sums `field` (`frames` or `decrypted`) of the remote
    /// tracks of participant `id`; `None` sums `frames` of our own sent
    /// tracks.
    fn count(frames: &Value, from: Option<u64>, kind: &str, field: &str) -> u64 {
        let (list, field) = match from {
            Some(_) => ("tracks", field),
            None => ("sent", "frames"),
        };
        frames[list]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["kind"] == kind && (from.is_none() || t["participant_id"].as_u64() == from))
            .filter_map(|t| t[field].as_u64())
            .sum()
    }

    /// The rate of `kind` frames while all of `others` were in the meeting
    /// with us and all of us shared epoch `epoch` (`None`: not an end-to-end
    /// encrypted count, from the first report on): from the second
    /// per-second report after we reported that epoch (so a frame sent
    /// under the previous keys has arrived, and the last member to apply
    /// the commit has done so) to the last report before any of `others`
    /// left (or before our own summary). `from` and `field` as in the
    /// per-track counts: `Some(id)` counts what we got from `id` (`field`
    /// `frames` received or `decrypted`), `None` what we sent. `None` when
    /// the window holds fewer than two reports.
    pub fn rate_while_together(
        &self,
        others: &[u64],
        epoch: Option<&(u64, String)>,
        from: Option<u64>,
        kind: &str,
        field: &str,
    ) -> Option<Rate> {
        let end = self.first_departure(others);
        let start = match epoch {
            Some((e, code)) => self.events[..end].iter().position(|v| {
                v["event"] == "epoch" && v["epoch"].as_u64() == Some(*e) && v["security_code"] == *code
            })?,
            None => 0,
        };
        let reports: Vec<&Value> = self.events[start..end].iter().filter(|v| v["event"] == "frames").collect();
        let skip = if epoch.is_some() { 1 } else { 0 };
        let (first, last) = (reports.get(skip)?, reports.last()?);
        let seconds = last["t"].as_f64()? - first["t"].as_f64()?;
        if seconds <= 0.0 {
            return None;
        }
        let frames = Self::count(last, from, kind, field).saturating_sub(Self::count(first, from, kind, field));
        Some(Rate { frames, seconds })
    }
}
