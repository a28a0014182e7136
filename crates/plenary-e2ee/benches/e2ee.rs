//! Criterion benchmarks of plenary-e2ee; numbers and commands in BENCHMARKS.md.
//!
//! - `sframe/{encrypt,decrypt}/{160,1200,30000}`: SFrame (AES-128-GCM) per
//!   frame through `MediaCrypto`, throughput in bytes of frame.
//! - `mls_commit/n{N}/add{K}`: the committer of an N-member group builds one
//!   commit adding K joiners (join proofs and KeyPackages verified, path
//!   update, one Welcome).
//! - `mls_process/n{N}/add{K}`: a member processes and merges that commit.
//! - `mls_welcome/n{N}`: a joiner processes the Welcome of a 1-member add.
//!
//! Commit and Welcome sizes are printed to stderr as `bytes ...` lines.
//! `PLENARY_BENCH_MAX_GROUP` (default 1000) caps the group sizes (10, 100,
//! 1000, 5000).

#![allow(missing_docs)] // criterion_group! generates an undocumented fn

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use plenary_e2ee::group::Participant;
use plenary_e2ee::media::{Codec, EpochKeys, MediaCrypto};
use plenary_e2ee::secret::MeetingSecret;

const ROOM: &str = "bench-room";

fn secret() -> MeetingSecret {
    MeetingSecret::from_bytes(&[5; 16]).expect("secret")
}

fn keys(own_leaf: u32) -> EpochKeys {
    EpochKeys { epoch: 7, base_key: [3; 16], own_leaf, members: (0..16).collect() }
}

fn sframe(c: &mut Criterion) {
    let mut group = c.benchmark_group("sframe");
    group.measurement_time(Duration::from_secs(3));
    for size in [160usize, 1200, 30000] {
        let frame = vec![0x42u8; size];
        let codec = if size == 160 { Codec::Opus } else { Codec::Vp8 };
        group.throughput(Throughput::Bytes(size as u64));
        let mut tx = MediaCrypto::default();
        tx.set_epoch_keys(keys(3), Duration::ZERO);
        group.bench_with_input(BenchmarkId::new("encrypt", size), &frame, |b, f| {
            b.iter(|| tx.encrypt(1, codec, black_box(f)).expect("encrypt"))
        });
        let mut rx = MediaCrypto::default();
        rx.set_epoch_keys(keys(5), Duration::ZERO);
        group.bench_with_input(BenchmarkId::new("decrypt", size), &frame, |b, f| {
            b.iter_batched(
                || tx.encrypt(1, codec, f).expect("encrypt"),
                |sealed| rx.decrypt(codec, &sealed, Duration::ZERO).expect("decrypt"),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// A committer and one observing member in a group of `n`, formed by one
/// batched commit (only these two hold state; the others are KeyPackages).
fn setup_group(n: usize) -> (Participant, Participant) {
    let mut committer = Participant::new(ROOM, secret()).expect("participant");
    committer.create().expect("create");
    let mut observer = Participant::new(ROOM, secret()).expect("participant");
    let mut requests = vec![observer.join_request().expect("join request")];
    for _ in 2..n {
        let mut p = Participant::new(ROOM, secret()).expect("participant");
        requests.push(p.join_request().expect("join request"));
    }
    let refs: Vec<&[u8]> = requests.iter().map(Vec::as_slice).collect();
    let out = committer.commit(&refs, &[]).expect("commit");
    committer.commit_accepted().expect("accept");
    observer.process(&out.welcome.expect("welcome")).expect("welcome");
    assert_eq!(observer.member_count().expect("count"), n);
    (committer, observer)
}

fn join_requests(k: usize) -> (Vec<Participant>, Vec<Vec<u8>>) {
    let mut joiners = Vec::with_capacity(k);
    let mut requests = Vec::with_capacity(k);
    for _ in 0..k {
        let mut p = Participant::new(ROOM, secret()).expect("participant");
        requests.push(p.join_request().expect("join request"));
        joiners.push(p);
    }
    (joiners, requests)
}

/// Removes the leaves added by the last commit, so the group is back to its size.
fn undo_adds(committer: &mut Participant, observer: &mut Participant, added: &[u32]) {
    let out = committer.commit(&[], added).expect("remove");
    committer.commit_accepted().expect("accept");
    observer.process(&out.commit).expect("process remove");
}

fn mls(c: &mut Criterion) {
    let max: usize = std::env::var("PLENARY_BENCH_MAX_GROUP").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let mut commit_group = c.benchmark_group("mls_commit");
    commit_group.sample_size(10).warm_up_time(Duration::from_millis(200)).measurement_time(Duration::from_secs(2));
    let sizes: Vec<usize> = [10usize, 100, 1000, 5000].into_iter().filter(|n| *n <= max).collect();
    let mut groups = Vec::new();
    for &n in &sizes {
        let t = Instant::now();
        let (mut committer, observer) = setup_group(n);
        eprintln!("setup n={n}: {:?}", t.elapsed());
        for k in [1usize, 10, 100] {
            // Sizes, once.
            let (_j, reqs) = join_requests(k);
            let refs: Vec<&[u8]> = reqs.iter().map(Vec::as_slice).collect();
            let out = committer.commit(&refs, &[]).expect("commit");
            committer.commit_rejected().expect("reject");
            eprintln!(
                "bytes n={n} add={k}: commit {} welcome {}",
                out.commit.len(),
                out.welcome.as_ref().map_or(0, Vec::len)
            );
            commit_group.bench_function(BenchmarkId::new(format!("n{n}"), format!("add{k}")), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let (_joiners, reqs) = join_requests(k);
                        let refs: Vec<&[u8]> = reqs.iter().map(Vec::as_slice).collect();
                        let t = Instant::now();
                        let out = committer.commit(&refs, &[]).expect("commit");
                        total += t.elapsed();
                        black_box(out);
                        committer.commit_rejected().expect("reject");
                    }
                    total
                })
            });
        }
        // Every commit made consumes a generation of the committer's handshake
        // ratchet, rejected or not: after thousands of rejected commits in one
        // epoch a receiver would refuse the next one as too far ahead
        // (max_forward_distance). Measure processing on a fresh group.
        drop((committer, observer));
        let (committer, observer) = setup_group(n);
        groups.push((n, committer, observer));
    }
    commit_group.finish();

    let mut process_group = c.benchmark_group("mls_process");
    process_group.sample_size(10).warm_up_time(Duration::from_millis(200)).measurement_time(Duration::from_secs(2));
    for (n, committer, observer) in groups.iter_mut() {
        for k in [1usize, 10, 100] {
            process_group.bench_function(BenchmarkId::new(format!("n{n}"), format!("add{k}")), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let (_joiners, reqs) = join_requests(k);
                        let refs: Vec<&[u8]> = reqs.iter().map(Vec::as_slice).collect();
                        let before: Vec<u32> = committer.roster().expect("roster").iter().map(|r| r.leaf).collect();
                        let out = committer.commit(&refs, &[]).expect("commit");
                        committer.commit_accepted().expect("accept");
                        let t = Instant::now();
                        let ev = observer.process(&out.commit).expect("process");
                        total += t.elapsed();
                        black_box(ev);
                        let added: Vec<u32> = committer
                            .roster()
                            .expect("roster")
                            .iter()
                            .map(|r| r.leaf)
                            .filter(|l| !before.contains(l))
                            .collect();
                        undo_adds(committer, observer, &added);
                    }
                    total
                })
            });
        }
    }
    process_group.finish();

    let mut welcome_group = c.benchmark_group("mls_welcome");
    welcome_group.sample_size(10).warm_up_time(Duration::from_millis(200)).measurement_time(Duration::from_secs(2));
    for (n, committer, observer) in groups.iter_mut() {
        welcome_group.bench_function(BenchmarkId::from_parameter(format!("n{n}")), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (mut joiners, reqs) = join_requests(1);
                    let out = committer.commit(&[&reqs[0]], &[]).expect("commit");
                    committer.commit_accepted().expect("accept");
                    observer.process(&out.commit).expect("process");
                    let welcome = out.welcome.expect("welcome");
                    let t = Instant::now();
                    let ev = joiners[0].process(&welcome).expect("join");
                    total += t.elapsed();
                    black_box(ev);
                    let leaf = joiners[0].own_leaf().expect("leaf");
                    undo_adds(committer, observer, &[leaf]);
                }
                total
            })
        });
    }
    welcome_group.finish();
}

criterion_group!(benches, sframe, mls);
criterion_main!(benches);
