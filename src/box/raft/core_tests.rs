//! Single-node tests: one [`Raft`] driven by scripted messages, timer calls and WAL
//! completions; outputs are checked as transcripts. Sections cited are spec `box.md`'s.

use super::*;

/// A non-zero start, so nothing can assume time 0.
const T0: u64 = 5_000_000_000;
const E: u64 = 5 * SECOND;
const D: u64 = 4 * SECOND;

fn cfg(id: InstanceId, mode: ElectionMode) -> Config {
    Config {
        mode,
        election_quorum: 2,
        ..Config::new(id)
    }
}

/// A node of a 3-node set (quorum 2), outputs of its start drained.
fn node(id: InstanceId, mode: ElectionMode) -> Raft {
    node_with(cfg(id, mode))
}

fn node_with(cfg: Config) -> Raft {
    let mut r = Raft::new(cfg, 1, 0, 42, T0);
    r.take_outputs();
    r
}

fn vclock(pairs: &[(u32, i64)]) -> Vclock {
    let mut v = Vclock::new();
    for &(id, lsn) in pairs {
        v.follow(id, lsn);
    }
    v
}

fn candidate_msg(term: u64, id: InstanceId, v: Vclock) -> RaftMessage {
    RaftMessage {
        term,
        vote: id,
        state: Some(Role::Candidate),
        vclock: Some(v),
        leader_id: 0,
        is_leader_seen: false,
    }
}

fn state_msg(term: u64, vote: InstanceId, role: Role) -> RaftMessage {
    RaftMessage {
        term,
        vote,
        state: Some(role),
        vclock: None,
        leader_id: if role == Role::Leader { vote } else { 0 },
        is_leader_seen: role == Role::Leader,
    }
}

fn persists(out: &[Output]) -> Vec<(u64, InstanceId)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Persist { term, vote } => Some((*term, *vote)),
            _ => None,
        })
        .collect()
}

fn broadcasts(out: &[Output]) -> Vec<RaftMessage> {
    out.iter()
        .filter_map(|o| match o {
            Output::Broadcast(m) => Some((**m).clone()),
            _ => None,
        })
        .collect()
}

/// Node 1, a candidate, wins term 2 with node 2's vote at T0 + D.
fn elected_leader() -> Raft {
    let mut r = node(1, ElectionMode::Candidate);
    r.handle_timer(T0 + D);
    r.persisted(T0 + D + 10);
    r.handle_message(2, &state_msg(2, 1, Role::Follower), T0 + D + 20)
        .unwrap();
    assert_eq!(r.role(), Role::Leader);
    r.take_outputs();
    r
}

#[test]
fn new_node_is_off_follower_in_term_1() {
    let r = node(1, ElectionMode::Off);
    let s = r.status();
    assert_eq!((s.role, s.term, s.vote, s.leader), (Role::Follower, 1, 0, 0));
    assert!(!s.is_enabled && !s.is_ro, "off does not restrict writes");
    assert_eq!(r.next_deadline(), None);
    assert!(r.is_source_allowed(7), "with Raft off rows come from anyone");
}

#[test]
fn enabling_broadcasts_state_and_candidate_waits_death_timeout_first() {
    // §4.3: a candidate with no known leader waits a death timeout before its first election.
    let mut r = Raft::new(cfg(1, ElectionMode::Candidate), 1, 0, 42, T0);
    let out = r.take_outputs();
    assert_eq!(broadcasts(&out), vec![state_msg(1, 0, Role::Follower)]);
    assert!(r.status().is_ro);
    assert_eq!(r.next_deadline(), Some(T0 + D));
    r.handle_timer(T0 + D - 1);
    assert!(r.take_outputs().is_empty(), "not yet");
}

#[test]
fn election_persists_term_and_vote_before_anything_is_sent() {
    let mut r = node(1, ElectionMode::Candidate);
    r.set_vclock(&vclock(&[(1, 5)]));
    r.handle_timer(T0 + D);
    let out = r.take_outputs();
    // One write with both the new term and the self vote; nothing on the wire yet.
    assert_eq!(persists(&out), vec![(2, 1)]);
    assert!(broadcasts(&out).is_empty(), "{out:?}");
    assert_eq!(r.role(), Role::Follower, "a follower until the vote is on disk");
    assert_eq!(
        (r.volatile_term(), r.volatile_vote()),
        (2, 1),
        "volatile state moves at once"
    );
    assert_eq!(r.persisted_state(), (1, 0));
    assert_eq!(r.next_deadline(), None, "no timer during the write");

    r.persisted(T0 + D + 100);
    let out = r.take_outputs();
    assert_eq!(r.role(), Role::Candidate);
    assert_eq!(broadcasts(&out), vec![candidate_msg(2, 1, vclock(&[(1, 5)]))]);
    // The round lasts the election timeout plus up to 10 %.
    let deadline = r.next_deadline().unwrap();
    assert!((T0 + D + 100 + E..=T0 + D + 100 + E + E / 10).contains(&deadline));
}

#[test]
fn quorum_of_votes_makes_leader() {
    let mut r = node(1, ElectionMode::Candidate);
    r.handle_timer(T0 + D);
    r.persisted(T0 + D);
    r.take_outputs();
    // A vote for a competitor, then a duplicate-free vote for us.
    r.handle_message(3, &state_msg(2, 3, Role::Follower), T0 + D + 1)
        .unwrap();
    assert_eq!(r.role(), Role::Candidate);
    r.handle_message(2, &state_msg(2, 1, Role::Follower), T0 + D + 2)
        .unwrap();
    assert_eq!(r.role(), Role::Leader);
    assert_eq!(r.leader(), 1);
    assert!(!r.status().is_ro);
    let out = r.take_outputs();
    assert_eq!(broadcasts(&out), vec![state_msg(2, 1, Role::Leader)]);
    assert!(out.contains(&Output::Update(r.status())));
    assert_eq!(r.next_deadline(), None, "a leader waits for nothing (no fencing)");
}

#[test]
fn quorum_1_leader_right_after_persisting() {
    let mut r = node_with(Config {
        election_quorum: 1,
        ..cfg(1, ElectionMode::Candidate)
    });
    r.handle_timer(T0 + D);
    r.persisted(T0 + D + 1);
    assert_eq!(r.role(), Role::Leader);
    assert_eq!(broadcasts(&r.take_outputs()), vec![state_msg(2, 1, Role::Leader)]);
}

#[test]
fn voter_grants_vote_persisted_then_broadcast() {
    // The failover log of §4.3: bump term, vote, persist, then the state goes out.
    let mut r = node(3, ElectionMode::Voter);
    r.set_vclock(&vclock(&[(1, 13)]));
    r.handle_message(4, &candidate_msg(3, 4, vclock(&[(1, 13)])), T0)
        .unwrap();
    let out = r.take_outputs();
    assert_eq!(persists(&out), vec![(3, 4)]);
    assert!(broadcasts(&out).is_empty());
    r.persisted(T0 + 5);
    assert_eq!(broadcasts(&r.take_outputs()), vec![state_msg(3, 4, Role::Follower)]);
    // The leader announcement: follow it.
    r.handle_message(4, &state_msg(3, 4, Role::Leader), T0 + 10).unwrap();
    assert_eq!(r.leader(), 4);
    assert!(r.is_source_allowed(4) && !r.is_source_allowed(1));
    assert_eq!(r.next_deadline(), None, "voters do not watch the leader");
}

#[test]
fn no_vote_for_a_candidate_behind_in_any_component() {
    let mut r = node(3, ElectionMode::Voter);
    r.set_vclock(&vclock(&[(0, 100), (1, 13), (2, 4)]));
    // Ahead in component 1, behind in 2: refused; the term is still adopted.
    r.handle_message(4, &candidate_msg(3, 4, vclock(&[(1, 20), (2, 3)])), T0)
        .unwrap();
    assert_eq!(persists(&r.take_outputs()), vec![(3, 0)]);
    r.persisted(T0 + 1);
    r.take_outputs();
    // Component 0 (local rows) does not count.
    r.handle_message(2, &candidate_msg(3, 2, vclock(&[(1, 13), (2, 4)])), T0 + 2)
        .unwrap();
    assert_eq!(persists(&r.take_outputs()), vec![(3, 2)]);
}

#[test]
fn one_vote_per_term_even_before_it_is_persisted() {
    let mut r = node(3, ElectionMode::Voter);
    r.handle_message(4, &candidate_msg(3, 4, Vclock::new()), T0).unwrap();
    // A second candidate in term 3 while the first vote is still being written.
    r.handle_message(2, &candidate_msg(3, 2, Vclock::new()), T0 + 1)
        .unwrap();
    assert_eq!(persists(&r.take_outputs()), vec![(3, 4)]);
    r.persisted(T0 + 2);
    r.handle_message(2, &candidate_msg(3, 2, Vclock::new()), T0 + 3)
        .unwrap();
    assert!(persists(&r.take_outputs()).is_empty());
    assert_eq!(r.volatile_vote(), 4);
}

#[test]
fn changes_during_a_write_are_written_next_and_sent_after() {
    let mut r = node(3, ElectionMode::Voter);
    r.handle_message(4, &candidate_msg(3, 4, Vclock::new()), T0).unwrap();
    assert_eq!(persists(&r.take_outputs()), vec![(3, 4)]);
    // Term 5 arrives while term 3 is being written: one write at a time.
    r.handle_message(2, &candidate_msg(5, 2, Vclock::new()), T0 + 1)
        .unwrap();
    assert!(r
        .take_outputs()
        .iter()
        .all(|o| !matches!(o, Output::Persist { .. } | Output::Broadcast(_))));
    r.persisted(T0 + 2);
    let out = r.take_outputs();
    assert_eq!(persists(&out), vec![(5, 2)]);
    assert!(broadcasts(&out).is_empty(), "term 3 is stale already: nothing sent");
    r.persisted(T0 + 3);
    assert_eq!(broadcasts(&r.take_outputs()), vec![state_msg(5, 2, Role::Follower)]);
}

#[test]
fn message_from_older_term_is_ignored() {
    let mut r = node(3, ElectionMode::Voter);
    r.handle_message(4, &candidate_msg(3, 4, Vclock::new()), T0).unwrap();
    r.persisted(T0);
    r.take_outputs();
    r.handle_message(1, &state_msg(2, 1, Role::Leader), T0 + 1).unwrap();
    assert_eq!(r.leader(), 0);
    assert!(r.take_outputs().is_empty());
}

#[test]
fn invalid_messages_are_refused_with_tarantool_texts() {
    let mut r = node(3, ElectionMode::Voter);
    let mut m = state_msg(0, 0, Role::Follower);
    assert_eq!(
        r.handle_message(1, &m, T0).unwrap_err().to_string(),
        "Invalid term or state"
    );
    m.term = 2;
    m.state = None;
    assert_eq!(r.handle_message(1, &m, T0), Err(MessageError::InvalidTermOrState));
    let no_vclock = RaftMessage {
        vclock: None,
        ..candidate_msg(2, 1, Vclock::new())
    };
    assert_eq!(
        r.handle_message(1, &no_vclock, T0).unwrap_err().to_string(),
        "Candidate should always vote for self and provide its vclock"
    );
    let for_other = candidate_msg(2, 2, Vclock::new());
    assert_eq!(r.handle_message(1, &for_other, T0), Err(MessageError::BadCandidate));
    assert_eq!(r.volatile_term(), 1, "nothing changed");
    assert!(r.take_outputs().is_empty());
}

#[test]
fn heartbeats_from_the_leader_postpone_the_death_timer() {
    let mut r = node(2, ElectionMode::Candidate);
    r.handle_message(1, &state_msg(1, 0, Role::Leader), T0).unwrap();
    assert_eq!(r.leader(), 1);
    assert_eq!(r.next_deadline(), Some(T0 + D));
    r.handle_heartbeat(1, T0 + 3 * SECOND);
    assert_eq!(r.next_deadline(), Some(T0 + 3 * SECOND + D));
    r.handle_heartbeat(3, T0 + 3_500_000);
    assert_eq!(r.next_deadline(), Some(T0 + 3 * SECOND + D), "only the leader's count");
    assert_eq!(r.leader_idle(T0 + 3_500_000), Some(500_000));
    // Silence: the leader is dead, a new election starts.
    r.take_outputs();
    r.handle_timer(T0 + 3 * SECOND + D);
    assert_eq!(persists(&r.take_outputs()), vec![(2, 2)]);
    assert_eq!(r.leader(), 0);
}

#[test]
fn resigned_leader_makes_candidates_start_election() {
    let mut r = node(2, ElectionMode::Candidate);
    r.handle_message(1, &state_msg(1, 0, Role::Leader), T0).unwrap();
    r.take_outputs();
    r.handle_message(1, &state_msg(1, 0, Role::Follower), T0 + 1).unwrap();
    assert_eq!(r.leader(), 0);
    assert_eq!(persists(&r.take_outputs()), vec![(2, 2)]);
    // A voter only forgets the leader.
    let mut v = node(3, ElectionMode::Voter);
    v.handle_message(1, &state_msg(1, 0, Role::Leader), T0).unwrap();
    v.handle_message(1, &state_msg(1, 0, Role::Follower), T0 + 1).unwrap();
    assert_eq!(v.leader(), 0);
    assert!(persists(&v.take_outputs()).is_empty());
}

#[test]
fn second_leader_in_a_term_is_ignored() {
    let mut r = node(3, ElectionMode::Voter);
    r.handle_message(1, &state_msg(1, 0, Role::Leader), T0).unwrap();
    r.handle_message(2, &state_msg(1, 0, Role::Leader), T0).unwrap();
    assert_eq!(r.leader(), 1);
}

#[test]
fn split_vote_starts_next_round_after_election_timeout() {
    let mut r = node(1, ElectionMode::Candidate);
    r.handle_timer(T0 + D);
    r.persisted(T0 + D);
    r.take_outputs();
    let end = r.next_deadline().unwrap();
    r.handle_timer(end);
    assert_eq!(persists(&r.take_outputs()), vec![(3, 1)]);
    assert_eq!(r.role(), Role::Follower);
}

#[test]
fn random_shift_is_within_10_percent_and_seeded() {
    let rounds = |seed| {
        let mut r = Raft::new(cfg(1, ElectionMode::Candidate), 1, 0, seed, T0);
        let mut shifts = Vec::new();
        let mut now = T0 + D;
        r.handle_timer(now);
        for _ in 0..50 {
            r.persisted(now);
            let end = r.next_deadline().unwrap();
            shifts.push(end - now - E);
            now = end;
            r.handle_timer(now);
        }
        shifts
    };
    let a = rounds(7);
    assert!(a.iter().all(|&s| s <= E / 10 && s % 1000 == 0), "{a:?}");
    assert!(a.iter().any(|&s| s != a[0]), "random");
    assert_eq!(a, rounds(7), "seeded");
    assert_ne!(a, rounds(8));
}

#[test]
fn candidate_in_a_term_bumped_by_others_stands_in_it() {
    // A term bump with no leader and no acceptable candidate: a candidate votes for itself.
    let mut r = node(1, ElectionMode::Candidate);
    r.set_vclock(&vclock(&[(1, 9)]));
    r.handle_message(2, &candidate_msg(4, 2, vclock(&[(1, 3)])), T0)
        .unwrap();
    assert_eq!(persists(&r.take_outputs()), vec![(4, 0)]);
    r.persisted(T0 + 1);
    assert_eq!(persists(&r.take_outputs()), vec![(4, 1)]);
    r.persisted(T0 + 2);
    assert_eq!(r.role(), Role::Candidate);
}

#[test]
fn lowering_the_quorum_elects_a_waiting_candidate() {
    let mut r = node_with(Config {
        election_quorum: 3,
        ..cfg(1, ElectionMode::Candidate)
    });
    r.handle_timer(T0 + D);
    r.persisted(T0 + D);
    r.handle_message(2, &state_msg(2, 1, Role::Follower), T0 + D + 1)
        .unwrap();
    assert_eq!(r.role(), Role::Candidate);
    r.set_election_quorum(2, T0 + D + 2);
    assert_eq!(r.role(), Role::Leader);
}

#[test]
fn election_timeout_change_moves_the_running_round() {
    let mut r = node(1, ElectionMode::Candidate);
    r.handle_timer(T0 + D);
    r.persisted(T0 + D);
    r.set_election_timeout(SECOND, T0 + D + 10);
    assert_eq!(
        r.next_deadline(),
        Some(T0 + D + SECOND),
        "start + new timeout, no shift"
    );
    // Already past the new end: fires at once.
    r.set_election_timeout(SECOND / 2, T0 + D + SECOND - 1);
    assert_eq!(r.next_deadline(), Some(T0 + D + SECOND - 1));
}

#[test]
fn death_timeout_change_moves_the_leader_wait() {
    let mut r = node(2, ElectionMode::Candidate);
    r.handle_message(1, &state_msg(1, 0, Role::Leader), T0).unwrap();
    r.set_death_timeout(SECOND, T0 + 100);
    assert_eq!(r.next_deadline(), Some(T0 + SECOND));
}

#[test]
fn mode_changes() {
    let mut r = elected_leader();
    // candidate -> voter demotes the leader at once (2.6.3's raft_cfg_is_candidate(false)).
    r.set_mode(ElectionMode::Voter, T0 + 10 * SECOND);
    assert_eq!((r.role(), r.leader()), (Role::Follower, 0));
    assert_eq!(broadcasts(&r.take_outputs()), vec![state_msg(2, 1, Role::Follower)]);
    assert_eq!(r.next_deadline(), None);
    // voter -> off: Raft stops restricting writes; terms are kept.
    r.set_mode(ElectionMode::Off, T0 + 11 * SECOND);
    assert!(!r.is_ro() && !r.is_enabled());
    assert_eq!(r.volatile_term(), 2);
    // off -> candidate: waits for a leader to show up first.
    r.set_mode(ElectionMode::Candidate, T0 + 12 * SECOND);
    assert_eq!(r.next_deadline(), Some(T0 + 12 * SECOND + D));
}

#[test]
fn disabled_raft_still_adopts_terms_but_never_votes() {
    let mut r = node(3, ElectionMode::Off);
    r.handle_message(2, &candidate_msg(5, 2, Vclock::new()), T0).unwrap();
    assert_eq!(persists(&r.take_outputs()), vec![(5, 0)]);
}

#[test]
fn manual_promote_runs_an_election_now_then_stops_standing() {
    let mut r = node(1, ElectionMode::Manual);
    r.handle_message(2, &state_msg(1, 0, Role::Leader), T0).unwrap();
    assert_eq!(r.next_deadline(), None, "manual does not watch the leader");
    r.take_outputs();
    r.promote(T0 + 1).unwrap();
    // Term first (raft_new_term), then the self vote in it.
    assert_eq!(persists(&r.take_outputs()), vec![(2, 0)]);
    r.persisted(T0 + 2);
    assert_eq!(persists(&r.take_outputs()), vec![(2, 1)]);
    r.persisted(T0 + 3);
    assert_eq!(r.role(), Role::Candidate);
    r.handle_message(3, &state_msg(2, 1, Role::Follower), T0 + 4).unwrap();
    assert_eq!(r.role(), Role::Leader);
    // It stays leader but does not stand in the next elections by itself.
    r.handle_message(3, &candidate_msg(3, 3, Vclock::new()), T0 + 5)
        .unwrap();
    r.persisted(T0 + 6);
    assert_eq!(r.role(), Role::Follower);
    assert_eq!(r.next_deadline(), None);
}

#[test]
fn promote_errors_by_mode() {
    let mut v = node(1, ElectionMode::Voter);
    assert_eq!(
        v.promote(T0).unwrap_err().message,
        "election_mode='voter' does not support manual elections"
    );
    let mut c = node(1, ElectionMode::Candidate);
    assert_eq!(
        c.promote(T0).unwrap_err().message,
        "election_mode='candidate' does not support manual elections"
    );
    assert!(elected_leader().promote(T0 + 9 * SECOND).is_ok());
}

#[test]
fn message_carries_only_persisted_state_and_candidate_vclock() {
    let mut r = node(1, ElectionMode::Candidate);
    r.set_vclock(&vclock(&[(1, 2)]));
    r.handle_timer(T0 + D);
    assert_eq!(r.message(T0 + D), state_msg(1, 0, Role::Follower));
    r.persisted(T0 + D);
    assert_eq!(r.message(T0 + D), candidate_msg(2, 1, vclock(&[(1, 2)])));
}

#[test]
fn pre_vote_holds_election_while_a_peer_sees_the_leader() {
    let pre = |id| {
        node_with(Config {
            pre_vote: true,
            ..cfg(id, ElectionMode::Candidate)
        })
    };
    let mut r = pre(2);
    r.handle_message(1, &state_msg(1, 0, Role::Leader), T0).unwrap();
    // Node 3 keeps hearing the leader; we don't.
    let mut seen = state_msg(1, 0, Role::Follower);
    seen.leader_id = 1;
    seen.is_leader_seen = true;
    r.handle_message(3, &seen, T0 + D - 10).unwrap();
    r.take_outputs();
    r.handle_timer(T0 + D);
    let out = r.take_outputs();
    assert!(persists(&out).is_empty(), "no election while node 3 sees the leader");
    // We tell the others we lost the leader.
    assert!(broadcasts(&out).iter().any(|m| !m.is_leader_seen));
    // Node 3 loses it too: the held election starts at once.
    seen.is_leader_seen = false;
    r.handle_message(3, &seen, T0 + D + 50).unwrap();
    assert_eq!(persists(&r.take_outputs()), vec![(2, 2)]);
}

#[test]
fn pre_vote_needs_a_quorum_heard_to_start() {
    let mut r = node_with(Config {
        pre_vote: true,
        ..cfg(1, ElectionMode::Candidate)
    });
    r.handle_timer(T0 + D);
    assert!(persists(&r.take_outputs()).is_empty(), "isolated: the term stays");
    assert_eq!(r.volatile_term(), 1);
    r.handle_heartbeat(2, T0 + D + 5);
    assert_eq!(persists(&r.take_outputs()), vec![(2, 1)]);
    // Without pre-vote the isolated node bumps the term anyway (2.6.3).
    let mut r = node(1, ElectionMode::Candidate);
    r.handle_timer(T0 + D);
    assert_eq!(persists(&r.take_outputs()), vec![(2, 1)]);
}

#[test]
fn fencing_leader_resigns_when_quorum_goes_silent() {
    let mut r = elected_leader();
    r.set_fencing(true, T0 + D + 30);
    // Node 2's vote (term 2) at T0 + D + 20 is the last thing heard.
    assert_eq!(r.next_deadline(), Some(T0 + D + 20 + D));
    r.handle_heartbeat(2, T0 + D + SECOND);
    assert_eq!(r.next_deadline(), Some(T0 + D + SECOND + D));
    r.take_outputs();
    r.handle_timer(T0 + D + SECOND + D);
    let s = r.status();
    assert_eq!((s.role, s.leader, s.term, s.vote), (Role::Follower, 0, 2, 1));
    assert!(s.fenced && s.is_ro);
    assert_eq!(broadcasts(&r.take_outputs()), vec![state_msg(2, 1, Role::Follower)]);
    // A new term clears the mark.
    r.handle_message(3, &candidate_msg(3, 3, Vclock::new()), T0 + 20 * SECOND)
        .unwrap();
    assert!(!r.status().fenced);
}

#[test]
fn without_fencing_a_lonely_leader_stays_leader() {
    // §4.3 [captured]: 3302 stayed leader with 2 of 4 nodes alive.
    let mut r = elected_leader();
    r.handle_timer(T0 + 100 * SECOND);
    assert_eq!(r.role(), Role::Leader);
    assert_eq!(r.next_deadline(), None);
}

#[test]
fn fencing_counts_only_peers_in_our_term() {
    let mut r = elected_leader();
    r.set_fencing(true, T0 + D + 30);
    // Node 3 is alive but still in term 1: it does not make a quorum with us.
    r.handle_message(3, &state_msg(1, 0, Role::Follower), T0 + D + 40)
        .unwrap();
    r.handle_heartbeat(3, T0 + 2 * D);
    r.handle_timer(T0 + D + 20 + D);
    assert!(r.status().fenced);
}

#[test]
fn fencing_leader_elected_with_stale_votes_resigns_at_once() {
    let mut r = node_with(Config {
        fencing: true,
        election_quorum: 3,
        ..cfg(1, ElectionMode::Candidate)
    });
    r.handle_timer(T0 + D);
    r.persisted(T0 + D);
    // Node 2 votes early in the round, then goes silent; node 3 votes a death timeout later.
    r.handle_message(2, &state_msg(2, 1, Role::Follower), T0 + D + 1)
        .unwrap();
    r.handle_message(3, &state_msg(2, 1, Role::Follower), T0 + 2 * D + 2)
        .unwrap();
    let s = r.status();
    assert_eq!(
        (s.role, s.fenced),
        (Role::Follower, true),
        "elected, but without a live quorum"
    );
}
