//! Scenario `idle`: the memory and CPU an *idle* subscriber costs the
//! server.
//!
//! Subscribers join one room in which nothing is published, complete ICE
//! and DTLS-SRTP like any browser, and then only keep their session alive
//! (STUN consent checks, RFC 7675; RTCP). Steps add subscribers (for
//! example 200, 400, 800); after each step the server's RSS is read once
//! every peer of the step is connected and the warm-up has passed.
//!
//! Memory per idle subscriber is the *slope*: RSS growth between two
//! steps over the subscribers added, so that one-time costs (runtime
//! threads, the first allocation arenas, lazily built tables) fall in the
//! first step and not in the per-subscriber figure. The first step's slope
//! is taken from the server with no participant at all and so includes
//! those costs; the later steps' slopes are the honest marginal cost.

use std::time::{Duration, Instant};

use crate::LoadError;
use crate::measure::{cpu_seconds, exited, percentile, rss_bytes};
use crate::run::{Participant, RunConfig, machine, open_many};
use crate::synth::Clock;
use crate::target::Role;

/// Measurements of one idle step.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IdleStep {
    /// Subscribers connected (ICE and DTLS done).
    pub subscribers: usize,
    /// Subscribers that failed to connect or dropped.
    pub failed_peers: usize,
    /// Server RSS at the end of the step, MiB.
    pub rss_mib: f64,
    /// RSS growth since the previous step (or since the empty server)
    /// over the subscribers added, KiB per subscriber.
    pub rss_slope_kib: f64,
    /// Server CPU while holding the step, in cores.
    pub server_cpu: f64,
    /// Time from opening to ICE/DTLS connected, median over the step's new
    /// subscribers, ms.
    pub connect_p50_ms: Option<f64>,
    /// Same, maximum, ms.
    pub connect_max_ms: Option<f64>,
    /// Why the step failed (the server process exited), or `None`; a
    /// failed step's RSS and CPU figures are not numbers.
    pub error: Option<String>,
}

/// A whole idle run, written as JSON.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IdleReport {
    /// Target name.
    pub target: &'static str,
    /// Unix time the run started, s.
    pub started_unix: u64,
    /// `nproc`, CPU model, load average at the start.
    pub machine: String,
    /// Server RSS before any participant joined, MiB.
    pub rss_empty_mib: f64,
    /// Measured steps in order.
    pub steps: Vec<IdleStep>,
    /// Why the ramp ended.
    pub stopped: String,
}

/// Waits until every participant from `from` on is connected (or failed),
/// at most `timeout`.
async fn wait_connected(parts: &[Participant], from: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if parts[from..].iter().all(|p| p.failed() || p.connected()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the idle ramp of `cfg` (its `steps`, `warmup`, `hold`, `join_batch`).
///
/// # Errors
/// [`LoadError::Start`] if the target does not start,
/// [`LoadError::Unsupported`] for a target whose subscribers need a
/// publisher to subscribe to (Janus VideoRoom) or that has no sessions
/// (the relays).
pub async fn run(cfg: &RunConfig) -> Result<IdleReport, LoadError> {
    if cfg.target != crate::TargetKind::Plenary {
        return Err(LoadError::Unsupported("the idle scenario with a target other than plenary"));
    }
    let started_unix =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let machine = machine();
    let target = crate::target::start(cfg.target, &cfg.start).await?;
    let pid = target.pid();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let ctx = crate::peer::PeerCtx {
        spec: cfg.spec,
        clock: Clock::new(),
        sample_every: cfg.sample_every,
        local_ip: target.local_ip(),
        stop,
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_empty = rss_bytes(pid).map_or(f64::NAN, |r| r as f64);
    let mut report = IdleReport {
        target: cfg.target.name(),
        started_unix,
        machine,
        rss_empty_mib: rss_empty / MIB,
        steps: Vec::new(),
        stopped: "all steps done".into(),
    };
    let (mut prev_rss, mut prev_n) = (rss_empty, 0usize);
    let mut parts = Vec::new();
    for &s in &cfg.steps {
        if s <= parts.len() {
            continue;
        }
        let from = parts.len();
        open_many(target.as_ref(), "load-idle", Role::Subscriber, s - from, 0, cfg.join_batch, &ctx, &mut parts).await;
        wait_connected(&parts, from, Duration::from_secs(60)).await;
        tokio::time::sleep(cfg.warmup).await;
        let cpu_a = (cpu_seconds(pid), Instant::now());
        tokio::time::sleep(cfg.hold).await;
        let secs = cpu_a.1.elapsed().as_secs_f64();
        // A dead server's /proc entry says nothing (a zombie has no RSS): no figures.
        let error = exited(pid).then(|| format!("the server (pid {pid}) exited during the step"));
        let server_cpu = match error {
            None => cpu_seconds(pid).zip(cpu_a.0).map_or(f64::NAN, |(b, a)| (b - a) / secs),
            Some(_) => f64::NAN,
        };
        let rss = if error.is_some() { f64::NAN } else { rss_bytes(pid).map_or(f64::NAN, |r| r as f64) };
        let failed = parts.iter().filter(|p| p.failed()).count();
        let live = parts.len() - failed;
        let mut connects: Vec<u32> =
            parts[from..].iter().filter_map(|p| p.connected_us()).map(|u| u.min(u64::from(u32::MAX)) as u32).collect();
        let ms = |v: Option<u32>| v.map(|u| f64::from(u) / 1000.0);
        let step = IdleStep {
            subscribers: live,
            failed_peers: failed,
            rss_mib: rss / MIB,
            rss_slope_kib: (rss - prev_rss) / 1024.0 / (live.saturating_sub(prev_n)).max(1) as f64,
            server_cpu,
            connect_p50_ms: ms(percentile(&mut connects, 0.5)),
            connect_max_ms: ms(percentile(&mut connects, 1.0)),
            error,
        };
        eprintln!(
            "{}: idle {} subscribers ({} failed): RSS {:.1} MiB, {:.1} KiB per added subscriber, server {:.1}% CPU, connect p50 {} ms",
            report.target,
            step.subscribers,
            step.failed_peers,
            step.rss_mib,
            step.rss_slope_kib,
            step.server_cpu * 100.0,
            step.connect_p50_ms.map_or("-".into(), |v| format!("{v:.0}")),
        );
        (prev_rss, prev_n) = (rss, live);
        let error = step.error.clone();
        report.steps.push(step);
        if let Some(e) = error {
            eprintln!("{}: step of {s} subscribers FAILED: {e}", report.target);
            report.stopped = format!("{e} at {s} subscribers");
            break;
        }
        if failed * 20 > parts.len() {
            report.stopped = format!("more than 5% of subscribers failed at {}", parts.len());
            break;
        }
    }
    let _ = stop_tx.send(true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(target);
    Ok(report)
}

const MIB: f64 = 1024.0 * 1024.0;

/// A markdown table of idle runs, one row per target and step.
pub fn markdown(runs: &[IdleReport]) -> String {
    use std::fmt::Write as _;
    let mut s = String::from(
        "| target | idle subscribers | RSS MiB | KiB per added subscriber | server CPU | connect p50 / max ms |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for r in runs {
        let _ = writeln!(s, "| {} | 0 | {:.1} | - | - | - |", r.target, r.rss_empty_mib);
        for st in &r.steps {
            let opt = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.0}"));
            let _ = writeln!(
                s,
                "| {} | {}{} | {:.1} | {:.1} | {:.1}% | {} / {} |",
                r.target,
                st.subscribers,
                crate::report::failed_note(st.failed_peers, st.error.as_deref()),
                st.rss_mib,
                st.rss_slope_kib,
                st.server_cpu * 100.0,
                opt(st.connect_p50_ms),
                opt(st.connect_max_ms),
            );
        }
    }
    s
}
