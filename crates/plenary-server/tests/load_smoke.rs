//! Smoke test of `plenary load` (issue #6): one small step against each
//! target, asserting the harness produces sane numbers. The full ramp is a
//! benchmark (BENCHMARKS.md), not a test.

use std::path::PathBuf;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// Runs `plenary load --target <target>` with 3 subscribers for 3 s and
/// returns the single step of its JSON report.
fn one_step(target: &str) -> serde_json::Value {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let out = std::env::temp_dir().join(format!("plenary-load-smoke-{target}-{}-{nanos}", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_plenary"))
        .args(["load", "--target", target, "--steps", "3", "--hold", "3", "--warmup", "1"])
        // CI runs other work on both cores: no pinning here.
        .args(["--server-cpu", "none", "--generator-cpu", "none", "--max-loss", "100", "--max-cpu", "10"])
        .arg("--out")
        .arg(&out)
        .status()
        .expect("running plenary load");
    let report = out.join(format!("{target}-fanout.json"));
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    let logs: Vec<PathBuf> =
        std::fs::read_dir(out.join("work")).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    let server_log: String = logs.iter().map(|p| std::fs::read_to_string(p).unwrap_or_default()).collect();
    assert!(status.success(), "plenary load failed; server log:\n{server_log}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON report");
    let _ = std::fs::remove_dir_all(&out);
    let steps = v["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 1, "{v}");
    steps[0].clone()
}

fn assert_sane(target: &str, s: &serde_json::Value) {
    let f = |k: &str| s[k].as_f64().unwrap_or(f64::NAN);
    assert_eq!(s["subscribers"], 3, "{target}: {s}");
    assert_eq!(s["failed_peers"], 0, "{target}: every peer connects: {s}");
    // 3 subscribers × (1 Mbit/s video ≈ 120 pkt/s + audio 50 pkt/s) ≈ 500 pkt/s.
    assert!(f("packets_per_s") > 250.0, "{target} forwarded too little: {s}");
    assert!(f("bits_per_s") > 1.5e6, "{target}: {s}");
    let loss = f("loss_pct");
    assert!((0.0..=20.0).contains(&loss), "{target}: loss measured and small on a tiny step: {s}");
    // CPU comes from /proc in 10 ms ticks: the relays forward this tiny
    // step in less than one tick, so for them 0 is a measurement too.
    let cpu = f("cpu_s_per_mpkt");
    let relay = target.ends_with("-relay");
    assert!(if relay { cpu >= 0.0 } else { cpu > 0.0 }, "{target}: server CPU measured: {s}");
    assert!(s["latency_samples"].as_u64().unwrap_or(0) > 0, "{target}: latency sampled: {s}");
    assert!(f("latency_p50_ms") > 0.0 && f("latency_p50_ms") < 1000.0, "{target}: {s}");
    assert!(f("join_p50_ms") > 0.0, "{target}: {s}");
}

#[test]
fn load_plenary_one_step() {
    let s = one_step("plenary");
    assert_sane("plenary", &s);
    assert!(s["rss_per_subscriber_kib"].as_f64().is_some(), "{s}");
}

/// Janus VideoRoom (Debian `janus`) forwards: the same step, same bounds.
#[test]
fn load_janus_one_step() {
    let s = one_step("janus");
    assert_sane("janus", &s);
}

/// The relay baselines (`plenary-relay`, built beside `plenary` by
/// `cargo build --workspace`): plain UDP and SRTP AES-128-GCM.
#[test]
fn load_relays_one_step() {
    for target in ["udp-relay", "srtp-relay"] {
        let s = one_step(target);
        assert_sane(target, &s);
    }
}

/// `--scenario idle`: subscribers in a room where nothing is published
/// connect (ICE/DTLS) and the server's RSS is read per step.
#[test]
fn load_plenary_idle_steps() {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let out = std::env::temp_dir().join(format!("plenary-load-smoke-idle-{}-{nanos}", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_plenary"))
        .args(["load", "--scenario", "idle", "--steps", "3,6", "--hold", "1", "--warmup", "1"])
        .args(["--server-cpu", "none", "--generator-cpu", "none"])
        .arg("--out")
        .arg(&out)
        .status()
        .expect("running plenary load");
    let text = std::fs::read_to_string(out.join("plenary-idle.json")).unwrap_or_default();
    let table = std::fs::read_to_string(out.join("idle.md")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&out);
    assert!(status.success(), "plenary load --scenario idle failed");
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON report");
    let steps = v["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 2, "{v}");
    for (s, n) in steps.iter().zip([3, 6]) {
        assert_eq!(s["subscribers"], n, "every idle subscriber connects: {s}");
        assert_eq!(s["failed_peers"], 0, "{s}");
        assert!(s["rss_mib"].as_f64().is_some_and(|m| m > 1.0), "server RSS read: {s}");
        assert!(s["rss_slope_kib"].as_f64().is_some_and(f64::is_finite), "{s}");
        assert!(s["connect_p50_ms"].as_f64().is_some_and(|t| t > 0.0), "connect time measured: {s}");
    }
    assert!(table.contains("| plenary | 6 |"), "{table}");
}

/// The children of process `pid` (from every `/proc/<n>/stat`'s ppid).
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|n| {
            let stat = std::fs::read_to_string(format!("/proc/{n}/stat")).unwrap_or_default();
            // Field 4 (ppid), counted after the command name's ')'.
            stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().nth(1)?.parse::<u32>().ok()) == Some(pid)
        })
        .collect()
}

/// Gone, or a zombie waiting for its new parent to reap it.
fn gone(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next()).is_none_or(|s| s == "Z" || s == "X")
}

/// Starts `plenary load <args> --warmup 0`, unpinned, into a fresh output
/// directory; returns it, its server's pid once started, and the directory.
#[allow(clippy::zombie_processes, reason = "returned to the caller, which waits for it")]
fn start_harness(tag: &str, args: &[&str]) -> (std::process::Child, u32, PathBuf) {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let out = std::env::temp_dir().join(format!("plenary-load-smoke-{tag}-{}-{nanos}", std::process::id()));
    let harness = Command::new(env!("CARGO_BIN_EXE_plenary"))
        .arg("load")
        .args(args)
        .args(["--warmup", "0", "--server-cpu", "none", "--generator-cpu", "none", "--out"])
        .arg(&out)
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("running plenary load");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(&server) = children(harness.id()).first() {
            return (harness, server, out);
        }
        assert!(std::time::Instant::now() < deadline, "the harness started no server");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A harness killed outright (SIGKILL, the OOM killer, `timeout -s KILL`)
/// takes its server with it: no orphan keeps running on the benchmark core.
#[test]
fn a_killed_harness_leaves_no_server_behind() {
    let (mut harness, server, out) = start_harness("kill", &["--target", "udp-relay", "--steps", "1", "--hold", "600"]);
    harness.kill().expect("SIGKILL");
    harness.wait().expect("reaped");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !gone(server) {
        assert!(std::time::Instant::now() < deadline, "server {server} outlived its harness");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// A server that dies during a run (killed here) fails the step it dies in
/// and ends the ramp with that reason; no RSS or CPU figure is made up from
/// a dead process (a zombie reads as 0 MiB, which gave -7022 KiB per
/// subscriber).
#[test]
fn a_server_dying_mid_run_fails_its_step() {
    for scenario in ["fanout", "idle"] {
        let (mut harness, server, out) =
            start_harness("die", &["--scenario", scenario, "--steps", "2,4", "--hold", "3"]);
        // During the first step (it lasts at least --hold).
        std::thread::sleep(std::time::Duration::from_secs(2));
        let killed = Command::new("kill").args(["-9", &server.to_string()]).status().expect("kill");
        assert!(killed.success());
        let status = harness.wait().expect("harness ends");
        let text = std::fs::read_to_string(out.join(format!("plenary-{scenario}.json"))).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&out);
        assert!(status.success(), "{scenario}: the run ends normally, with its report");
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON report");
        let stopped = v["stopped"].as_str().unwrap_or_default();
        assert!(stopped.contains("exited"), "{scenario}: {v}");
        let last = v["steps"].as_array().and_then(|s| s.last()).expect("the failed step is reported").clone();
        assert!(last["error"].as_str().is_some_and(|e| e.contains("exited")), "{scenario}: {last}");
        assert!(last["rss_mib"].is_null() && last["server_cpu"].is_null(), "{scenario}: {last}");
    }
}
