//! Simulator benchmark: how many protocol rounds SWIM needs, and how fast the simulator is.
//!
//!     bash scripts/bench/swim-sim.sh [--events N,N,..] [--join N,N,..] [--large N] [--large-rounds R]
//!                                    [--detect N,N,..] [--false-deaths SEEDS]
//!     (defaults: --events 125,250,500,1000,2000,4000,10000 --join 250,500,1000 --large 10000
//!      --large-rounds 10 --detect 100)
//!
//! All counts are in rounds (heartbeat periods) with the demo's settings: 1 s heartbeat,
//! 0.1 s ack timeout, 0.1–1 ms delays, no loss.
//!
//! * **One event**: the quantity the SWIM paper shows to be O(log N), the time for one
//!   membership update to reach every member by piggybacking. Every node knows every other
//!   with its real incarnation ([`Cluster::join_full_converged`]); once the queues are empty,
//!   one node at a time changes its payload (a new incarnation) and the simulator runs until
//!   every node holds it. Ten events per N, each from a random node. Speed is simulated
//!   member-rounds per wall-clock second in this steady cluster (over at least 10 rounds
//!   and 500,000 member-rounds), and packets per second. A full mesh holds N² member
//!   entries, about 72 bytes each with the index and the queues: 7.2 GB of peak RSS at
//!   N = 10,000, which the last column reports (the process's high-water mark so far, so
//!   with N ascending it is that N's).
//! * **Join, first rounds**: joining needs about N² packets (every pair meets directly,
//!   spec §2.5), most of them in one round: 61 million packets and 6 minutes at round 11
//!   for N = 10,000. So N = 10,000 runs the first rounds only, before that storm: how far
//!   knowledge gets and how fast the simulator steps.
//! * **Join**: N nodes that each know only node 0, until all know all. Not one event but N²
//!   direct contacts, so it grows faster than log N; the table states c = rounds / log2 N.
//! * **Detection**: scripts/bench/swim.lua's setting in the simulator (heartbeat and ack
//!   timeout 0.1 s, a 30–100 µs network, 3 s of steady state), one member killed, seconds
//!   until every other sees it dead; 20 seeds, with news pushed (the default, `swim::news`)
//!   and without.
//! * **False deaths** (only with `--false-deaths SEEDS`; about 2 s a seed): 100 members at
//!   20 % loss for 600 rounds, with and without pushed news and Lifeguard.
//!
//! Sizes whose full mesh is estimated above `SWIM_SIM_MAX_GB` (default 4) are listed as
//! skipped. `SIM_SEED` picks the seed (default 1): the rounds replay exactly.

use std::time::Instant;

use node::sim::{node_uuid, scenarios, seed_from_env, Cluster};
use node::swim::core::Lifeguard;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

/// Bytes per member entry of a full mesh, measured (the 56-byte entry, its index slot, its
/// places in the round and dissemination queues, allocator overhead): 7.23 GB of peak RSS
/// for N = 10,000.
const BYTES_PER_ENTRY: f64 = 72.0;
/// Events timed per N.
const EVENTS: usize = 10;
/// Member-rounds the steady-state speed is measured over (and at least 10 rounds): long
/// enough at N = 125 that the timer's resolution and one scheduler hiccup do not matter.
const STEADY_MEMBER_ROUNDS: f64 = 500_000.0;

/// The numbers after `flag` (`default` without it); one that is not a number is left out, so
/// `--events none` skips that table. A number below `min` is an error: a cluster of fewer
/// than two members has nothing to spread, join or detect.
fn parse_sizes(args: &[String], flag: &str, default: &[usize], min: usize) -> Result<Vec<usize>, String> {
    let list: Vec<usize> = match args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)) {
        Some(list) => list.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        None => default.to_vec(),
    };
    match list.iter().find(|&&n| n < min) {
        Some(bad) => Err(format!("{flag} takes numbers of at least {min}, got {bad}")),
        None => Ok(list),
    }
}

/// [`parse_sizes`], or the run stops with its message.
fn sizes(args: &[String], flag: &str, default: &[usize], min: usize) -> Vec<usize> {
    parse_sizes(args, flag, default, min).unwrap_or_else(|e| {
        eprintln!("swim_sim_bench: {e}");
        std::process::exit(2);
    })
}

fn mesh_gb(n: usize) -> f64 {
    (n as f64) * (n as f64) * BYTES_PER_ENTRY / 1e9
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seed = seed_from_env(1);
    let max_gb: f64 = std::env::var("SWIM_SIM_MAX_GB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8.0);
    let event_sizes = sizes(&args, "--events", &[125, 250, 500, 1000, 2000, 4000, 10000], 2);
    let join_sizes = sizes(&args, "--join", &[250, 500, 1000], 2);
    let large_sizes = sizes(&args, "--large", &[10000], 2);
    let large_rounds = sizes(&args, "--large-rounds", &[10], 1).first().copied().unwrap_or(10);
    let detect_sizes = sizes(&args, "--detect", &[100], 2);

    println!("One event in a fully joined cluster (seed {seed}; {EVENTS} events per N):");
    println!();
    println!(
        "| N | log2 N | TTD | rounds to reach all: mean | max | mean / log2 N | member-rounds/s | packets/s | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for &n in &event_sizes {
        if mesh_gb(n) > max_gb {
            println!(
                "| {n} | {:.1} | | skipped: a full mesh needs about {:.0} GB (SWIM_SIM_MAX_GB = {max_gb}) | | | | | |",
                (n as f64).log2(),
                mesh_gb(n)
            );
            continue;
        }
        one_event_row(n, seed);
    }
    println!();
    println!(
        "Join through one seed, first rounds only (seed {seed}; the probe storms of the later rounds take hours):"
    );
    println!();
    println!("| N | round | members known: min | mean | packets this round | wall this round | member-rounds/s |");
    println!("|---|---|---|---|---|---|---|");
    for &n in &large_sizes {
        join_start_rows(n, large_rounds, seed);
    }
    println!();
    println!(
        "Detection of a killed member, bench timings (seeds {seed}..{}):",
        seed + DETECT_SEEDS - 1
    );
    println!();
    println!("| N | news | the dead port | mean | median | max | packets from the kill to the last verdict |");
    println!("|---|---|---|---|---|---|---|");
    for &n in &detect_sizes {
        for (push_news, refusals) in [(true, true), (true, false), (false, false)] {
            detect_row(n, seed, scenarios::DetectionSetup { push_news, refusals });
        }
    }
    println!();
    let false_death_seeds = sizes(&args, "--false-deaths", &[0], 0).first().copied().unwrap_or(0) as u64;
    if false_death_seeds > 0 {
        println!("False deaths, 100 members, 600 rounds at 20 % loss, seeds 1..={false_death_seeds}:");
        println!();
        println!("| news | Lifeguard | false deaths in all | runs with none | most in a run | packets a run |");
        println!("|---|---|---|---|---|---|");
        false_death_rows(false_death_seeds);
        println!();
    }
    println!("Join through one seed (seed {seed}):");
    println!();
    println!("| N | log2 N | rounds until all know all | c = rounds / log2 N | packets | wall |");
    println!("|---|---|---|---|---|---|");
    for &n in &join_sizes {
        join_row(n, seed);
    }
}

fn one_event_row(n: usize, seed: u64) {
    let log2n = (n as f64).log2();
    let mut c = Cluster::new(n, seed);
    c.join_full_converged();
    let hb = c.cfg.heartbeat_rate;
    let ttd = (n as f64).log2().ceil() as u64 + 1;
    // The join's own events leave the queues within one TTD.
    let quiet = |c: &Cluster| (0..c.len()).all(|i| c.swim(i).queued_events() == 0);
    if c.run_until(quiet, 4 * ttd * hb).is_none() {
        println!(
            "| {n} | {log2n:.1} | {ttd} | not quiet after {} rounds | | | | | |",
            4 * ttd
        );
        return;
    }
    let mut rng = SmallRng::seed_from_u64(seed ^ n as u64);
    let mut took = Vec::new();
    for e in 0..EVENTS {
        let k = rng.random_range(0..n);
        let want = c.with(k, |s, now| {
            s.set_payload(&[0xa1, b'a' + e as u8], now).expect("small payload");
            s.self_member().incarnation()
        });
        let subject = node_uuid(k);
        let everywhere =
            |c: &Cluster| (0..c.len()).all(|i| c.swim(i).member(&subject).is_some_and(|m| m.incarnation() >= want));
        match c.run_until(everywhere, 40 * ttd * hb) {
            Some(t) => took.push(t as f64 / hb as f64),
            None => {
                println!(
                    "| {n} | {log2n:.1} | {ttd} | event {e} did not reach everyone in {} rounds | | | | | |",
                    40 * ttd
                );
                return;
            }
        }
        // The next event starts once this one has left every queue.
        c.run_rounds(ttd as f64);
    }
    let steady_rounds = (STEADY_MEMBER_ROUNDS / n as f64).max(10.0).round();
    let (sent0, wall) = (c.net.sent, Instant::now());
    c.run_rounds(steady_rounds);
    let w = wall.elapsed().as_secs_f64();
    let mean = took.iter().sum::<f64>() / took.len() as f64;
    let max = took.iter().cloned().fold(0.0, f64::max);
    println!(
        "| {n} | {log2n:.1} | {ttd} | {mean:.1} | {max:.1} | {:.2} | {:.0} | {:.0} | {} |",
        mean / log2n,
        n as f64 * steady_rounds / w,
        (c.net.sent - sent0) as f64 / w,
        peak_rss()
    );
}

/// The process's peak resident set so far (`VmHWM`), as "7.23 GB"; "?" where /proc has
/// no such line.
fn peak_rss() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    match kb {
        Some(kb) if kb >= 1e6 => format!("{:.2} GB", kb / 1e6),
        Some(kb) => format!("{:.0} MB", kb / 1e3),
        None => "?".to_string(),
    }
}

/// Seeds the detection rows average over.
const DETECT_SEEDS: u64 = 20;

fn detect_row(n: usize, seed: u64, setup: scenarios::DetectionSetup) {
    let mut took = Vec::new();
    let mut packets = 0;
    for s in seed..seed + DETECT_SEEDS {
        let d = scenarios::detect_killed_member(n, s, setup);
        // An undetected kill counts as the 10 s limit.
        took.push(d.seconds.unwrap_or(10.0));
        packets += d.packets;
    }
    took.sort_by(f64::total_cmp);
    let mean = took.iter().sum::<f64>() / took.len() as f64;
    println!(
        "| {n} | {} | {} | {mean:.3} s | {:.3} s | {:.3} s | {} |",
        if setup.push_news { "pushed" } else { "piggybacked" },
        if setup.refusals { "refuses" } else { "is silent" },
        took[took.len() / 2],
        took[took.len() - 1],
        packets / DETECT_SEEDS
    );
}

/// False deaths of 100 members over 600 rounds at 20 % loss, seeds 1..=`seeds`: the
/// README's Lifeguard and news-pushing figures.
fn false_death_rows(seeds: u64) {
    for push_news in [true, false] {
        for lifeguard in [Lifeguard::default(), Lifeguard::ON] {
            let runs: Vec<_> = (1..=seeds)
                .map(|seed| scenarios::run_at_loss(100, 600.0, 20.0, lifeguard, push_news, seed))
                .collect();
            let deaths = |r: &scenarios::LossyRun| r.false_deaths;
            println!(
                "| {} | {} | {} | {} | {} | {} |",
                if push_news { "pushed" } else { "piggybacked" },
                if lifeguard.dynamic_suspicion { "on" } else { "off" },
                runs.iter().map(deaths).sum::<usize>(),
                runs.iter().filter(|r| r.false_deaths == 0).count(),
                runs.iter().map(deaths).max().unwrap_or(0),
                runs.iter().map(|r| r.packets).sum::<u64>() / seeds.max(1)
            );
        }
    }
}

fn join_row(n: usize, seed: u64) {
    let log2n = (n as f64).log2();
    let wall = Instant::now();
    let mut c = Cluster::new(n, seed);
    c.join_all_through(0);
    let hb = c.cfg.heartbeat_rate;
    let limit = (40.0 * log2n) as u64;
    match c.run_until(Cluster::all_alive_known, limit * hb) {
        Some(t) => {
            let rounds = t as f64 / hb as f64;
            println!(
                "| {n} | {log2n:.1} | {rounds:.1} | {:.2} | {} | {:.1} s |",
                rounds / log2n,
                c.net.sent,
                wall.elapsed().as_secs_f64()
            );
        }
        None => println!("| {n} | {log2n:.1} | not within {limit} | | {} | |", c.net.sent),
    }
}

/// The first `rounds` rounds of a join through node 0, round by round: how far knowledge
/// gets and what the simulator's speed is while the probe storms run.
fn join_start_rows(n: usize, rounds: usize, seed: u64) {
    let mut c = Cluster::new(n, seed);
    c.join_all_through(0);
    for r in 1..=rounds {
        let (sent0, wall) = (c.net.sent, Instant::now());
        c.run_rounds(1.0);
        let w = wall.elapsed().as_secs_f64();
        let sizes: Vec<usize> = (0..n).map(|i| c.swim(i).size()).collect();
        let min = sizes.iter().min().copied().unwrap_or(0);
        let mean = sizes.iter().sum::<usize>() as f64 / n as f64;
        println!(
            "| {n} | {r} | {min} | {mean:.0} | {} | {w:.2} s | {:.0} |",
            c.net.sent - sent0,
            n as f64 / w
        );
    }
}

#[cfg(test)]
mod tests {
    use super::parse_sizes;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn a_cluster_of_fewer_than_two_is_refused_with_the_flag_named() {
        // `--events 0` used to panic deep in the event table.
        assert_eq!(
            parse_sizes(&args("bench --events 0"), "--events", &[125], 2),
            Err("--events takes numbers of at least 2, got 0".to_string())
        );
        assert!(parse_sizes(&args("bench --detect 100,1"), "--detect", &[100], 2).is_err());
        assert_eq!(
            parse_sizes(&args("bench --events none"), "--events", &[125], 2),
            Ok(vec![])
        );
        assert_eq!(parse_sizes(&args("bench"), "--events", &[125], 2), Ok(vec![125]));
        assert_eq!(
            parse_sizes(&args("bench --join 2,50"), "--join", &[250], 2),
            Ok(vec![2, 50])
        );
    }
}
