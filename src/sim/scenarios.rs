//! Runs that a test asserts on and `examples/swim_sim_bench.rs` reports: one definition, so
//! the figures in the README and the bounds in the tests measure the same thing.

use super::{Cluster, ClusterConfig};
use crate::swim::core::Lifeguard;
use crate::swim::proto::Status;

/// How one killed member was detected.
#[derive(Debug, Clone, Copy)]
pub struct Detection {
    /// Seconds from the kill until every other member sees it dead; None if not within 10 s.
    pub seconds: Option<f64>,
    /// Packets sent from the kill to the last verdict.
    pub packets: u64,
    /// Live members declared dead meanwhile.
    pub false_deaths: usize,
}

/// How a detection run is set up: the members' news pushing, and whether the killed
/// member's host refuses the pings (a crashed process) or drops them (a host gone too).
#[derive(Debug, Clone, Copy)]
pub struct DetectionSetup {
    pub push_news: bool,
    pub refusals: bool,
}

/// `n` members with scripts/bench/swim.lua's timings (heartbeat and ack timeout 0.1 s) on a
/// LAN-like 30–100 µs network; after 3 s of steady state the last one is killed.
pub fn detect_killed_member(n: usize, seed: u64, setup: DetectionSetup) -> Detection {
    let cfg = ClusterConfig {
        heartbeat_rate: 100_000,
        ack_timeout: 100_000,
        delay: (30, 100),
        push_news: setup.push_news,
        refusals: setup.refusals,
        ..ClusterConfig::default()
    };
    let mut c = Cluster::with_config(n, seed, cfg);
    c.join_full_converged();
    // The kill lands at a different phase of the round steps for each seed.
    c.run_rounds(30.0 + (seed % 7) as f64 * 0.13);
    let victim = n - 1;
    c.kill(victim);
    let sent_before = c.net.sent;
    let all_dead = |c: &Cluster| (0..victim).all(|i| c.status(i, victim) == Some(Status::Dead));
    // 1 ms steps: `run_until`'s tenth of a heartbeat would round every time up to 10 ms.
    let mut ms = 0;
    while !all_dead(&c) && ms < 10_000 {
        c.run_for(1_000);
        ms += 1;
    }
    Detection {
        seconds: all_dead(&c).then_some(ms as f64 / 1000.0),
        packets: c.net.sent - sent_before,
        false_deaths: c.false_deaths.len(),
    }
}

/// What a lossy run saw.
#[derive(Debug, Clone, Copy)]
pub struct LossyRun {
    /// Live members declared dead.
    pub false_deaths: usize,
    /// Packets sent while the loss was on.
    pub packets: u64,
}

/// `rounds` rounds of a full cluster of `n` (the demo's timings) at `loss_pct` packet loss.
pub fn run_at_loss(n: usize, rounds: f64, loss_pct: f64, lifeguard: Lifeguard, push_news: bool, seed: u64) -> LossyRun {
    let cfg = ClusterConfig {
        lifeguard,
        push_news,
        ..ClusterConfig::default()
    };
    let mut c = Cluster::with_config(n, seed, cfg);
    c.join_full();
    c.run_rounds(2.0);
    c.set_loss(loss_pct);
    let sent_before = c.net.sent;
    c.run_rounds(rounds);
    LossyRun {
        false_deaths: c.false_deaths.len(),
        packets: c.net.sent - sent_before,
    }
}
