//! Seeded schedules and scenarios. A failure prints its seed; replay one with
//! `SIM_SEED=<seed> SIM_TRACE=1 cargo test --lib box_::raft::sim::tests::<name> -- --nocapture`.
//! More schedules: `SIM_SCHEDULES=<n>` (the soak test runs 20,000 per mode, `--ignored`).
//! Each sweep runs 500 schedules: about 3 s each in a debug build.

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
    let mut liveness: Vec<u64> = reports.iter().map(|r| r.liveness_time).collect();
    liveness.sort_unstable();
    let (median, worst) = (liveness[liveness.len() / 2], liveness[liveness.len() - 1]);
    println!(
        "{name}: {} schedules, {} steps; {} writes, {} committed, {} rolled back; {} crashes, {} partitions, \
         {} leaders; {} divergences (2.6.3: discarded here, confirmed by a newer PROMOTE there), {} of them \
         of acknowledged writes; {} writes acknowledged while held by fewer than a quorum; {} stuck (no node \
         electable by vclock); liveness median {} ms, worst {} ms",
        reports.len(),
        sum(|r| r.steps),
        sum(|r| r.writes),
        sum(|r| r.committed),
        sum(|r| r.rolled_back),
        sum(|r| r.crashes),
        sum(|r| r.partitions),
        sum(|r| r.leaders),
        sum(|r| r.divergences),
        sum(|r| r.acked_divergences),
        sum(|r| r.under_replicated_acks),
        sum(|r| r.stuck),
        median / 1000,
        worst / 1000,
    );
    reports
}

#[test]
fn schedules_2_6_3() {
    sweep("schedules_2_6_3", 1_000_000, 500, Options::default());
}

#[test]
fn schedules_pre_vote() {
    let opts = Options {
        pre_vote: true,
        ..Options::default()
    };
    sweep("schedules_pre_vote", 2_000_000, 500, opts);
}

#[test]
fn schedules_fencing() {
    let opts = Options {
        fencing: true,
        ..Options::default()
    };
    sweep("schedules_fencing", 3_000_000, 500, opts);
}

#[test]
fn schedules_pre_vote_and_fencing() {
    let opts = Options {
        pre_vote: true,
        fencing: true,
        ..Options::default()
    };
    sweep("schedules_pre_vote_and_fencing", 4_000_000, 500, opts);
}

#[test]
#[ignore = "soak: SIM_SCHEDULES=<n> cargo test --release --lib box_::raft::sim::tests::soak -- --ignored --nocapture"]
fn soak() {
    let count = env_u64("SIM_SCHEDULES").unwrap_or(20_000);
    let configs = [
        (false, false, false),
        (true, false, false),
        (false, true, false),
        (true, true, false),
        (true, true, true),
        (false, false, true),
    ];
    for (i, (pre_vote, fencing, fast_failover)) in configs.into_iter().enumerate() {
        let opts = Options {
            pre_vote,
            fencing,
            fast_failover,
            ..Options::default()
        };
        sweep("soak", 10_000_000 * (i as u64 + 1), count, opts);
    }
}

#[test]
fn same_seed_same_run() {
    let opts = Options::default();
    let a = run(77, &opts).unwrap();
    let b = run(77, &opts).unwrap();
    assert_eq!(
        (a.steps, a.writes, a.committed, a.max_term),
        (b.steps, b.writes, b.committed, b.max_term)
    );
    let c = run(78, &opts).unwrap();
    assert_ne!(a.steps, c.steps);
}

// ===== scenarios: a 3-node set of candidates, no random faults =====

const R: u64 = 100_000;

fn opts(pre_vote: bool, fencing: bool) -> Options {
    Options {
        pre_vote,
        fencing,
        ..Options::default()
    }
}

/// Seeded scenario runner: prints the seed of a failing one.
fn seeded(name: &str, default: u64, f: impl Fn(u64) + std::panic::RefUnwindSafe) {
    let seeds: Vec<u64> = match env_u64("SIM_SEED") {
        Some(s) => vec![s],
        None => (default..default + 20).collect(),
    };
    for seed in seeds {
        if let Err(e) = std::panic::catch_unwind(|| f(seed)) {
            eprintln!("{name} failed with seed {seed}: replay with SIM_SEED={seed}");
            std::panic::resume_unwind(e);
        }
    }
}

/// A 3-node set with a writable leader known to all; returns it and the leader's index.
fn settled(seed: u64, o: Options) -> (Cluster, usize) {
    let mut c = Cluster::new(3, seed, o, &[]);
    let death = c.opts.death_timeout();
    c.run_until(|c| c.stable_leader().is_some(), 20 * death)
        .expect("no leader");
    let l = c.stable_leader().unwrap();
    let txn = c.client_write(l).unwrap();
    c.run_until(|c| c.is_acked(txn), death)
        .expect("first write not committed");
    assert_eq!(c.violation(), None);
    (c, l)
}

#[test]
fn first_leader_after_the_death_timeout() {
    // §4.5: 3301 became leader 4.0 s (the death timeout) after election_mode='candidate'.
    seeded("first_leader_after_the_death_timeout", 100, |seed| {
        let mut c = Cluster::new(3, seed, opts(false, false), &[]);
        let death = c.opts.death_timeout();
        let took = c.run_until(|c| !c.writable().is_empty(), 20 * death).unwrap();
        assert!((death..death + 3 * c.opts.election_timeout).contains(&took), "{took}");
    });
}

#[test]
fn failover_after_leader_crash_takes_a_death_timeout() {
    // §4.5: with one other candidate (the rest voters), failover = the death timeout minus
    // the time since the last heartbeat, plus one vote round of a few ms.
    seeded("failover_after_leader_crash_takes_a_death_timeout", 200, |seed| {
        let modes = [ElectionMode::Candidate, ElectionMode::Candidate, ElectionMode::Voter];
        let mut c = Cluster::new(3, seed, opts(false, false), &modes);
        let death = c.opts.death_timeout();
        c.run_until(|c| c.stable_leader().is_some(), 20 * death).unwrap();
        let l = c.stable_leader().unwrap();
        c.run_for(seed * 7919 % R);
        c.crash(l);
        let took = c.run_until(|c| !c.writable().is_empty(), 20 * death).unwrap();
        println!("failover {took} µs");
        assert!(took >= death - R && took <= death + 20_000, "{took}");
        let txn = c.client_write(c.writable()[0]).unwrap();
        c.run_until(|c| c.is_acked(txn), death).expect("write after failover");
        c.restart(l);
        c.run_for(2 * death);
        assert_eq!(
            c.raft(l).role(),
            Role::Follower,
            "the old leader comes back as a follower"
        );
        assert_eq!(c.violation(), None);
    });
}

#[test]
fn fast_failover_after_a_crash_takes_one_replication_timeout() {
    // node's fast failover: the survivors see the leader's connections close; the candidate
    // waits one replication_timeout for a reconnect, then a vote round.
    seeded(
        "fast_failover_after_a_crash_takes_one_replication_timeout",
        300,
        |seed| {
            let modes = [ElectionMode::Candidate, ElectionMode::Candidate, ElectionMode::Voter];
            let mut opts = opts(seed % 2 == 0, false);
            opts.fast_failover = true;
            let mut c = Cluster::new(3, seed, opts, &modes);
            let death = c.opts.death_timeout();
            c.run_until(|c| c.stable_leader().is_some(), 20 * death).unwrap();
            let l = c.stable_leader().unwrap();
            c.run_for(seed * 7919 % R);
            c.crash(l);
            let took = c.run_until(|c| !c.writable().is_empty(), 20 * death).unwrap();
            println!("fast failover {took} µs");
            assert!((R..=R + 20_000).contains(&took), "{took}");
            assert_eq!(c.violation(), None);
        },
    );
}

#[test]
fn schedules_fast_failover() {
    let opts = Options {
        pre_vote: true,
        fast_failover: true,
        ..Options::default()
    };
    sweep("schedules_fast_failover", 5_000_000, 300, opts);
}

#[test]
fn failover_with_all_candidates_may_split_the_vote() {
    // Both survivors time out together: a split vote costs an election timeout or two.
    seeded("failover_with_all_candidates_may_split_the_vote", 250, |seed| {
        let (mut c, l) = settled(seed, opts(false, false));
        let death = c.opts.death_timeout();
        c.crash(l);
        let took = c.run_until(|c| !c.writable().is_empty(), 20 * death).unwrap();
        assert!(
            took >= death - R && took <= death + 4 * c.opts.election_timeout,
            "{took}"
        );
        assert_eq!(c.violation(), None);
    });
}

#[test]
fn partitioned_leader_stays_writable_without_fencing() {
    // §4.3 [captured]: a 2.6 leader does not step down when it loses the quorum.
    seeded("partitioned_leader_stays_writable_without_fencing", 300, |seed| {
        let (mut c, l) = settled(seed, opts(false, false));
        let death = c.opts.death_timeout();
        c.isolate(l);
        c.run_until(|c| c.writable().len() == 2, 40 * death)
            .expect("the majority elects its own leader");
        c.run_for(10 * death);
        assert!(c.is_writable(l), "old leader read-only");
        // Its writes time out: no quorum.
        let txn = c.client_write(l).unwrap();
        c.run_for(2 * c.opts.synchro_timeout);
        assert!(!c.is_acked(txn));
        assert_eq!(c.violation(), None);
    });
}

#[test]
fn partitioned_leader_with_fencing_stops_within_the_death_timeout() {
    seeded(
        "partitioned_leader_with_fencing_stops_within_the_death_timeout",
        400,
        |seed| {
            let (mut c, l) = settled(seed, opts(false, true));
            let death = c.opts.death_timeout();
            // A random moment within the heartbeat period.
            c.run_for(seed % R);
            c.isolate(l);
            let took = c.run_until(|c| !c.is_writable(l), 2 * death).expect("still writable");
            assert!(took <= death, "read-only after {took} µs, death timeout {death}");
            assert!(c.raft(l).status().fenced);
            // The majority elects a new leader, and the old one follows it after the heal.
            c.run_until(|c| c.writable().len() == 1, 20 * death)
                .expect("no new leader");
            c.heal();
            c.run_until(|c| c.stable_leader().is_some_and(|x| x != l), 20 * death)
                .expect("old leader did not rejoin");
            assert_eq!(c.violation(), None);
        },
    );
}

/// Cut node `i` from the leader only, or from everyone, for 10 death timeouts, heal, and
/// return how many terms passed and whether the leader changed.
fn disruption(seed: u64, pre_vote: bool, from_everyone: bool) -> (u64, bool) {
    let (mut c, l) = settled(seed, opts(pre_vote, false));
    let death = c.opts.death_timeout();
    let term = c.raft(l).volatile_term();
    let i = (l + 1) % 3;
    if from_everyone {
        c.isolate(i);
    } else {
        c.partition(i, l);
    }
    c.run_for(10 * death);
    c.heal();
    c.run_until(|c| c.stable_leader().is_some(), 20 * death)
        .expect("no leader after the heal");
    assert_eq!(c.violation(), None);
    let now_leader = c.stable_leader().unwrap();
    (c.raft(now_leader).volatile_term() - term, now_leader != l)
}

#[test]
fn pre_vote_keeps_a_follower_cut_from_the_leader_from_disrupting() {
    seeded(
        "pre_vote_keeps_a_follower_cut_from_the_leader_from_disrupting",
        500,
        |seed| {
            // The third node still sees the leader: with pre-vote nothing happens.
            assert_eq!(disruption(seed, true, false), (0, false));
            // 2.6.3: the cut follower starts elections; its new term deposes the leader.
            let (terms, _) = disruption(seed, false, false);
            assert!(terms > 0);
        },
    );
}

#[test]
fn pre_vote_keeps_an_isolated_node_from_inflating_the_term() {
    seeded("pre_vote_keeps_an_isolated_node_from_inflating_the_term", 600, |seed| {
        assert_eq!(disruption(seed, true, true), (0, false));
        // 2.6.3: an election every election timeout while alone; back, it forces a new term.
        let (terms, _) = disruption(seed, false, true);
        assert!(terms >= 2, "{terms}");
    });
}

#[test]
fn synchro_timeout_rolls_back_without_quorum() {
    // §4.5: with too few nodes alive a sync write fails after replication_synchro_timeout.
    seeded("synchro_timeout_rolls_back_without_quorum", 700, |seed| {
        let (mut c, l) = settled(seed, opts(false, false));
        for i in (0..3).filter(|&i| i != l) {
            c.crash(i);
        }
        let txn = c.client_write(l).unwrap();
        let timeout = c.opts.synchro_timeout;
        c.run_for(timeout - 1);
        assert!(!c.is_acked(txn) && c.limbo(l).len() == 1);
        c.run_for(1);
        assert!(c.limbo(l).is_empty(), "rolled back at the timeout");
        assert!(!c.applied(l).contains(&txn));
        assert_eq!(c.violation(), None);
    });
}
