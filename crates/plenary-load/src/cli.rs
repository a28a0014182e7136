//! `plenary load`: the command line of the harness.

use std::path::PathBuf;
use std::time::Duration;

use crate::LoadError;
use crate::report::{markdown, svg};
use crate::run::{RunConfig, RunReport, Scenario, run};
use crate::synth::MediaSpec;
use crate::target::{StartOptions, TargetKind};

/// Flags of `plenary load`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Servers to load, one after the other, same ramp (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "plenary")]
    pub target: Vec<TargetKind>,
    /// (a) `fanout`: 1 publisher to S subscribers; (b) `meeting`: N participants all publishing;
    /// `idle`: S subscribers in a room where nothing is published (memory per idle subscriber).
    #[arg(long, value_enum, default_value = "fanout")]
    pub scenario: Scenario,
    /// Subscribers per step (fanout, idle) or participants per meeting
    /// [default: 50,100,200,400,800; 10,25,50; 200,400,800].
    #[arg(long, value_delimiter = ',')]
    pub steps: Vec<usize>,
    /// Seconds each step is measured.
    #[arg(long, default_value_t = 20.0)]
    pub hold: f64,
    /// Seconds between a step's last join and its measurement.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Stop the ramp after a step with more loss than this, percent.
    #[arg(long, default_value_t = 5.0)]
    pub max_loss: f64,
    /// Stop the ramp after a step where the server used more than this share of its core.
    #[arg(long, default_value_t = 0.95)]
    pub max_cpu: f64,
    /// Video bitrate of each publisher, kbit/s [default: 1000 fanout, 300 meeting].
    #[arg(long)]
    pub video_kbps: Option<u32>,
    /// Video frames per second.
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    /// Audio bitrate, kbit/s (one packet per 20 ms).
    #[arg(long, default_value_t = 32)]
    pub audio_kbps: u32,
    /// Pace each publisher's video at this rate, kbit/s (leaky bucket, see
    /// `pacing`); 0 writes a frame's packets back to back, as libwebrtc's
    /// and str0m's pacers do at the default 1 Mbit/s (40 ms burst allowance).
    #[arg(long, default_value_t = 0)]
    pub pace_kbps: u32,
    /// Burst allowance of `--pace-kbps`, ms of debt sent at once (libwebrtc: 40).
    #[arg(long, default_value_t = 0)]
    pub pace_burst_ms: u32,
    /// Decrypt one in this many frames per subscriber for latency.
    #[arg(long, default_value_t = 50)]
    pub sample: u32,
    /// CPU to pin the server to (taskset), "none" to not pin.
    #[arg(long, default_value = "0")]
    pub server_cpu: String,
    /// CPU to pin this harness to, "none" to not pin.
    #[arg(long, default_value = "1")]
    pub generator_cpu: String,
    /// The plenary binary [default: this executable].
    #[arg(long)]
    pub plenary_bin: Option<PathBuf>,
    /// The janus binary.
    #[arg(long, default_value = "janus")]
    pub janus_bin: PathBuf,
    /// Participants connecting at once.
    #[arg(long, default_value_t = 10)]
    pub join_batch: usize,
    /// Directory for `<target>-<scenario>.json`, `load.md` and `load.svg`.
    #[arg(long, default_value = "load-results")]
    pub out: PathBuf,
}

fn write_json(path: &std::path::Path, value: &impl serde::Serialize) -> Result<(), LoadError> {
    let json = serde_json::to_string_pretty(value).map_err(|e| LoadError::Io(std::io::Error::other(e)))?;
    std::fs::write(path, json)?;
    Ok(())
}

fn cpu(s: &str) -> Option<usize> {
    s.parse().ok()
}

/// Runs `plenary load`: every target in turn, then writes the JSON files,
/// the markdown table (also printed) and the chart.
///
/// # Errors
/// [`LoadError`] when a target cannot be started or results not written.
pub fn main(args: LoadArgs) -> Result<Vec<RunReport>, LoadError> {
    // Counted before pinning, which would make it 1.
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if let Some(c) = cpu(&args.generator_cpu) {
        // All threads of this process, including the runtime's.
        let status = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", &c.to_string(), &std::process::id().to_string()])
            .stdout(std::process::Stdio::null())
            .status()?;
        if !status.success() {
            eprintln!("plenary load: taskset failed; the harness is not pinned");
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::fs::create_dir_all(&args.out)?;
    let work = args.out.join("work");
    std::fs::create_dir_all(&work)?;
    let meeting = args.scenario == Scenario::Meeting;
    let steps = if args.steps.is_empty() {
        match args.scenario {
            Scenario::Meeting => vec![10, 25, 50],
            Scenario::Idle => vec![200, 400, 800],
            Scenario::Fanout => vec![50, 100, 200, 400, 800],
        }
    } else {
        args.steps.clone()
    };
    let spec = MediaSpec {
        video_bps: args.video_kbps.unwrap_or(if meeting { 300 } else { 1000 }) * 1000,
        fps: args.fps,
        keyframe_interval: args.fps * 4,
        width: 1280,
        height: 720,
        audio_bps: args.audio_kbps * 1000,
        pace_bps: args.pace_kbps.saturating_mul(1000),
        pace_burst_ms: args.pace_burst_ms,
    };
    let plenary_bin = match &args.plenary_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?,
    };
    let mut reports = Vec::new();
    let mut idle_reports = Vec::new();
    for &target in &args.target {
        let cfg = RunConfig {
            target,
            scenario: args.scenario,
            steps: steps.clone(),
            hold: Duration::from_secs_f64(args.hold.max(0.5)),
            warmup: Duration::from_secs_f64(args.warmup.max(0.0)),
            max_loss_pct: args.max_loss,
            max_cpu: args.max_cpu,
            spec,
            sample_every: args.sample.max(1),
            start: StartOptions {
                server_cpu: cpu(&args.server_cpu),
                plenary_bin: plenary_bin.clone(),
                janus_bin: args.janus_bin.clone(),
                work_dir: work.clone(),
                threads: cores,
            },
            join_batch: args.join_batch,
        };
        eprintln!("plenary load: {} {:?}, steps {:?}", target.name(), args.scenario, steps);
        if args.scenario == Scenario::Idle {
            let report = rt.block_on(crate::idle::run(&cfg))?;
            write_json(&args.out.join(format!("{}-idle.json", target.name())), &report)?;
            idle_reports.push(report);
            continue;
        }
        let report = rt.block_on(run(&cfg))?;
        eprintln!("{}: stopped: {}", report.target, report.stopped);
        let name = format!("{}-{}.json", target.name(), if meeting { "meeting" } else { "fanout" });
        write_json(&args.out.join(name), &report)?;
        reports.push(report);
    }
    if args.scenario == Scenario::Idle {
        let table = crate::idle::markdown(&idle_reports);
        println!("{table}");
        std::fs::write(args.out.join("idle.md"), &table)?;
        return Ok(reports);
    }
    let table = markdown(&reports);
    println!("{table}");
    std::fs::write(args.out.join("load.md"), &table)?;
    let title = format!(
        "plenary load --scenario {} ({} kbit/s video, {} fps), server on one core",
        if meeting { "meeting" } else { "fanout" },
        spec.video_bps / 1000,
        spec.fps
    );
    std::fs::write(args.out.join("load.svg"), svg(&reports, &title))?;
    Ok(reports)
}
