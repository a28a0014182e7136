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
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..=MAX_STEP as i64))]
    pub steps: Vec<u32>,
    /// Seconds each step is measured (0.5 to 86400).
    #[arg(long, default_value_t = 20.0, value_parser = seconds(0.5, 86_400.0))]
    pub hold: f64,
    /// Seconds between a step's last join and its measurement (0 to 3600).
    #[arg(long, default_value_t = 2.0, value_parser = seconds(0.0, 3600.0))]
    pub warmup: f64,
    /// Stop the ramp after a step with more loss than this, percent (0 to 100).
    #[arg(long, default_value_t = 5.0, value_parser = bounded(0.0, 100.0))]
    pub max_loss: f64,
    /// Stop the ramp after a step where the server used more than this
    /// share of its core (above 0, at most 64: an unpinned server may use several).
    #[arg(long, default_value_t = 0.95, value_parser = bounded(f64::MIN_POSITIVE, 64.0))]
    pub max_cpu: f64,
    /// Video bitrate of each publisher, kbit/s, 1 to 100000 [default: 1000 fanout, 300 meeting].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub video_kbps: Option<u32>,
    /// Video frames per second (1 to 240).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=240))]
    pub fps: u32,
    /// Audio bitrate, kbit/s (one packet per 20 ms; 1 to 510, Opus's range).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=510))]
    pub audio_kbps: u32,
    /// Pace each publisher's video at this rate, kbit/s (leaky bucket, see
    /// `pacing`); 0 writes a frame's packets back to back, as libwebrtc's
    /// and str0m's pacers do at the default 1 Mbit/s (40 ms burst allowance).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=10_000_000))]
    pub pace_kbps: u32,
    /// Burst allowance of `--pace-kbps`, ms of debt sent at once (libwebrtc: 40).
    #[arg(long, default_value_t = 0)]
    pub pace_burst_ms: u32,
    /// Decrypt one in this many frames per subscriber for latency.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub sample: u32,
    /// CPU to pin the server to (taskset), "none" to not pin.
    #[arg(long, default_value = "0", value_parser = cpu_choice)]
    pub server_cpu: CpuChoice,
    /// CPU to pin this harness to, "none" to not pin.
    #[arg(long, default_value = "1", value_parser = cpu_choice)]
    pub generator_cpu: CpuChoice,
    /// The plenary binary [default: this executable].
    #[arg(long)]
    pub plenary_bin: Option<PathBuf>,
    /// The janus binary.
    #[arg(long, default_value = "janus")]
    pub janus_bin: PathBuf,
    /// Participants connecting at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub join_batch: u32,
    /// Directory for `<target>-<scenario>.json`, `load.md` and `load.svg`
    /// (idle: `plenary-idle.json` and `idle.md`), and `work/` (server logs, Janus config).
    #[arg(long, default_value = "load-results")]
    pub out: PathBuf,
}

/// The largest step accepted: receivers (fanout, idle) or participants (meeting).
const MAX_STEP: u32 = 100_000;
/// Open files one simulated peer may hold (its UDP socket and a signaling
/// connection), for the `ulimit -n` check.
const FILES_PER_PEER: u64 = 2;

/// `--server-cpu` / `--generator-cpu`: a CPU number, or `none` (not pinned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuChoice(pub Option<usize>);

fn cpu_choice(s: &str) -> Result<CpuChoice, String> {
    if s == "none" {
        return Ok(CpuChoice(None));
    }
    s.parse().map(|c| CpuChoice(Some(c))).map_err(|_| format!("expected a CPU number or \"none\", got {s:?}"))
}

/// A value parser for a finite number in `min..=max`.
fn bounded(min: f64, max: f64) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        let v: f64 = s.parse().map_err(|_| format!("not a number: {s:?}"))?;
        if !v.is_finite() || v < min || v > max {
            return Err(format!("{s} is outside {min}..={max}"));
        }
        Ok(v)
    }
}

/// [`bounded`], in seconds.
fn seconds(min: f64, max: f64) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    let check = bounded(min, max);
    move |s: &str| check(s).map_err(|e| format!("{e} seconds"))
}

/// The steps the run will take, checked: the scenario's defaults when
/// `steps` is empty; fanout and idle ramps must grow (each step adds
/// receivers to the previous one); a meeting needs two participants; the
/// largest step must fit the open-file limit `nofile`.
fn checked_steps(scenario: Scenario, steps: &[u32], nofile: u64) -> Result<Vec<usize>, LoadError> {
    let steps: Vec<usize> = if steps.is_empty() {
        match scenario {
            Scenario::Meeting => vec![10, 25, 50],
            Scenario::Idle => vec![200, 400, 800],
            Scenario::Fanout => vec![50, 100, 200, 400, 800],
        }
    } else {
        steps.iter().map(|&s| s as usize).collect()
    };
    let bad = |why: String| LoadError::Usage(format!("--steps {steps:?}: {why}"));
    if scenario == Scenario::Meeting {
        if steps.iter().any(|&n| n < 2) {
            return Err(bad("a meeting needs at least 2 participants".into()));
        }
    } else if let Some(w) = steps.windows(2).find(|w| w[1] <= w[0]) {
        return Err(bad(format!("steps must grow (each adds receivers to the last), {} follows {}", w[1], w[0])));
    }
    let largest = steps.iter().copied().max().unwrap_or(0) as u64;
    // Janus gives a meeting participant two peers; a fanout adds the publisher.
    let files = (largest * 2 + 1) * FILES_PER_PEER + 64;
    if files > nofile {
        return Err(bad(format!(
            "a step of {largest} needs about {files} open files, the limit is {nofile} (raise `ulimit -n`)"
        )));
    }
    Ok(steps)
}

/// Refuses `--scenario idle` with a target other than Plenary before any
/// target starts: Janus VideoRoom subscribers need a publisher to
/// subscribe to, and the relays keep no sessions to measure.
fn check_scenario_targets(scenario: Scenario, targets: &[TargetKind]) -> Result<(), LoadError> {
    match targets.iter().find(|t| **t != TargetKind::Plenary) {
        Some(t) if scenario == Scenario::Idle => Err(LoadError::Usage(format!(
            "--scenario idle works only with --target plenary, not {} (Janus subscribers need a publisher; the relays keep no sessions)",
            t.name()
        ))),
        _ => Ok(()),
    }
}

/// The soft open-file limit (`RLIMIT_NOFILE`), unlimited if unknown.
fn open_file_limit() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map_or(u64::MAX, |(soft, _)| soft)
}

/// Refuses a target named twice (its second run would overwrite the
/// first's `<target>-<scenario>.json`) and an empty list.
fn check_targets(targets: &[TargetKind]) -> Result<(), LoadError> {
    if targets.is_empty() {
        return Err(LoadError::Usage("--target: name at least one target".into()));
    }
    for (i, t) in targets.iter().enumerate() {
        if targets[..i].contains(t) {
            return Err(LoadError::Usage(format!("--target: {} is named twice", t.name())));
        }
    }
    Ok(())
}

/// Refuses a CPU this machine does not have.
fn check_cpu(flag: &str, cpu: CpuChoice, cores: usize) -> Result<(), LoadError> {
    match cpu.0 {
        Some(c) if c >= cores => {
            Err(LoadError::Usage(format!("{flag} {c}: this machine has CPUs 0..={}", cores.saturating_sub(1))))
        }
        _ => Ok(()),
    }
}

fn write_json(path: &std::path::Path, value: &impl serde::Serialize) -> Result<(), LoadError> {
    let json = serde_json::to_string_pretty(value).map_err(|e| LoadError::Io(std::io::Error::other(e)))?;
    write_output(path, json)
}

/// Writes one result file; the error names it.
fn write_output(path: &std::path::Path, contents: impl AsRef<[u8]>) -> Result<(), LoadError> {
    std::fs::write(path, contents).map_err(|source| LoadError::Output { path: path.to_owned(), source })
}

/// Runs `plenary load`: every target in turn, then writes the JSON files,
/// the markdown table (also printed) and the chart.
///
/// # Errors
/// [`LoadError`] when a target cannot be started or results not written.
pub fn main(args: LoadArgs) -> Result<Vec<RunReport>, LoadError> {
    // Counted before pinning, which would make it 1.
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    check_cpu("--server-cpu", args.server_cpu, cores)?;
    check_cpu("--generator-cpu", args.generator_cpu, cores)?;
    check_scenario_targets(args.scenario, &args.target)?;
    let steps = checked_steps(args.scenario, &args.steps, open_file_limit())?;
    check_targets(&args.target)?;
    let plenary_bin = match &args.plenary_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?,
    };
    for &target in &args.target {
        match target {
            TargetKind::Plenary => crate::process::check_executable(&plenary_bin, "")?,
            TargetKind::Janus => {
                crate::process::check_executable(&args.janus_bin, "; Debian: apt-get install janus")?;
            }
            TargetKind::UdpRelay | TargetKind::SrtpRelay => crate::process::check_executable(
                &crate::relay::relay_bin(&plenary_bin),
                "; build it with cargo build --release -p plenary-load (it must sit beside plenary)",
            )?,
        }
    }
    if let Some(c) = args.generator_cpu.0 {
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
    let work = args.out.join("work");
    std::fs::create_dir_all(&work).map_err(|source| LoadError::Output { path: work.clone(), source })?;
    let meeting = args.scenario == Scenario::Meeting;
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
    let mut reports = Vec::new();
    let mut idle_reports = Vec::new();
    for &target in &args.target {
        let cfg = RunConfig {
            target,
            scenario: args.scenario,
            steps: steps.clone(),
            hold: Duration::from_secs_f64(args.hold),
            warmup: Duration::from_secs_f64(args.warmup),
            max_loss_pct: args.max_loss,
            max_cpu: args.max_cpu,
            spec,
            sample_every: args.sample,
            start: StartOptions {
                server_cpu: args.server_cpu.0,
                plenary_bin: plenary_bin.clone(),
                janus_bin: args.janus_bin.clone(),
                work_dir: work.clone(),
                threads: cores,
            },
            join_batch: args.join_batch as usize,
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
        write_output(&args.out.join("idle.md"), &table)?;
        return Ok(reports);
    }
    let table = markdown(&reports);
    println!("{table}");
    write_output(&args.out.join("load.md"), &table)?;
    let title = format!(
        "plenary load --scenario {} ({} kbit/s video, {} fps), server on one core",
        if meeting { "meeting" } else { "fanout" },
        spec.video_bps / 1000,
        spec.fps
    );
    write_output(&args.out.join("load.svg"), svg(&reports, &title))?;
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser, Debug)]
    struct Cmd {
        #[command(flatten)]
        load: LoadArgs,
    }

    fn parse(args: &[&str]) -> Result<LoadArgs, clap::Error> {
        Cmd::try_parse_from(std::iter::once("load").chain(args.iter().copied())).map(|c| c.load)
    }

    #[test]
    fn nonsense_flag_values_are_refused_by_the_parser() {
        for bad in [
            &["--steps", ""][..],
            &["--steps", "0"],
            &["--steps", "50,0"],
            &["--steps", "100000001"],
            &["--hold", "0"],
            &["--hold", "inf"],
            &["--hold", "NaN"],
            &["--hold=-5"],
            &["--warmup", "1e300"],
            &["--warmup", "NaN"],
            &["--max-loss", "NaN"],
            &["--max-loss=-1"],
            &["--max-loss", "101"],
            &["--max-cpu", "0"],
            &["--max-cpu", "NaN"],
            &["--fps", "0"],
            &["--fps", "2000000"],
            &["--video-kbps", "0"],
            &["--video-kbps", "5000000"],
            &["--audio-kbps", "0"],
            &["--sample", "0"],
            &["--join-batch", "0"],
            &["--server-cpu", "first"],
            &["--generator-cpu", ""],
            &["--target", "bogus"],
        ] {
            let e = parse(bad).expect_err(&format!("{bad:?} was accepted"));
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
        let ok = parse(&["--hold", "0.5", "--warmup", "0", "--pace-kbps", "0", "--server-cpu", "none"]).unwrap();
        assert_eq!((ok.hold, ok.server_cpu, ok.generator_cpu), (0.5, CpuChoice(None), CpuChoice(Some(1))));
    }

    #[test]
    fn steps_must_grow_fit_the_file_limit_and_make_a_meeting() {
        let usage = |r: Result<Vec<usize>, LoadError>| matches!(r, Err(LoadError::Usage(_)));
        assert_eq!(checked_steps(Scenario::Fanout, &[], 1 << 20).unwrap(), [50, 100, 200, 400, 800]);
        assert_eq!(checked_steps(Scenario::Fanout, &[1, 2], 1 << 20).unwrap(), [1, 2]);
        assert!(usage(checked_steps(Scenario::Fanout, &[100, 50], 1 << 20)));
        assert!(usage(checked_steps(Scenario::Idle, &[50, 50], 1 << 20)));
        assert!(usage(checked_steps(Scenario::Meeting, &[1], 1 << 20)));
        assert_eq!(checked_steps(Scenario::Meeting, &[25, 10, 25], 1 << 20).unwrap(), [25, 10, 25]);
        assert!(usage(checked_steps(Scenario::Fanout, &[50, 10_000], 20_000)));
        assert!(checked_steps(Scenario::Fanout, &[50, 4_000], 20_000).is_ok());
        assert!(usage(check_cpu("--server-cpu", CpuChoice(Some(2)), 2).map(|()| vec![])));
        assert!(check_cpu("--server-cpu", CpuChoice(Some(1)), 2).is_ok());
        let targets = parse(&["--target", "plenary,janus,plenary"]).unwrap().target;
        assert!(usage(check_targets(&targets).map(|()| vec![])));
        assert!(check_targets(&parse(&["--target", "plenary,janus"]).unwrap().target).is_ok());
    }

    #[test]
    fn idle_with_a_target_other_than_plenary_is_refused_before_anything_starts() {
        let all = [TargetKind::Plenary, TargetKind::Janus, TargetKind::UdpRelay, TargetKind::SrtpRelay];
        assert!(check_scenario_targets(Scenario::Idle, &[TargetKind::Plenary]).is_ok());
        for scenario in [Scenario::Fanout, Scenario::Meeting] {
            assert!(check_scenario_targets(scenario, &all).is_ok());
        }
        for t in &all[1..] {
            match check_scenario_targets(Scenario::Idle, &[TargetKind::Plenary, *t]) {
                Err(LoadError::Usage(m)) => {
                    assert!(m.contains("--scenario idle") && m.contains(&format!("not {}", t.name())), "{m}");
                }
                other => panic!("idle with {} accepted: {other:?}", t.name()),
            }
        }
        // Through main: a usage error (exit 2) before any server is started or file written.
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let args = parse(&["--scenario", "idle", "--target", "janus", "--steps", "1", "--out", out.to_str().unwrap()])
            .unwrap();
        assert!(matches!(main(args), Err(LoadError::Usage(_))));
        assert!(!out.exists(), "a refused run wrote {}", out.display());
    }

    #[test]
    fn a_relay_target_without_plenary_relay_beside_plenary_is_refused_before_anything_starts() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let plenary = dir.path().join("plenary");
        std::fs::write(&plenary, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&plenary, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = dir.path().join("out");
        for target in ["plenary,udp-relay", "srtp-relay"] {
            let args = parse(&[
                "--target",
                target,
                "--plenary-bin",
                plenary.to_str().unwrap(),
                "--steps",
                "1",
                "--out",
                out.to_str().unwrap(),
            ])
            .unwrap();
            match main(args) {
                Err(LoadError::Usage(m)) => assert!(m.contains("plenary-relay") && m.contains("cargo build"), "{m}"),
                other => panic!("{target} without plenary-relay accepted: {other:?}"),
            }
            assert!(!out.exists(), "a refused run wrote {}", out.display());
        }
    }

    #[test]
    fn missing_or_unexecutable_binaries_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("not-executable");
        std::fs::write(&plain, "").unwrap();
        for p in [dir.path().join("missing"), plain, PathBuf::from("no-such-program-on-path"), dir.path().into()] {
            match crate::process::check_executable(&p, "; hint") {
                Err(LoadError::Usage(m)) => assert!(m.contains(&p.display().to_string()) && m.ends_with("hint"), "{m}"),
                other => panic!("{} accepted: {other:?}", p.display()),
            }
        }
        assert!(crate::process::check_executable(Path::new("sh"), "").is_ok());
        assert!(crate::process::check_executable(&std::env::current_exe().unwrap(), "").is_ok());
    }
}
