//! The ramp: connects participants step by step, holds each step and
//! measures it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::LoadError;
use crate::measure::{cpu_seconds, exited, own_cpu_seconds, percentile, rss_bytes};
use crate::peer::{LatencySample, PeerCtx, PeerStats, run_udp, run_webrtc};
use crate::synth::{Clock, MediaSpec};
use crate::target::{PeerLink, Role, StartOptions, Target, TargetKind};

/// Which scenario to run (issue #6 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// (a) one publisher (audio + video) to S subscribers, S ramped.
    Fanout,
    /// (b) meetings of N participants, all publishing and receiving.
    Meeting,
    /// Subscribers in a room where nothing is published: memory and CPU
    /// per idle subscriber (Plenary only; see the `idle` module).
    Idle,
}

/// One run: one target, one scenario.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The server under test.
    pub target: TargetKind,
    /// Scenario.
    pub scenario: Scenario,
    /// Subscribers per step (fanout) or participants per meeting.
    pub steps: Vec<usize>,
    /// How long each step is measured.
    pub hold: Duration,
    /// Time between the last join of a step and the start of measuring.
    pub warmup: Duration,
    /// Stop after a step whose loss exceeds this, percent.
    pub max_loss_pct: f64,
    /// Stop after a step where the server used more than this fraction of its core.
    pub max_cpu: f64,
    /// Media of each publisher.
    pub spec: MediaSpec,
    /// Decrypt one in this many frames for latency.
    pub sample_every: u32,
    /// How to start the target.
    pub start: StartOptions,
    /// Participants connecting at once.
    pub join_batch: usize,
}

/// Measurements of one step.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepResult {
    /// Subscribers (fanout) or participants (meeting) connected.
    pub subscribers: usize,
    /// Publishers.
    pub publishers: usize,
    /// Peers that failed to connect or dropped (not counted as receivers).
    pub failed_peers: usize,
    /// Length of the measured window, s.
    pub seconds: f64,
    /// RTP packets delivered to subscribers per second.
    pub packets_per_s: f64,
    /// Bits delivered to subscribers per second (whole SRTP datagrams).
    pub bits_per_s: f64,
    /// Server CPU use, in cores (1.0 = its whole core).
    pub server_cpu: f64,
    /// Server CPU-seconds per million delivered packets.
    pub cpu_s_per_mpkt: f64,
    /// Frames not delivered, percent of frames published × receivers.
    pub loss_pct: f64,
    /// One-way forwarding latency, median, ms.
    pub latency_p50_ms: Option<f64>,
    /// One-way forwarding latency, 99th percentile, ms.
    pub latency_p99_ms: Option<f64>,
    /// The same over audio frames only, ms.
    #[serde(default)]
    pub latency_audio_p99_ms: Option<f64>,
    /// The same over the first packets of video frames only, ms.
    #[serde(default)]
    pub latency_video_p99_ms: Option<f64>,
    /// Latency samples in the window.
    pub latency_samples: usize,
    /// Server RSS, MiB.
    pub rss_mib: f64,
    /// Server RSS growth since only publishers were connected, per
    /// subscriber, KiB (fanout only).
    pub rss_per_subscriber_kib: Option<f64>,
    /// Server RSS growth since the previous step over the subscribers
    /// added, KiB (fanout only): the marginal memory of an active
    /// subscriber, without the one-time costs the average carries.
    pub rss_slope_kib: Option<f64>,
    /// Time from opening to first media packet, median over the step's
    /// new receivers, ms.
    pub join_p50_ms: Option<f64>,
    /// Same, maximum, ms.
    pub join_max_ms: Option<f64>,
    /// Harness CPU use, in cores (near 1.0 means the generator, not the
    /// server, may be the limit).
    pub generator_cpu: f64,
    /// Why the step failed (the server process exited), or `None`; a
    /// failed step's server CPU and memory figures are not numbers.
    pub error: Option<String>,
}

/// A whole run, written as JSON.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    /// Target name.
    pub target: &'static str,
    /// Scenario.
    pub scenario: Scenario,
    /// Unix time the run started, s.
    pub started_unix: u64,
    /// `nproc`, CPU model, load average at the start.
    pub machine: String,
    /// Media of each publisher.
    pub spec: MediaSpec,
    /// Measured steps in order.
    pub steps: Vec<StepResult>,
    /// Why the ramp ended.
    pub stopped: String,
}

/// One simulated participant.
pub(crate) struct Participant {
    role: Role,
    /// Index of its meeting (fanout: all 0).
    group: usize,
    peers: Vec<Arc<PeerStats>>,
}

impl Participant {
    fn sum(&self, f: impl Fn(&PeerStats) -> u64) -> u64 {
        self.peers.iter().map(|p| f(p)).sum()
    }
    pub(crate) fn failed(&self) -> bool {
        self.peers.iter().any(|p| p.failed.lock().map(|f| f.is_some()).unwrap_or(true))
    }
    /// Whether every peer has ICE/DTLS up.
    pub(crate) fn connected(&self) -> bool {
        self.peers.iter().all(|p| p.connected.load(Ordering::Relaxed))
    }
    /// From opening to the last peer's ICE/DTLS connected, µs.
    pub(crate) fn connected_us(&self) -> Option<u64> {
        let mut max = 0;
        for p in &self.peers {
            match p.connect_us.load(Ordering::Relaxed) {
                0 => return None,
                j => max = max.max(j),
            }
        }
        Some(max)
    }
    fn joined_us(&self) -> Option<u64> {
        // Receivers count from their first media packet.
        let wanted: Vec<&Arc<PeerStats>> = self.peers.iter().collect();
        let mut max = 0;
        for p in wanted {
            let j = p.join_us.load(Ordering::Relaxed);
            if j == 0 {
                return None;
            }
            max = max.max(j);
        }
        Some(max)
    }
}

/// Counters of all participants at one instant.
struct Snapshot {
    at: Instant,
    server_cpu: f64,
    own_cpu: f64,
    /// Per participant: (video rx, audio rx, packets rx, bytes rx, video tx, audio tx, latency samples so far)
    per: Vec<[u64; 7]>,
}

fn snapshot(pid: u32, parts: &[Participant]) -> Snapshot {
    let per = parts
        .iter()
        .map(|p| {
            [
                p.sum(|s| s.video_frames_rx.load(Ordering::Relaxed)),
                p.sum(|s| s.audio_frames_rx.load(Ordering::Relaxed)),
                p.sum(|s| s.packets_rx.load(Ordering::Relaxed)),
                p.sum(|s| s.bytes_rx.load(Ordering::Relaxed)),
                p.sum(|s| s.video_frames_tx.load(Ordering::Relaxed)),
                p.sum(|s| s.audio_frames_tx.load(Ordering::Relaxed)),
                p.sum(|s| s.latency_us.lock().map(|v| v.len() as u64).unwrap_or(0)),
            ]
        })
        .collect();
    Snapshot {
        at: Instant::now(),
        server_cpu: cpu_seconds(pid).unwrap_or(f64::NAN),
        own_cpu: own_cpu_seconds().unwrap_or(f64::NAN),
        per,
    }
}

/// Machine description for reports: cores, CPU model, load average.
pub fn machine() -> String {
    // Not available_parallelism: that counts the CPUs this (pinned) process may use.
    let cores = std::fs::read_to_string("/proc/cpuinfo")
        .map(|c| c.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!("{cores} cores, {model}, load average {}", load.join(" "))
}

/// Runs the ramp of `cfg`; prints a line per step on stderr.
///
/// # Errors
/// [`LoadError`] if the target does not start or no publisher connects.
pub async fn run(cfg: &RunConfig) -> Result<RunReport, LoadError> {
    let started_unix =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let machine = machine();
    let target = crate::target::start(cfg.target, &cfg.start).await?;
    let pid = target.pid();
    let clock = Clock::new();
    let mut report = RunReport {
        target: cfg.target.name(),
        scenario: cfg.scenario,
        started_unix,
        machine,
        spec: cfg.spec,
        steps: Vec::new(),
        stopped: "all steps done".into(),
    };
    match cfg.scenario {
        Scenario::Fanout => fanout(cfg, target.as_ref(), pid, clock, &mut report).await?,
        Scenario::Meeting => meeting(cfg, target.as_ref(), pid, clock, &mut report).await?,
        Scenario::Idle => return Err(LoadError::Unsupported("the idle scenario runs through idle::run")),
    }
    drop(target);
    Ok(report)
}

/// Opens `n` participants of `role` in `room`, `batch` at a time.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn open_many(
    target: &dyn Target,
    room: &str,
    role: Role,
    n: usize,
    group: usize,
    batch: usize,
    ctx: &PeerCtx,
    out: &mut Vec<Participant>,
) {
    let mut left = n;
    while left > 0 {
        let k = left.min(batch.max(1));
        left -= k;
        let opens = (0..k).map(|_| async {
            let opened_at = Instant::now();
            (opened_at, target.open(room, role).await)
        });
        for (opened_at, r) in futures_util::future::join_all(opens).await {
            let mut stats = Vec::new();
            match r {
                Ok(peers) => {
                    for peer in peers {
                        let s = Arc::new(PeerStats::default());
                        stats.push(s.clone());
                        match peer.link {
                            PeerLink::WebRtc(sig) => {
                                tokio::spawn(run_webrtc(sig, peer.role, ctx.clone(), s, opened_at));
                            }
                            PeerLink::Udp(link) => {
                                tokio::spawn(run_udp(link, peer.role, ctx.clone(), s, opened_at));
                            }
                        }
                    }
                }
                Err(e) => {
                    let s = Arc::new(PeerStats::default());
                    if let Ok(mut f) = s.failed.lock() {
                        *f = Some(e.to_string());
                    }
                    stats.push(s);
                }
            }
            out.push(Participant { role, group, peers: stats });
        }
    }
}

/// Waits until every participant from `from` on has media (or failed), at
/// most `timeout`.
async fn wait_joined(parts: &[Participant], from: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if parts[from..].iter().all(|p| p.failed() || p.joined_us().is_some()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn first_failure(parts: &[Participant]) -> Option<String> {
    parts.iter().flat_map(|p| p.peers.iter()).find_map(|s| s.failed.lock().ok().and_then(|f| f.clone()))
}

/// Measures one step over `hold`, from a snapshot to another.
#[allow(clippy::too_many_arguments)]
async fn measure(
    cfg: &RunConfig,
    pid: u32,
    parts: &[Participant],
    new_from: usize,
    receivers: usize,
    publishers: usize,
    rss_base: Option<u64>,
) -> StepResult {
    tokio::time::sleep(cfg.warmup).await;
    let a = snapshot(pid, parts);
    tokio::time::sleep(cfg.hold).await;
    let b = snapshot(pid, parts);
    let secs = (b.at - a.at).as_secs_f64();
    let d = |i: usize, k: usize| b.per[i][k].saturating_sub(a.per[i][k]);
    let live: Vec<bool> = parts.iter().map(|p| !p.failed()).collect();
    let (mut rx_frames, mut expected, mut packets, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    for (i, p) in parts.iter().enumerate() {
        if !p.role.subscribes() || !live[i] {
            continue;
        }
        rx_frames += d(i, 0) + d(i, 1);
        packets += d(i, 2);
        bytes += d(i, 3);
        for (j, q) in parts.iter().enumerate() {
            if j != i && q.group == p.group && q.role.publishes() && live[j] {
                expected += d(j, 4) + d(j, 5);
            }
        }
    }
    let mut samples: Vec<LatencySample> = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let (from, to) = (a.per[i][6] as usize, b.per[i][6] as usize);
        for s in &p.peers {
            if let Ok(v) = s.latency_us.lock() {
                // Samples of this participant's peers, in the window (one receiving peer each).
                samples.extend(v.iter().skip(from).take(to.saturating_sub(from)));
            }
        }
    }
    let mut joins: Vec<u32> = parts[new_from..]
        .iter()
        .filter(|p| p.role.subscribes())
        .filter_map(|p| p.joined_us())
        .map(|u| u.min(u64::from(u32::MAX)) as u32)
        .collect();
    let mut lat: Vec<u32> = samples.iter().map(|l| l.us).collect();
    let mut audio_lat: Vec<u32> = samples.iter().filter(|l| l.audio).map(|l| l.us).collect();
    let mut video_lat: Vec<u32> = samples.iter().filter(|l| !l.audio).map(|l| l.us).collect();
    // A dead server's /proc entry says nothing (a zombie has no RSS): no figures.
    let error = exited(pid).then(|| format!("the server (pid {pid}) exited during the step"));
    let server_cpu_s = if error.is_some() { f64::NAN } else { b.server_cpu - a.server_cpu };
    let rss = if error.is_some() { None } else { rss_bytes(pid) };
    let ms = |v: Option<u32>| v.map(|u| f64::from(u) / 1000.0);
    StepResult {
        subscribers: receivers,
        publishers,
        failed_peers: live.iter().filter(|l| !**l).count(),
        seconds: secs,
        packets_per_s: packets as f64 / secs,
        bits_per_s: bytes as f64 * 8.0 / secs,
        server_cpu: server_cpu_s / secs,
        cpu_s_per_mpkt: if packets > 0 { server_cpu_s / (packets as f64 / 1e6) } else { f64::NAN },
        loss_pct: if expected > 0 { (1.0 - rx_frames as f64 / expected as f64).max(0.0) * 100.0 } else { 100.0 },
        latency_p50_ms: ms(percentile(&mut lat, 0.5)),
        latency_p99_ms: ms(percentile(&mut lat, 0.99)),
        latency_audio_p99_ms: ms(percentile(&mut audio_lat, 0.99)),
        latency_video_p99_ms: ms(percentile(&mut video_lat, 0.99)),
        latency_samples: lat.len(),
        rss_mib: rss.map_or(f64::NAN, |r| r as f64 / (1024.0 * 1024.0)),
        rss_per_subscriber_kib: rss_base
            .zip(rss)
            .filter(|_| receivers > 0)
            .map(|(base, rss)| (rss as f64 - base as f64) / 1024.0 / receivers as f64),
        rss_slope_kib: None,
        join_p50_ms: ms(percentile(&mut joins, 0.5)),
        join_max_ms: ms(percentile(&mut joins, 1.0)),
        generator_cpu: (b.own_cpu - a.own_cpu) / secs,
        error,
    }
}

fn log_step(target: &str, s: &StepResult) {
    eprintln!(
        "{target}: {} receivers: {:.0} pkt/s, {:.1} Mbit/s, server {:.0}% CPU, {:.2} CPU-s/Mpkt, loss {:.2}%, latency p50 {} p99 {} ms (audio {}, video {}), join p50 {} ms, generator {:.0}% CPU{}",
        s.subscribers,
        s.packets_per_s,
        s.bits_per_s / 1e6,
        s.server_cpu * 100.0,
        s.cpu_s_per_mpkt,
        s.loss_pct,
        s.latency_p50_ms.map_or("-".into(), |v| format!("{v:.2}")),
        s.latency_p99_ms.map_or("-".into(), |v| format!("{v:.2}")),
        s.latency_audio_p99_ms.map_or("-".into(), |v| format!("{v:.2}")),
        s.latency_video_p99_ms.map_or("-".into(), |v| format!("{v:.2}")),
        s.join_p50_ms.map_or("-".into(), |v| format!("{v:.0}")),
        s.generator_cpu * 100.0,
        if s.failed_peers > 0 { format!(", {} peers failed", s.failed_peers) } else { String::new() },
    );
    if let Some(e) = &s.error {
        eprintln!("{target}: step of {} receivers FAILED: {e}", s.subscribers);
    }
}

/// Whether the ramp must stop after `s`; the reason.
fn bound_hit(cfg: &RunConfig, s: &StepResult) -> Option<String> {
    if let Some(e) = &s.error {
        return Some(format!("{e} at {} receivers", s.subscribers));
    }
    if s.loss_pct > cfg.max_loss_pct {
        return Some(format!("loss {:.2}% > {}% at {} receivers", s.loss_pct, cfg.max_loss_pct, s.subscribers));
    }
    if s.server_cpu > cfg.max_cpu {
        return Some(format!(
            "server CPU {:.0}% > {:.0}% at {} receivers",
            s.server_cpu * 100.0,
            cfg.max_cpu * 100.0,
            s.subscribers
        ));
    }
    None
}

async fn fanout(
    cfg: &RunConfig,
    target: &dyn Target,
    pid: u32,
    clock: Clock,
    report: &mut RunReport,
) -> Result<(), LoadError> {
    let (stop_tx, stop) = watch::channel(false);
    let ctx = PeerCtx { spec: cfg.spec, clock, sample_every: cfg.sample_every, local_ip: target.local_ip(), stop };
    let room = "load-fanout";
    let mut parts = Vec::new();
    open_many(target, room, Role::Publisher, 1, 0, 1, &ctx, &mut parts).await;
    wait_joined(&parts, 0, crate::peer::CONNECT_TIMEOUT).await;
    if parts[0].joined_us().is_none() {
        let why = first_failure(&parts).unwrap_or_else(|| "not connected in time".into());
        let _ = stop_tx.send(true);
        return Err(LoadError::Signaling(format!("the publisher did not connect: {why}")));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_base = rss_bytes(pid);
    // (RSS, receivers) of the previous step, for the slope.
    let mut prev: Option<(f64, usize)> = None;
    for &s in &cfg.steps {
        let have = parts.len() - 1;
        if s <= have {
            continue;
        }
        let from = parts.len();
        open_many(target, room, Role::Subscriber, s - have, 0, cfg.join_batch, &ctx, &mut parts).await;
        wait_joined(&parts, from, Duration::from_secs(60)).await;
        let mut r = measure(cfg, pid, &parts, from, s, 1, rss_base).await;
        if let Some((rss, n)) = prev
            && s > n
            && r.rss_mib.is_finite()
        {
            r.rss_slope_kib = Some((r.rss_mib - rss) * 1024.0 / (s - n) as f64);
        }
        prev = Some((r.rss_mib, s));
        log_step(report.target, &r);
        let bound = bound_hit(cfg, &r);
        report.steps.push(r);
        if let Some(why) = bound {
            report.stopped = why;
            break;
        }
    }
    if let Some(f) = first_failure(&parts) {
        report.stopped = format!("{}; first peer failure: {f}", report.stopped);
    }
    let _ = stop_tx.send(true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(())
}

async fn meeting(
    cfg: &RunConfig,
    target: &dyn Target,
    pid: u32,
    clock: Clock,
    report: &mut RunReport,
) -> Result<(), LoadError> {
    for (g, &n) in cfg.steps.iter().enumerate() {
        let (stop_tx, stop) = watch::channel(false);
        let ctx = PeerCtx { spec: cfg.spec, clock, sample_every: cfg.sample_every, local_ip: target.local_ip(), stop };
        let room = format!("load-meeting-{g}");
        let mut parts = Vec::new();
        open_many(target, &room, Role::Both, n, g, cfg.join_batch, &ctx, &mut parts).await;
        wait_joined(&parts, 0, Duration::from_secs(60)).await;
        let r = measure(cfg, pid, &parts, 0, n, n, None).await;
        log_step(report.target, &r);
        let bound = bound_hit(cfg, &r);
        report.steps.push(r);
        if let Some(f) = first_failure(&parts) {
            eprintln!("{}: meeting of {n}: first peer failure: {f}", report.target);
        }
        let _ = stop_tx.send(true);
        // Let the server notice the leaves before the next meeting.
        tokio::time::sleep(Duration::from_secs(2)).await;
        if let Some(why) = bound {
            report.stopped = why;
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RunConfig {
        RunConfig {
            target: TargetKind::Plenary,
            scenario: Scenario::Fanout,
            steps: vec![1],
            hold: Duration::from_millis(300),
            warmup: Duration::ZERO,
            max_loss_pct: 100.0,
            max_cpu: 64.0,
            spec: MediaSpec {
                video_bps: 1000,
                fps: 1,
                keyframe_interval: 1,
                width: 1,
                height: 1,
                audio_bps: 1000,
                pace_bps: 0,
                pace_burst_ms: 0,
            },
            sample_every: 1,
            start: StartOptions {
                server_cpu: None,
                plenary_bin: "true".into(),
                janus_bin: "true".into(),
                work_dir: std::env::temp_dir(),
                threads: 1,
            },
            join_batch: 1,
        }
    }

    #[tokio::test]
    async fn a_server_that_dies_during_a_step_fails_the_step_and_stops_the_ramp() {
        let cfg = config();
        let mut server = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = server.id();
        let alive = measure(&cfg, pid, &[], 0, 1, 1, rss_bytes(pid)).await;
        assert_eq!(alive.error, None);
        assert!(alive.rss_mib > 0.0 && alive.server_cpu.is_finite());
        assert!(bound_hit(&cfg, &alive).is_none());

        // Killed (not reaped: a zombie, as a crashed `plenary serve` is until the target drops).
        server.kill().unwrap();
        let dead = measure(&cfg, pid, &[], 0, 1, 1, Some(1)).await;
        let error = dead.error.clone().expect("the step is marked failed");
        assert!(error.contains("exited"), "{error}");
        assert!(dead.rss_mib.is_nan() && dead.server_cpu.is_nan() && dead.rss_per_subscriber_kib.is_none());
        assert!(bound_hit(&cfg, &dead).is_some_and(|why| why.contains("exited")));
        let json = serde_json::to_value(&dead).unwrap();
        assert!(json["rss_mib"].is_null() && json["error"].is_string(), "{json}");
        server.wait().unwrap();
    }
}
