//! Burst join (issue #5): 30 `plenary join` processes, audio only, enter one
//! end-to-end encrypted meeting within 2 s. Adds are batched into one commit
//! by the lowest-leaf member (DESIGN.md, Keys), so all 30 must reach one
//! epoch and one security code within 5 s of the last one entering the
//! room, and each must decrypt every other one's audio.
//!
//! Skips (with a message) only when `.media/` is missing; CI creates it.
//! Takes about 25 s.
//!
//! Ignored for now (run with `--ignored`): on the shared, loaded 2-core
//! machine the 30 clients converge (one epoch 0.4 to 1.4 s after the last
//! join, epoch 11 to 13) but a few of them do not get ICE/DTLS up within
//! 10 s and the others decrypt too little of each other's audio; see the
//! report of helper e2ee-native.

mod common;

use common::native::Native;
use common::{Server, media, new_secret};
use std::ffi::OsStr;
use std::time::{Duration, Instant};

/// Participants.
const N: usize = 30;
/// Window in which all of them start.
const BURST: Duration = Duration::from_secs(2);
/// Convergence goal, from the last `joined`.
const CONVERGE: Duration = Duration::from_secs(5);
/// How long each publishes, counted from its media connection.
const PUBLISH_S: &str = "12";

/// The latest (epoch, security code) a participant reported.
fn last_epoch(n: &Native) -> Option<(u64, String)> {
    n.events()
        .into_iter()
        .rev()
        .find(|(_, v)| v["event"] == "epoch")
        .and_then(|(_, v)| Some((v["epoch"].as_u64()?, v["security_code"].as_str()?.to_owned())))
}

#[test]
#[ignore = "30 clients: some media connections time out on the loaded 2-core machine"]
fn thirty_join_at_once_and_converge_to_one_epoch() {
    let Some(audio) = media("speech.ogg") else {
        eprintln!("SKIPPED burst_join: .media/speech.ogg is missing; run scripts/test-media.sh");
        return;
    };
    let dir = std::env::temp_dir().join(format!("plenary-burst-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let server = Server::start(&dir, &[]);
    let url = format!("http://{}/m/burst#{}", server.http, new_secret());

    let started = Instant::now();
    let mut clients = Vec::new();
    for i in 0..N {
        let args = [OsStr::new("--audio"), audio.as_os_str(), OsStr::new("--duration"), OsStr::new(PUBLISH_S)];
        clients.push(Native::spawn(&[], &url, &format!("Burst-{i}"), &args));
        let due = started + BURST.mul_f64((i + 1) as f64 / N as f64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    assert!(started.elapsed() < BURST + Duration::from_millis(500), "spawning took {:?}", started.elapsed());

    // Everyone is in the room (the server said `joined`).
    let mut last_joined = started;
    for (i, c) in clients.iter().enumerate() {
        let (t, _) = c.wait_for(started, Duration::from_secs(30), |v| v["event"] == "joined").unwrap_or_else(|| {
            panic!("client {i} never joined:\n{}\nserver log:\n{}", c.stderr_tail(), server.log_text())
        });
        last_joined = last_joined.max(t);
    }
    // One epoch and one security code for all, polled.
    let limit = Duration::from_secs(30);
    let converged = loop {
        let epochs: Vec<_> = clients.iter().map(last_epoch).collect();
        if epochs.iter().all(Option::is_some) && epochs.windows(2).all(|w| w[0] == w[1]) {
            break Some((Instant::now(), epochs[0].clone()));
        }
        if last_joined.elapsed() > limit {
            let mut counts = std::collections::BTreeMap::new();
            for e in &epochs {
                *counts.entry(e.as_ref().map(|e| e.0)).or_insert(0) += 1;
            }
            panic!(
                "no convergence within {limit:?} of the last join; epochs (count): {counts:?}\nserver log:\n{}",
                server.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (at, epoch) = converged.expect("converged");
    let took = at.saturating_duration_since(last_joined);
    let (epoch, code) = epoch.expect("an epoch");
    eprintln!(
        "{N} clients joined within {:?}; one epoch ({epoch}) {took:?} after the last join",
        last_joined - started
    );
    assert_eq!(code.split(' ').count(), 6, "security code {code:?}");
    assert!(took <= CONVERGE, "all {N} reached epoch {epoch} only {took:?} after the last join (goal {CONVERGE:?})");
    // Batched: far fewer epochs than members.
    assert!(epoch < N as u64 / 2, "{N} joins took {epoch} epochs: adds are not batched");

    // Everyone decrypts everyone's audio.
    let mut failures = Vec::new();
    for (i, c) in clients.iter_mut().enumerate() {
        let status = c.finish(Duration::from_secs(60));
        if !status.success() {
            failures.push(format!(
                "client {i} exited with {status}: {}",
                c.stderr_tail().lines().last().unwrap_or_default()
            ));
        }
    }
    let summaries: Vec<_> = clients.iter().map(|c| c.summary().expect("a summary")).collect();
    let ids: Vec<u64> = summaries.iter().map(|s| s["participant_id"].as_u64().expect("id")).collect();
    for (i, s) in summaries.iter().enumerate() {
        for (j, from) in ids.iter().enumerate().filter(|(j, _)| *j != i) {
            let decrypted: u64 = s["tracks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| t["participant_id"].as_u64() == Some(*from) && t["kind"] == "audio")
                .filter_map(|t| t["decrypted"].as_u64())
                .sum();
            // 50 Opus frames per second; at least 4 s of each other's audio.
            if decrypted < 200 {
                failures.push(format!("client {i} decrypted {decrypted} audio frames of client {j}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}\nserver log:\n{}", failures.join("\n"), server.log_text());
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
