//! Seeded schedules and scenarios. A failure prints its seed; replay one with
//! `SIM_SEED=<seed> SIM_TRACE=1 cargo test --lib box_::raft::sim::tests::<name> -- --nocapture`.
//! More schedules: `SIM_SCHEDULES=<n>` (the soak test runs 20,000 by default, `--ignored`).

use super::*;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

/// Runs `count` schedules from `base` (or just `SIM_SEED`), panics on the first failure
/// with the seed to replay; prints totals.
fn sweep(name: &str, base: u64, count: u64, opts: Options) -> Vec<Report> {
    let trace = std::env::var("SIM_TRACE").is_ok();
    let opts = Options { trace, ..opts };
    let seeds: Vec<u64> = match env_u64("SIM_SEED") {
        Some(s) => vec![s],
        None => (base..base + env_u64("SIM_SCHEDULES").unwrap_or(count)).collect(),
    };
    let mut reports = Vec::with_capacity(seeds.len());
    for &seed in &seeds {
        match run(seed, &opts) {
            Ok(r) => reports.push(r),
            Err(e) => panic!("{name} failed: {e}\nreplay: SIM_SEED={seed} SIM_TRACE=1 cargo test --lib box_::raft::sim::tests::{name} -- --nocapture"),
        }
    }
    let sum = |f: fn(&Report) -> u64| reports.iter().map(f).sum::<u64>();
    let worst_liveness = reports.iter().map(|r| r.liveness_time).max().unwrap_or(0);
    println!(
        "{name}: {} schedules, {} steps; {} writes, {} committed, {} rolled back; {} crashes, {} partitions, \
         {} leaders; {} divergences (2.6.3: discarded here, confirmed by a PROMOTE there); liveness worst {} ms",
        reports.len(),
        sum(|r| r.steps),
        sum(|r| r.writes),
        sum(|r| r.committed),
        sum(|r| r.rolled_back),
        sum(|r| r.crashes),
        sum(|r| r.partitions),
        sum(|r| r.leaders),
        sum(|r| r.divergences),
        worst_liveness / 1000,
    );
    reports
}

#[test]
fn schedules_2_6_3() {
    sweep("schedules_2_6_3", 1_000_000, 300, Options::default());
}

#[test]
fn schedules_pre_vote() {
    let opts = Options {
        pre_vote: true,
        ..Options::default()
    };
    sweep("schedules_pre_vote", 2_000_000, 300, opts);
}

#[test]
fn schedules_fencing() {
    let opts = Options {
        fencing: true,
        ..Options::default()
    };
    sweep("schedules_fencing", 3_000_000, 300, opts);
}

#[test]
fn schedules_pre_vote_and_fencing() {
    let opts = Options {
        pre_vote: true,
        fencing: true,
        ..Options::default()
    };
    sweep("schedules_pre_vote_and_fencing", 4_000_000, 300, opts);
}
