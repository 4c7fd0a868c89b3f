//! Limbo transcripts: one queue driven by appends, WAL completions, acks and synchro rows.
//! Sections cited are spec `box.md`'s.

use super::*;

const T0: u64 = 5_000_000_000;
const SECOND: u64 = 1_000_000;
/// `replication_synchro_timeout` 5 s, the default.
const TIMEOUT: u64 = 5 * SECOND;

/// Instance 1's queue, quorum 2 (3 nodes).
fn leader() -> Limbo {
    Limbo::new(1, 2, TIMEOUT)
}

/// Append and write local transaction `txn` with `lsn` at `now` (the client waits).
fn write(l: &mut Limbo, txn: TxnId, lsn: i64, now: u64) {
    l.append(txn, 1, true).unwrap();
    l.written(txn, lsn, now);
}

/// The driver's part: write every requested row (instantly) and apply it; return the
/// rows written and the outcomes, in order.
fn drive(l: &mut Limbo) -> (Vec<SynchroRequest>, Vec<LimboOutput>) {
    let (mut rows, mut outcomes) = (Vec::new(), Vec::new());
    loop {
        let out = l.take_outputs();
        if out.is_empty() {
            return (rows, outcomes);
        }
        for o in out {
            match o {
                LimboOutput::Write(req) => {
                    rows.push(req);
                    l.apply(&req);
                }
                other => outcomes.push(other),
            }
        }
    }
}

fn confirm(origin: InstanceId, owner: InstanceId, lsn: i64) -> SynchroRequest {
    SynchroRequest {
        kind: SynchroKind::Confirm,
        replica_id: owner,
        origin_id: origin,
        lsn,
        term: 0,
    }
}

fn rollback(origin: InstanceId, owner: InstanceId, lsn: i64) -> SynchroRequest {
    SynchroRequest {
        kind: SynchroKind::Rollback,
        ..confirm(origin, owner, lsn)
    }
}

fn promote(origin: InstanceId, former: InstanceId, lsn: i64, term: u64) -> SynchroRequest {
    SynchroRequest {
        kind: SynchroKind::Promote,
        replica_id: former,
        origin_id: origin,
        lsn,
        term,
    }
}

fn rolled_back(txn: TxnId, code: u32) -> LimboOutput {
    LimboOutput::Rollback {
        txn,
        error: client_error!(code),
    }
}

#[test]
fn own_write_is_the_first_ack_and_a_replica_ack_confirms() {
    let mut l = leader();
    write(&mut l, 10, 5, T0);
    assert_eq!(drive(&mut l), (vec![], vec![]), "1 of 2 acks");
    assert!(!l.is_ro(), "our own queue");
    l.ack(2, 5);
    assert_eq!(drive(&mut l), (vec![confirm(1, 1, 5)], vec![LimboOutput::Commit(10)]));
    assert!(l.is_empty());
    assert_eq!(l.next_deadline(), None);
}

#[test]
fn one_ack_covers_every_earlier_entry_and_commits_in_order() {
    let mut l = Limbo::new(1, 3, TIMEOUT);
    write(&mut l, 10, 5, T0);
    write(&mut l, 11, 6, T0);
    write(&mut l, 12, 7, T0);
    l.ack(2, 6);
    assert_eq!(drive(&mut l), (vec![], vec![]));
    l.ack(3, 7);
    // 5 and 6 have three acks, 7 has two: CONFIRM 6.
    let (rows, done) = drive(&mut l);
    assert_eq!(rows, vec![confirm(1, 1, 6)]);
    assert_eq!(done, vec![LimboOutput::Commit(10), LimboOutput::Commit(11)]);
    assert_eq!(l.len(), 1);
    // Old or repeated acks change nothing.
    l.ack(3, 7);
    l.ack(2, 5);
    assert_eq!(drive(&mut l), (vec![], vec![]));
    l.ack(2, 7);
    assert_eq!(drive(&mut l).1, vec![LimboOutput::Commit(12)]);
}

#[test]
fn ack_before_the_local_write_ends_is_counted() {
    let mut l = leader();
    write(&mut l, 9, 4, T0);
    l.append(10, 1, true).unwrap();
    l.ack(2, 4);
    assert_eq!(drive(&mut l).1, vec![LimboOutput::Commit(9)]);
    // 10 is still being written when replica 2 already has it.
    l.ack(2, 5);
    assert_eq!(drive(&mut l), (vec![], vec![]));
    l.written(10, 5, T0);
    assert_eq!(drive(&mut l), (vec![confirm(1, 1, 5)], vec![LimboOutput::Commit(10)]));
}

#[test]
fn async_transactions_wait_behind_sync_ones() {
    // §4.6: an async transaction queued behind an unconfirmed sync one commits with it.
    let mut l = leader();
    assert!(!l.must_wait(false), "empty queue: async commits at once");
    write(&mut l, 10, 5, T0);
    assert!(l.must_wait(false));
    l.append(11, 1, false).unwrap();
    write(&mut l, 12, 7, T0);
    l.append(13, 1, false).unwrap();
    l.ack(2, 5);
    let (_, done) = drive(&mut l);
    assert_eq!(done, vec![LimboOutput::Commit(10), LimboOutput::Commit(11)]);
    l.ack(2, 7);
    let (_, done) = drive(&mut l);
    assert_eq!(done, vec![LimboOutput::Commit(12), LimboOutput::Commit(13)]);
}

#[test]
fn timeout_rolls_back_the_first_and_everything_after_newest_first() {
    // §4.5: 216 for the timed-out transaction after replication_synchro_timeout; 217 for
    // the others.
    let mut l = leader();
    write(&mut l, 10, 5, T0);
    write(&mut l, 11, 6, T0 + SECOND);
    l.append(12, 1, false).unwrap();
    assert_eq!(l.next_deadline(), Some(T0 + TIMEOUT));
    l.handle_timer(T0 + TIMEOUT - 1);
    assert_eq!(drive(&mut l), (vec![], vec![]));
    l.handle_timer(T0 + TIMEOUT);
    // While the ROLLBACK is written, nothing new may enter.
    let out = l.take_outputs();
    assert_eq!(out, vec![LimboOutput::Write(rollback(1, 1, 5))]);
    assert!(l.is_in_rollback());
    let err = l.append(13, 1, true).unwrap_err();
    assert_eq!(
        (err.code, err.message.as_str()),
        (217, "A rollback for a synchronous transaction is received")
    );
    // Acks that arrive meanwhile decide nothing.
    l.ack(2, 6);
    assert!(l.take_outputs().is_empty());
    l.apply(&rollback(1, 1, 5));
    let done = l.take_outputs();
    assert_eq!(
        done,
        vec![
            rolled_back(12, ER_SYNC_ROLLBACK),
            rolled_back(11, ER_SYNC_ROLLBACK),
            rolled_back(10, ER_SYNC_QUORUM_TIMEOUT),
        ]
    );
    if let LimboOutput::Rollback { error, .. } = &done[2] {
        assert_eq!(
            error.message,
            "Quorum collection for a synchronous transaction is timed out"
        );
    }
    assert!(l.is_empty() && !l.is_in_rollback());
    assert_eq!(l.rollback_count(), 3);
    write(&mut l, 14, 8, T0 + TIMEOUT);
}

#[test]
fn no_timeout_once_a_confirm_covers_the_entry() {
    let mut l = leader();
    write(&mut l, 10, 5, T0);
    l.ack(2, 5);
    // The CONFIRM is requested but not yet written.
    assert_eq!(l.take_outputs(), vec![LimboOutput::Write(confirm(1, 1, 5))]);
    assert_eq!(l.next_deadline(), None);
    l.handle_timer(T0 + TIMEOUT);
    assert!(l.take_outputs().is_empty());
}

#[test]
fn replica_keeps_the_owners_entries_until_its_decision() {
    let mut l = Limbo::new(2, 2, TIMEOUT);
    l.append(10, 1, true).unwrap();
    l.assign_lsn(10, 5);
    l.append(11, 1, true).unwrap();
    l.assign_lsn(11, 6);
    assert!(l.is_ro(), "a foreign non-empty queue makes the node read-only");
    assert_eq!(l.next_deadline(), None, "replicas never time out");
    l.handle_timer(T0 + 100 * TIMEOUT);
    assert!(l.take_outputs().is_empty());
    // A local transaction can't join a foreign queue.
    let err = l.append(12, 2, true).unwrap_err();
    assert_eq!(
        err.message,
        "Found uncommitted sync transactions from other instance with id 1"
    );
    l.apply(&confirm(1, 1, 5));
    assert_eq!(l.take_outputs(), vec![LimboOutput::Commit(10)]);
    l.apply(&rollback(1, 1, 6));
    assert_eq!(l.take_outputs(), vec![rolled_back(11, ER_SYNC_ROLLBACK)]);
    assert!(!l.is_ro());
    // Empty: the next transaction's instance owns the queue.
    l.append(12, 2, true).unwrap();
    assert_eq!(l.owner(), 2);
}

#[test]
fn decisions_about_a_foreign_queue_are_ignored() {
    let mut l = Limbo::new(2, 2, TIMEOUT);
    l.append(10, 1, true).unwrap();
    l.assign_lsn(10, 5);
    l.apply(&confirm(3, 3, 9));
    l.apply(&rollback(3, 3, 1));
    assert!(l.take_outputs().is_empty());
    assert_eq!(l.len(), 1);
}

#[test]
fn raising_quorum_waits_lowering_confirms() {
    let mut l = Limbo::new(1, 3, TIMEOUT);
    write(&mut l, 10, 5, T0);
    l.ack(2, 5);
    assert_eq!(drive(&mut l), (vec![], vec![]));
    l.set_quorum(2);
    assert_eq!(drive(&mut l), (vec![confirm(1, 1, 5)], vec![LimboOutput::Commit(10)]));
    write(&mut l, 11, 6, T0);
    l.set_synchro_timeout(SECOND);
    assert_eq!(l.next_deadline(), Some(T0 + SECOND));
}

#[test]
fn new_leader_promotes_after_quorum_holds_the_old_queue() {
    // §4.4: node 2, elected in term 3, takes over node 1's queue.
    let mut l = Limbo::new(2, 2, TIMEOUT);
    for (txn, lsn) in [(10, 5), (11, 6)] {
        l.append(txn, 1, true).unwrap();
        l.assign_lsn(txn, lsn);
    }
    let p = l.begin_promotion(3).unwrap();
    assert_eq!((p.former_owner, p.wait_lsn, p.is_queue_empty), (1, 6, false));
    assert!(p.is_held_by(&{
        let mut v = Vclock::new();
        v.follow(1, 6);
        v
    }));
    assert_eq!(l.finish_promotion(&p, 1), Ok(false), "only itself holds lsn 6");
    assert_eq!(l.finish_promotion(&p, 2), Ok(true));
    let (rows, done) = drive(&mut l);
    assert_eq!(rows, vec![promote(2, 1, 6, 3)]);
    assert_eq!(done, vec![LimboOutput::Commit(10), LimboOutput::Commit(11)]);
    assert_eq!((l.owner(), l.promote_greatest_term()), (2, 3));
    assert!(!l.is_ro());
    assert_eq!(l.begin_promotion(3), None, "done for this term");
    // Our own transactions now.
    l.append(12, 2, true).unwrap();
    l.written(12, 1, T0);
    l.ack(3, 1);
    assert_eq!(drive(&mut l).1, vec![LimboOutput::Commit(12)]);
}

#[test]
fn promotion_with_an_empty_queue_is_immediate() {
    let mut l = Limbo::new(2, 2, TIMEOUT);
    let p = l.begin_promotion(2).unwrap();
    assert_eq!(l.finish_promotion(&p, 1), Ok(true));
    assert_eq!(drive(&mut l).0, vec![promote(2, 0, 0, 2)]);
    assert_eq!(l.owner(), 2);
}

#[test]
fn promotion_fails_when_the_queue_grew() {
    let mut l = Limbo::new(2, 2, TIMEOUT);
    l.append(10, 1, true).unwrap();
    l.assign_lsn(10, 5);
    let p = l.begin_promotion(3).unwrap();
    l.append(11, 1, true).unwrap();
    l.assign_lsn(11, 6);
    let err = l.finish_promotion(&p, 3).unwrap_err();
    assert_eq!(
        err.message,
        "Couldn't wait for quorum 2: new synchronous transactions appeared"
    );
}

#[test]
fn replica_applies_promote_confirm_up_to_lsn_rollback_after() {
    let mut l = Limbo::new(3, 2, TIMEOUT);
    for (txn, lsn) in [(10, 5), (11, 6), (12, 7)] {
        l.append(txn, 1, true).unwrap();
        l.assign_lsn(txn, lsn);
    }
    l.apply(&promote(2, 1, 6, 3));
    assert_eq!(
        l.take_outputs(),
        vec![
            LimboOutput::Commit(10),
            LimboOutput::Commit(11),
            rolled_back(12, ER_SYNC_ROLLBACK)
        ]
    );
    assert_eq!(l.owner(), 2);
    assert!(l.is_replica_outdated(1) && !l.is_replica_outdated(2));
}

#[test]
fn promote_of_an_older_term_is_ignored() {
    let mut l = Limbo::new(3, 2, TIMEOUT);
    l.apply(&promote(2, 0, 0, 5));
    l.append(10, 2, true).unwrap();
    l.assign_lsn(10, 1);
    l.apply(&promote(1, 2, 0, 4));
    assert!(l.take_outputs().is_empty());
    assert_eq!((l.owner(), l.len()), (2, 1));
}

#[test]
fn promote_naming_another_owner_rolls_our_queue_back() {
    // The promoter saw the queue in other hands: it was elected without waiting for ours.
    let mut l = Limbo::new(3, 2, TIMEOUT);
    l.append(10, 1, true).unwrap();
    l.assign_lsn(10, 5);
    l.apply(&promote(4, 2, 9, 6));
    assert_eq!(l.take_outputs(), vec![rolled_back(10, ER_SYNC_ROLLBACK)]);
    assert_eq!(l.owner(), 4);
}

#[test]
fn frozen_limbo_decides_nothing_until_a_promote() {
    let mut l = leader();
    write(&mut l, 10, 5, T0);
    l.freeze();
    assert!(l.is_ro());
    l.ack(2, 5);
    l.handle_timer(T0 + 10 * TIMEOUT);
    assert_eq!(l.next_deadline(), None);
    assert!(l.take_outputs().is_empty());
    l.apply(&promote(2, 1, 5, 3));
    assert_eq!(l.take_outputs(), vec![LimboOutput::Commit(10)]);
    assert!(!l.is_frozen());
}
