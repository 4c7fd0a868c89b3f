//! Simulator benchmark: rounds to full dissemination and simulation speed.
//!
//!     cargo run --release --example swim_sim_bench [N ...]      (default: 1000 10000)
//!
//! For each N: N nodes each learn one seed node (node 0), then the simulator runs until
//! every node knows every other node as alive. Reported: rounds (heartbeat periods) to
//! full knowledge against log2 N, rounds for one later event (a payload change) to reach
//! every member, then the rate of a steady full cluster in simulated
//! member-rounds per wall-clock second. `SIM_SEED` picks the seed (default 1).

use std::time::Instant;

use node::sim::{seed_from_env, Cluster};

fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![1000, 10000] } else { sizes };
    let seed = seed_from_env(1);
    println!(
        "member entry: {} bytes; a full mesh of N holds N² of them",
        std::mem::size_of::<node::swim::member::Member>()
    );
    for n in sizes {
        let wall = Instant::now();
        let mut c = Cluster::new(n, seed);
        c.join_all_through(0);
        let hb = c.cfg.heartbeat_rate;
        let log2n = (n as f64).log2();
        let took = c.run_until(Cluster::all_alive_known, (20.0 * log2n) as u64 * hb);
        let join_wall = wall.elapsed().as_secs_f64();
        let Some(took) = took else {
            println!(
                "N = {n}: no full knowledge within {:.0} rounds (seed {seed})",
                20.0 * log2n
            );
            continue;
        };
        let rounds = took as f64 / hb as f64;
        println!(
            "N = {n:>6}: full knowledge in {rounds:5.1} rounds = {:.2} · log2 N (log2 N = {log2n:.1}); \
             join simulated in {join_wall:.1} s wall, {:.0} member-rounds/s, {} packets ({} over receive buffers)",
            rounds / log2n,
            n as f64 * rounds / join_wall,
            c.net.sent,
            c.net.overflow
        );
        // One event in the converged cluster: node 1's new payload (a version bump).
        let want = c.with(1, |s, now| {
            s.set_payload(b"\xa3new", now).expect("small payload");
            s.self_member().incarnation()
        });
        let subject = c.node(1).uuid;
        let seen =
            |c: &Cluster| (0..c.len()).all(|i| c.swim(i).member(&subject).is_some_and(|m| m.incarnation() >= want));
        match c.run_until(seen, (20.0 * log2n) as u64 * hb) {
            Some(t) => {
                let r = t as f64 / hb as f64;
                println!(
                    "           one event reaches all in {r:.1} rounds = {:.2} · log2 N",
                    r / log2n
                )
            }
            None => println!(
                "           one event did not reach everyone in {:.0} rounds",
                20.0 * log2n
            ),
        }
        let steady_rounds = 10.0;
        let (sent0, wall) = (c.net.sent, Instant::now());
        c.run_rounds(steady_rounds);
        let w = wall.elapsed().as_secs_f64();
        println!(
            "           steady state: {:.0} member-rounds/s ({:.0} packets/s wall), seed {seed}",
            n as f64 * steady_rounds / w,
            (c.net.sent - sent0) as f64 / w
        );
    }
}
