//! A seeded simulation of a replica set running the Raft [`core`](super::core) and the
//! [`limbo`](super::limbo) over a faulty network, checking safety at every step.
//!
//! One thread, one virtual clock (starting at [`EPOCH`]), one event queue, one seed: a run
//! is a pure function of its seed and options, so a failure replays exactly
//! (`SIM_SEED=<seed>`; `SIM_TRACE=1` prints the events that led to it).
//!
//! # The model
//!
//! Each node has a WAL of rows (data rows, CONFIRM/ROLLBACK/PROMOTE rows, NOPs), each with
//! its origin's id and LSN; its vclock is the highest LSN per origin. Replication follows
//! Tarantool's shape in miniature: every node streams its WAL, in order, to the peers that
//! follow it (or to everyone while it is the leader); a receiver applies a row only if the
//! stream comes from its Raft leader (`is_source_allowed`) and it does not have the row yet
//! (vclock), and acknowledges with its vclock. A stream has a position, so rows are applied
//! strictly in the sender's WAL order; a lost packet leaves a gap that the next heartbeat's
//! resend fills, as a TCP reconnect would. Every `replication_timeout` each node sends each
//! peer its Raft state, its ack, and the rows the peer lacks. Links are FIFO; packets may be
//! lost or delayed; partitions cut packets in flight.
//!
//! Data rows are durable the moment they are written; the Raft term and vote are not: the
//! core's `Persist` output takes a random disk latency, and a crash before it completes
//! loses it. A crash loses everything else (limbo, Raft role, stream positions); a restart
//! replays the WAL into a fresh limbo and starts the core from the durable term and vote.
//!
//! The workload is synchronous writes by clients on every node that is writable (the old
//! leader of a partition too, when nothing stops it).
//!
//! # Invariants, checked as events happen
//!
//! 1. At most one leader per term.
//! 2. Terms never go down: the durable term of a node, and the term its core shows.
//! 3. Every Raft message sent carries the sender's durable term and vote (persist before
//!    send), and a node never sends two different votes for one term, across restarts.
//! 4. Applied logs (the data rows a node committed, in commit order) are pairwise prefixes
//!    of one another: nothing committed is reordered.
//! 5. A leader of the newest term has every row a client was told is committed once it
//!    took the limbo over, and so has the final log: nothing acknowledged is lost.
//! 6. Recovery from the WAL reproduces the applied log the node had before its crash.
//! 7. With fencing: a writable node has had a link to a quorum within the death timeout.
//!
//! Tarantool 2.6.3 lets one shape of conflict through invariants 4 and 5: a node *discards*
//! a row on its own, and another decides to commit it. The discard is a ROLLBACK on
//! `replication_synchro_timeout` by a leader whose acks were lost or cut off, the rollback
//! half of a PROMOTE from a leader that lacked the row, or the applier's filter turning rows
//! of an instance "deposed by a newer PROMOTE" into NOPs. The commit is a PROMOTE of a later
//! leader that holds the row, or a CONFIRM counting acks: an ack is a vclock, and a vclock
//! cannot tell a row held from a row rolled back or NOP'd, so a quorum of acks may include
//! nodes that discarded the row, even one a client was then told is committed. The node
//! that discarded disagrees with the rest forever (2.10 stops it with `ER_SPLIT_BRAIN`). The
//! checker accepts a conflict only in that shape (one side discarded the row the other
//! committed), counts it as a *divergence* (and separately when the row was acknowledged to
//! its client), and rebootstraps the node from the other side, as an operator would. A row
//! acknowledged to its client must still never be missing from the newest leader or from
//! the final log.
//!
//! # Liveness
//!
//! After the chaos phase the network heals and every node restarts if down; within
//! [`Options::liveness_bound`] one leader must be known to all, be writable and commit a
//! new write, and then every node's applied log must converge to the leader's. The bound is
//! generous on purpose: writes on both sides of a partition leave vclocks that no single
//! node dominates, and 2.6.3 then elects only when the one electable candidate times out
//! first by a margin (a candidate whose term is bumped by an unacceptable one stands in the
//! new term itself), which can take dozens of rounds. The reports show the real times.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::box_::errcode::{ER_SYNC_QUORUM_TIMEOUT, ER_SYNC_ROLLBACK};
use crate::box_::wal::vclock::{Vclock, VCLOCK_MAX};
use crate::sim::queue::EventQueue;
use crate::sim::{mix, EPOCH};

use super::core::{Config, ElectionMode, InstanceId, Output, Raft, RaftMessage, Role, Status};
use super::limbo::{Limbo, LimboOutput, Promotion, SynchroKind, SynchroRequest, TxnId};

/// Rows resent per heartbeat at most: enough to catch a peer up within a few heartbeats
/// after a partition, small enough that resends to peers that don't listen stay cheap.
const RESEND_BATCH: usize = 64;
/// The chaos phase decides on faults and writes this often (µs). Nothing special.
const CHAOS_TICK: u64 = 40_000;

/// Settings of one simulated run. Times are µs.
#[derive(Debug, Clone)]
pub struct Options {
    /// 3..=5 nodes, instance ids 1..=nodes; `0` picks 3, 4 or 5 from the seed.
    pub nodes: usize,
    pub pre_vote: bool,
    pub fencing: bool,
    /// Heartbeat period; the death timeout is 4 times it.
    pub replication_timeout: u64,
    pub election_timeout: u64,
    pub synchro_timeout: u64,
    /// One-way network delay range.
    pub delay: (u64, u64),
    /// Latency of a Raft term/vote write.
    pub disk_delay: (u64, u64),
    /// How long faults are injected.
    pub chaos_time: u64,
    /// After the heal, the time allowed to elect a writable leader known to all and commit.
    pub liveness_bound: u64,
    /// Keep an event log for failure reports.
    pub trace: bool,
    /// The core's `fast_failover`: a crash closes the crashed node's connections, and its
    /// peers react at once.
    pub fast_failover: bool,
}

impl Default for Options {
    /// Tarantool's defaults scaled down 10 times (replication_timeout 1 s → 100 ms, election
    /// and synchro timeouts 5 s → 500 ms), so a run covers many death timeouts quickly. The
    /// LAN (0.1–2 ms) and disk (0.1–2 ms) keep to the timeouts roughly the proportion of a
    /// real one: a vote round is then a few percent of the 10 % random election shift, as on
    /// Tarantool's loopback measurements, not a third of it (which splits votes round after
    /// round). Liveness within 50 election timeouts.
    fn default() -> Options {
        Options {
            nodes: 0,
            pre_vote: false,
            fencing: false,
            replication_timeout: 100_000,
            election_timeout: 500_000,
            synchro_timeout: 500_000,
            delay: (100, 2_000),
            disk_delay: (100, 2_000),
            chaos_time: 6_000_000,
            liveness_bound: 25_000_000,
            trace: false,
            fast_failover: false,
        }
    }
}

impl Options {
    pub fn death_timeout(&self) -> u64 {
        4 * self.replication_timeout
    }
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub nodes: usize,
    pub steps: u64,
    pub writes: u64,
    /// Writes whose client was told "committed".
    pub committed: u64,
    /// Writes whose client got 216 or 217.
    pub rolled_back: u64,
    pub crashes: u64,
    pub partitions: u64,
    /// Terms that had a leader.
    pub leaders: u64,
    pub max_term: u64,
    /// Conflicts of the 2.6.3 shape (see the module doc), each followed by a rebootstrap.
    pub divergences: u64,
    /// Those of them where the discarded row had been reported committed to its client.
    pub acked_divergences: u64,
    /// Writes reported committed to their client while fewer than a quorum of nodes held
    /// them (the others' vclocks covered them as rolled back or NOP'd rows).
    pub under_replicated_acks: u64,
    /// Schedules where, after the heal, no node could win an election by the vclock rule
    /// (so liveness could not be asked of them).
    pub stuck: u64,
    /// Time from the heal to a writable leader known to all that committed a write.
    pub liveness_time: u64,
}

/// A row of the model WAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowBody {
    /// A synchronous transaction (one row), named by its transaction id.
    Data(TxnId),
    Synchro(SynchroRequest),
    /// A row the applier filtered out (2.6.3: rows of an instance deposed by a PROMOTE);
    /// the model remembers which transaction it was.
    Nop(Option<TxnId>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub origin: InstanceId,
    pub lsn: i64,
    pub body: RowBody,
}

/// What travels between two nodes: any of a Raft state, an ack, a piece of the sender's WAL.
#[derive(Debug, Clone, Default)]
struct Packet {
    /// The sender's instance id when it sent this (a rebootstrap gives a node a new one).
    from_id: InstanceId,
    raft: Option<RaftMessage>,
    /// The sender's vclock, and how far it has read the receiver's WAL (epoch, index).
    ack: Option<(Vclock, u64, usize)>,
    /// Rows of the sender's WAL (epoch) from `index` on.
    rows: Option<(u64, usize, Vec<Row>)>,
}

enum Event {
    Deliver {
        from: usize,
        to: usize,
        packet: Box<Packet>,
    },
    Timer {
        node: usize,
        life: u64,
        at: u64,
    },
    Disk {
        node: usize,
        life: u64,
    },
    Heartbeat {
        node: usize,
        life: u64,
    },
    Chaos,
}

/// What a running node holds in memory; lost at a crash.
struct Live {
    raft: Raft,
    limbo: Limbo,
    vclock: Vclock,
    /// Writes whose client waits on this node.
    waiting: HashSet<TxnId>,
    /// Per peer: how far we have read its WAL (its epoch, index).
    read_cursor: Vec<(u64, usize)>,
    /// Per peer: its last acked vclock, and how far it has read our WAL (our epoch).
    peer_vclock: Vec<Option<Vclock>>,
    peer_cursor: Vec<usize>,
    /// Per peer: the leader its last Raft message named (it follows our stream if it is us).
    peer_leader: Vec<InstanceId>,
    /// A take-over of the limbo after winning an election.
    promotion: Option<Promotion>,
    /// The term/vote write in flight.
    persist_pending: Option<(u64, InstanceId)>,
    timer_at: Option<u64>,
    last_status: Option<Status>,
}

struct Node {
    id: InstanceId,
    mode: ElectionMode,
    /// Bumped at every crash, so events of an old life are dropped.
    life: u64,
    // ===== durable =====
    wal: Vec<Row>,
    /// Bumped when the WAL is replaced (rebootstrap): stream positions into it are void.
    wal_epoch: u64,
    durable_term: u64,
    durable_vote: InstanceId,
    // ===== derived from the WAL (recovery recomputes them) =====
    applied: Vec<TxnId>,
    /// Data rows rolled back here, or filtered out by the applier, with the newest PROMOTE
    /// term this node had seen when it did.
    discarded: HashMap<TxnId, u64>,
    /// The same for the rows committed here.
    committed_term: HashMap<TxnId, u64>,
    live: Option<Live>,
}

/// The simulated replica set. Tests drive it directly ([`Cluster::new`] + controls) or
/// through [`run`], which adds random faults and the workload.
pub struct Cluster {
    pub opts: Options,
    pub seed: u64,
    now: u64,
    queue: EventQueue<Event>,
    rng: SmallRng,
    nodes: Vec<Node>,
    quorum: usize,
    blocked: HashSet<(usize, usize)>,
    loss: f64,
    /// Per link: the latest arrival scheduled (links are FIFO).
    link_arrival: Vec<Vec<u64>>,
    /// Per link: since when it is down (cut, or an end crashed); `None` while up.
    link_down_since: Vec<Vec<Option<u64>>>,
    leaders: HashMap<u64, InstanceId>,
    votes: HashMap<(usize, u64), InstanceId>,
    /// Writes a client was told are committed.
    acked: HashSet<TxnId>,
    next_txn: TxnId,
    pending_rebootstraps: Vec<(usize, usize)>,
    /// The id a rebootstrapped node gets next.
    next_id: InstanceId,
    diverged: HashSet<usize>,
    violation: Option<String>,
    trace: Vec<String>,
    chaos_until: u64,
    pub report: Report,
}

impl Cluster {
    /// `n` nodes, all in `modes[i]` (candidates if `modes` is empty), running, no faults.
    pub fn new(n: usize, seed: u64, opts: Options, modes: &[ElectionMode]) -> Cluster {
        let mut c = Cluster {
            seed,
            now: EPOCH,
            queue: EventQueue::default(),
            rng: SmallRng::seed_from_u64(mix(seed)),
            nodes: Vec::with_capacity(n),
            quorum: n / 2 + 1,
            blocked: HashSet::new(),
            loss: 0.0,
            link_arrival: vec![vec![0; n]; n],
            link_down_since: vec![vec![None; n]; n],
            leaders: HashMap::new(),
            votes: HashMap::new(),
            acked: HashSet::new(),
            next_txn: 1,
            pending_rebootstraps: Vec::new(),
            next_id: n as InstanceId + 1,
            diverged: HashSet::new(),
            violation: None,
            trace: Vec::new(),
            chaos_until: 0,
            report: Report {
                nodes: n,
                ..Report::default()
            },
            opts,
        };
        for i in 0..n {
            c.nodes.push(Node {
                id: i as InstanceId + 1,
                mode: modes.get(i).copied().unwrap_or(ElectionMode::Candidate),
                life: 0,
                wal: Vec::new(),
                wal_epoch: 0,
                durable_term: 1,
                durable_vote: 0,
                applied: Vec::new(),
                discarded: HashMap::new(),
                committed_term: HashMap::new(),
                live: None,
            });
        }
        for i in 0..n {
            c.start(i);
        }
        c
    }

    // ===== inspection =====

    pub fn now(&self) -> u64 {
        self.now
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].live.is_some()
    }

    /// Node i's Raft core; panics if it is down (a test bug).
    pub fn raft(&self, i: usize) -> &Raft {
        &self.live(i).raft
    }

    /// Node i's limbo; panics if it is down.
    pub fn limbo(&self, i: usize) -> &Limbo {
        &self.live(i).limbo
    }

    pub fn applied(&self, i: usize) -> &[TxnId] {
        &self.nodes[i].applied
    }

    /// The first violated invariant, if any.
    pub fn violation(&self) -> Option<&str> {
        self.violation.as_deref()
    }

    /// Node i accepts writes: Raft leader, done taking the limbo over, limbo not foreign or frozen.
    pub fn is_writable(&self, i: usize) -> bool {
        self.nodes[i].live.as_ref().is_some_and(|l| {
            l.raft.is_enabled() && l.raft.role() == Role::Leader && l.promotion.is_none() && !l.limbo.is_ro()
        })
    }

    /// The nodes that are writable now.
    pub fn writable(&self) -> Vec<usize> {
        (0..self.len()).filter(|&i| self.is_writable(i)).collect()
    }

    /// The event log (with `Options::trace`).
    pub fn trace(&self) -> &[String] {
        &self.trace
    }

    fn live(&self, i: usize) -> &Live {
        self.nodes[i].live.as_ref().expect("node is running")
    }

    // ===== control =====

    /// Cut the links between a and b, both ways.
    pub fn partition(&mut self, a: usize, b: usize) {
        if a == b {
            return;
        }
        self.blocked.insert((a, b));
        self.blocked.insert((b, a));
        self.update_links();
    }

    /// Cut node i off from everyone.
    pub fn isolate(&mut self, i: usize) {
        for j in 0..self.len() {
            self.partition(i, j);
        }
    }

    /// Remove every partition and the loss.
    pub fn heal(&mut self) {
        self.blocked.clear();
        self.loss = 0.0;
        self.update_links();
        self.log(|| "heal".to_string());
    }

    /// Loss probability of every packet, 0.0..=1.0.
    pub fn set_loss(&mut self, loss: f64) {
        self.loss = loss;
    }

    /// `kill -9` node i.
    pub fn crash(&mut self, i: usize) {
        if self.nodes[i].live.take().is_some() {
            self.nodes[i].life += 1;
            self.report.crashes += 1;
            self.update_links();
            self.log(|| format!("crash {}", i + 1));
            // The kernel closes a killed process's sockets: peers it can reach see their
            // connections to it end.
            let (id, now) = (self.nodes[i].id, self.now);
            for j in 0..self.nodes.len() {
                if j == i || self.blocked.contains(&(i, j)) {
                    continue;
                }
                if let Some(live) = self.nodes[j].live.as_mut() {
                    live.raft.handle_peer_disconnected(id, now);
                    self.drain(j);
                }
            }
        }
    }

    /// Start node i again from its WAL and durable term/vote.
    pub fn restart(&mut self, i: usize) {
        if self.nodes[i].live.is_none() {
            self.start(i);
            self.update_links();
        }
    }

    /// A client writes a synchronous row on node i; returns its transaction id if the node
    /// was writable.
    pub fn client_write(&mut self, i: usize) -> Option<TxnId> {
        if !self.is_writable(i) {
            return None;
        }
        let txn = self.next_txn;
        self.next_txn += 1;
        let id = self.nodes[i].id;
        let live = self.nodes[i].live.as_mut()?;
        if live.limbo.append(txn, id, true).is_err() {
            return None;
        }
        self.report.writes += 1;
        let lsn = live.vclock.get(id) + 1;
        live.waiting.insert(txn);
        self.append_own_row(i, RowBody::Data(txn));
        let now = self.now;
        if let Some(live) = self.nodes[i].live.as_mut() {
            live.limbo.written(txn, lsn, now);
        }
        self.log(|| format!("write {txn} on {} lsn {lsn}", i + 1));
        self.drain(i);
        Some(txn)
    }

    /// `box.ctl.promote()` on node i (manual mode).
    pub fn promote(&mut self, i: usize) {
        let now = self.now;
        if let Some(live) = self.nodes[i].live.as_mut() {
            let _ = live.raft.promote(now);
            self.drain(i);
        }
    }

    /// Whether this txn's client was told "committed".
    pub fn is_acked(&self, txn: TxnId) -> bool {
        self.acked.contains(&txn)
    }

    // ===== running =====

    /// Run until virtual time `until`, or the first violation.
    pub fn run_to(&mut self, until: u64) {
        let mut same_time_steps = 0u32;
        let mut last_at = self.now;
        while self.violation.is_none() {
            let Some(next) = self.queue.next_at() else { break };
            if next > until {
                break;
            }
            let Some((at, event)) = self.queue.pop() else { break };
            if at == last_at {
                same_time_steps += 1;
                if same_time_steps > 200_000 {
                    self.fail(format!("no progress: 200,000 events at one instant {at}"));
                    break;
                }
            } else {
                same_time_steps = 0;
                last_at = at;
            }
            self.now = self.now.max(at);
            self.report.steps += 1;
            self.handle(event);
            self.rebootstrap_diverged();
            self.check_fencing();
        }
        self.now = self.now.max(until);
    }

    pub fn run_for(&mut self, dur: u64) {
        self.run_to(self.now + dur);
    }

    /// Advance in steps of a 50th of a replication timeout until `pred` holds (returns the time it
    /// took) or `max` passes.
    pub fn run_until(&mut self, mut pred: impl FnMut(&Cluster) -> bool, max: u64) -> Option<u64> {
        let start = self.now;
        let step = (self.opts.replication_timeout / 50).max(1);
        loop {
            if self.violation.is_some() {
                return None;
            }
            if pred(self) {
                return Some(self.now - start);
            }
            if self.now - start >= max {
                return None;
            }
            self.run_for(step.min(max - (self.now - start)));
        }
    }

    /// A leader known to every running node, writable, in one term.
    pub fn stable_leader(&self) -> Option<usize> {
        let l = (0..self.len()).find(|&i| self.is_writable(i))?;
        let (id, term) = (self.nodes[l].id, self.raft(l).volatile_term());
        let all_follow = (0..self.len())
            .filter(|&i| self.is_running(i))
            .all(|i| self.raft(i).leader() == id && self.raft(i).volatile_term() == term);
        all_follow.then_some(l)
    }

    /// Node i could win an election now by the vclock rule: running Raft nodes whose vclock
    /// it dominates make a quorum with it.
    pub fn is_electable(&self, i: usize) -> bool {
        let Some(live) = self.nodes[i].live.as_ref() else {
            return false;
        };
        let voters = (0..self.len())
            .filter_map(|j| self.nodes[j].live.as_ref())
            .filter(|l| l.raft.is_enabled() && dominates(&live.vclock, &l.vclock))
            .count();
        voters >= self.quorum
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Deliver { from, to, packet } => self.deliver(from, to, *packet),
            Event::Timer { node, life, at } => {
                let now = self.now;
                let n = &mut self.nodes[node];
                if n.life != life {
                    return;
                }
                let Some(live) = n.live.as_mut().filter(|l| l.timer_at == Some(at)) else {
                    return;
                };
                live.timer_at = None;
                live.raft.handle_timer(now);
                live.limbo.handle_timer(now);
                self.drain(node);
            }
            Event::Disk { node, life } => {
                let now = self.now;
                let n = &mut self.nodes[node];
                if n.life != life {
                    return;
                }
                let Some(live) = n.live.as_mut() else { return };
                let Some((term, vote)) = live.persist_pending.take() else {
                    return;
                };
                if term < n.durable_term {
                    let msg = format!("node {}: durable term {} -> {term}", n.id, n.durable_term);
                    self.fail(msg);
                    return;
                }
                n.durable_term = term;
                n.durable_vote = vote;
                live.raft.persisted(now);
                self.drain(node);
            }
            Event::Heartbeat { node, life } => {
                if self.nodes[node].life != life || self.nodes[node].live.is_none() {
                    return;
                }
                self.heartbeat(node);
                let at = self.now + self.opts.replication_timeout;
                self.push(at, Event::Heartbeat { node, life });
            }
            Event::Chaos => self.chaos(),
        }
    }

    // ===== nodes =====

    /// Boot node i from its durable state: replay the WAL into a fresh limbo, start Raft.
    fn start(&mut self, i: usize) {
        let now = self.now;
        let (n, quorum) = (self.len(), self.quorum);
        let opts = self.opts.clone();
        let node = &mut self.nodes[i];
        node.life += 1;
        let id = node.id;
        let mut limbo = Limbo::new(id, quorum, opts.synchro_timeout);
        let mut vclock = Vclock::new();
        let mut applied = Vec::new();
        let mut discarded = HashMap::new();
        let mut committed_term = HashMap::new();
        let mut error = None;
        for row in &node.wal {
            if row.lsn > vclock.get(row.origin) {
                vclock.follow(row.origin, row.lsn);
            }
            match &row.body {
                RowBody::Data(txn) => {
                    if let Err(e) = limbo.append(*txn, row.origin, true) {
                        error = Some(format!("node {id}: recovery of txn {txn}: {}", e.message));
                    }
                    limbo.assign_lsn(*txn, row.lsn);
                }
                RowBody::Synchro(req) => limbo.apply(req),
                RowBody::Nop(txn) => discarded.extend(txn.map(|t| (t, limbo.promote_greatest_term()))),
            }
            let term = limbo.promote_greatest_term();
            for o in limbo.take_outputs() {
                match o {
                    LimboOutput::Commit(txn) => {
                        applied.push(txn);
                        committed_term.insert(txn, term);
                    }
                    LimboOutput::Rollback { txn, .. } => {
                        discarded.insert(txn, term);
                    }
                    LimboOutput::Write(req) => {
                        error = Some(format!("node {id}: recovery wants to write {req:?}"));
                    }
                }
            }
        }
        if applied != node.applied {
            error = Some(format!(
                "node {id}: recovery applied {:?}, before the crash {:?}",
                applied, node.applied
            ));
        }
        node.discarded = discarded;
        node.committed_term = committed_term;
        let cfg = Config {
            id,
            mode: node.mode,
            election_timeout: opts.election_timeout,
            death_timeout: opts.death_timeout(),
            election_quorum: quorum,
            pre_vote: opts.pre_vote,
            fencing: opts.fencing,
            fast_failover: opts.fast_failover,
        };
        let seed = mix(self.seed ^ mix(i as u64) ^ node.life.rotate_left(32));
        let mut raft = Raft::new(cfg, node.durable_term, node.durable_vote, seed, now);
        raft.set_vclock(&vclock);
        node.live = Some(Live {
            raft,
            limbo,
            vclock,
            waiting: HashSet::new(),
            read_cursor: vec![(0, 0); n],
            peer_vclock: vec![None; n],
            peer_cursor: vec![0; n],
            peer_leader: vec![0; n],
            promotion: None,
            persist_pending: None,
            timer_at: None,
            last_status: None,
        });
        let life = node.life;
        self.log(|| format!("start {id}"));
        if let Some(e) = error {
            self.fail(e);
        }
        // Stagger first heartbeats: nodes don't boot in lockstep.
        let first = now + self.rng.random_range(0..=self.opts.replication_timeout);
        self.push(first, Event::Heartbeat { node: i, life });
        self.drain(i);
    }

    /// Replace node i's WAL with `donor`'s and boot it under a new instance id, as an operator
    /// rebootstraps a node that split from the rest (2.10 stops such a node with
    /// ER_SPLIT_BRAIN): rows of its old id are then another instance's rows, which it
    /// receives like any. It keeps its durable term and vote, so the machine cannot vote
    /// twice in a term.
    fn rebootstrap(&mut self, i: usize, donor: usize) {
        if self.next_id as usize >= VCLOCK_MAX {
            self.fail("out of instance ids for rebootstraps".to_string());
            return;
        }
        self.crash(i);
        self.report.crashes -= 1;
        let wal = self.nodes[donor].wal.clone();
        let applied = self.nodes[donor].applied.clone();
        let new_id = self.next_id;
        self.next_id += 1;
        let node = &mut self.nodes[i];
        let old_id = node.id;
        node.id = new_id;
        node.wal = wal;
        node.applied = applied;
        node.wal_epoch += 1;
        self.diverged.remove(&i);
        self.report.divergences += 1;
        let donor_id = self.nodes[donor].id;
        self.log(|| format!("rebootstrap {old_id} from {donor_id} as id {new_id}"));
        self.restart(i);
    }

    fn rebootstrap_diverged(&mut self) {
        while let Some((victim, donor)) = self.pending_rebootstraps.pop() {
            self.rebootstrap(victim, donor);
        }
    }

    /// Append a row of our own (a write or a synchro decision) to node i's WAL and stream it.
    fn append_own_row(&mut self, i: usize, body: RowBody) {
        let node = &mut self.nodes[i];
        let Some(live) = node.live.as_mut() else { return };
        let lsn = live.vclock.get(node.id) + 1;
        live.vclock.follow(node.id, lsn);
        live.raft.set_vclock(&live.vclock);
        let start = node.wal.len();
        node.wal.push(Row {
            origin: node.id,
            lsn,
            body,
        });
        self.stream(i, start);
    }

    /// Send node i's WAL from `start` to the peers that follow it.
    fn stream(&mut self, i: usize, start: usize) {
        let epoch = self.nodes[i].wal_epoch;
        for j in 0..self.len() {
            if j != i && self.follows(j, i) {
                let rows = self.nodes[i].wal[start..].to_vec();
                self.send(
                    i,
                    j,
                    Packet {
                        rows: Some((epoch, start, rows)),
                        ..Packet::default()
                    },
                );
            }
        }
    }

    /// Node j reads node i's stream: i is the leader as far as i knows, or j said i is its leader.
    fn follows(&self, j: usize, i: usize) -> bool {
        let Some(live) = self.nodes[i].live.as_ref() else {
            return false;
        };
        live.raft.role() == Role::Leader || live.peer_leader[j] == self.nodes[i].id
    }

    fn heartbeat(&mut self, i: usize) {
        let now = self.now;
        let Some(live) = self.nodes[i].live.as_ref() else {
            return;
        };
        let msg = live.raft.message(now);
        self.check_sent(i, &msg);
        for j in 0..self.len() {
            if j == i {
                continue;
            }
            let node = &self.nodes[i];
            let Some(live) = node.live.as_ref() else { return };
            let (epoch, read) = live.read_cursor[j];
            let ack = Some((live.vclock, epoch, read));
            let rows = self.follows(j, i).then(|| {
                let from = live.peer_cursor[j].min(node.wal.len());
                let to = (from + RESEND_BATCH).min(node.wal.len());
                (node.wal_epoch, from, node.wal[from..to].to_vec())
            });
            let packet = Packet {
                raft: Some(msg.clone()),
                ack,
                rows: rows.filter(|(_, _, r)| !r.is_empty()),
                ..Packet::default()
            };
            self.send(i, j, packet);
        }
    }

    fn deliver(&mut self, from: usize, to: usize, packet: Packet) {
        if self.blocked.contains(&(from, to)) || self.nodes[to].live.is_none() {
            return;
        }
        let now = self.now;
        let from_id = packet.from_id;
        let Some(live) = self.nodes[to].live.as_mut() else {
            return;
        };
        live.raft.handle_heartbeat(from_id, now);
        if let Some(msg) = &packet.raft {
            live.peer_leader[from] = msg.leader_id;
            if let Err(e) = live.raft.handle_message(from_id, msg, now) {
                self.fail(format!("node {}: refused {msg:?}: {e}", to + 1));
                return;
            }
        }
        if let Some((vclock, epoch, read)) = packet.ack {
            let own_epoch = self.nodes[to].wal_epoch;
            let id = self.nodes[to].id;
            if let Some(live) = self.nodes[to].live.as_mut() {
                live.peer_vclock[from] = Some(vclock);
                if epoch == own_epoch {
                    live.peer_cursor[from] = read;
                }
                if live.limbo.owner() == id {
                    live.limbo.ack(from_id, vclock.get(id));
                }
            }
        }
        if let Some((epoch, index, rows)) = packet.rows {
            self.receive_rows(to, from, from_id, epoch, index, rows);
        }
        self.drain(to);
    }

    /// The applier: apply `rows` (node `from`'s WAL from `index`) on node i, in order.
    fn receive_rows(&mut self, i: usize, from: usize, from_id: InstanceId, epoch: u64, index: usize, rows: Vec<Row>) {
        let Some(live) = self.nodes[i].live.as_mut() else {
            return;
        };
        if !live.raft.is_source_allowed(from_id) {
            return;
        }
        let cursor = &mut live.read_cursor[from];
        if cursor.0 != epoch {
            *cursor = (epoch, 0);
        }
        if index > cursor.1 {
            // A gap: an earlier packet was lost; the next resend starts at our position.
            return;
        }
        let skip = cursor.1 - index;
        let mut read = cursor.1;
        let wal_start = self.nodes[i].wal.len();
        for row in rows.into_iter().skip(skip) {
            if !self.apply_row(i, row) {
                break;
            }
            read += 1;
        }
        let node = &mut self.nodes[i];
        let Some(live) = node.live.as_mut() else { return };
        live.read_cursor[from].1 = read;
        live.raft.set_vclock(&live.vclock);
        let ack = Packet {
            ack: Some((live.vclock, epoch, read)),
            ..Packet::default()
        };
        self.send(i, from, ack);
        if self.nodes[i].wal.len() > wal_start {
            self.stream(i, wal_start);
        }
    }

    /// Apply one replicated row; false if the applier must stop (an error in Tarantool).
    fn apply_row(&mut self, i: usize, row: Row) -> bool {
        let node = &mut self.nodes[i];
        let Some(live) = node.live.as_mut() else {
            return false;
        };
        if row.lsn <= live.vclock.get(row.origin) {
            return true;
        }
        // 2.6.3's applier_synchro_filter_tx: with Raft on, synchronous rows and decisions of
        // an instance deposed by a newer PROMOTE become NOPs (a PROMOTE itself passes).
        let outdated = live.raft.is_enabled() && live.limbo.is_replica_outdated(row.origin);
        let body = match row.body {
            RowBody::Data(txn) if outdated => RowBody::Nop(Some(txn)),
            RowBody::Synchro(req) if outdated && req.kind != SynchroKind::Promote => RowBody::Nop(None),
            body => body,
        };
        if let RowBody::Data(txn) = body {
            if live.limbo.append(txn, row.origin, true).is_err() {
                return false;
            }
        }
        live.vclock.follow(row.origin, row.lsn);
        match &body {
            RowBody::Data(txn) => live.limbo.assign_lsn(*txn, row.lsn),
            RowBody::Synchro(req) => live.limbo.apply(req),
            RowBody::Nop(txn) => {
                // Discarded here as surely as by a ROLLBACK.
                let term = live.limbo.promote_greatest_term();
                node.discarded.extend(txn.map(|t| (t, term)));
            }
        }
        node.wal.push(Row {
            origin: row.origin,
            lsn: row.lsn,
            body,
        });
        // Commits and rollbacks are taken in order, before the next row changes the limbo.
        self.drain_limbo(i);
        true
    }

    /// Carry out everything node i's core and limbo asked for, until they are quiet; then
    /// move its promotion on, and set its timer.
    fn drain(&mut self, i: usize) {
        for _ in 0..10_000 {
            let Some(live) = self.nodes[i].live.as_mut() else {
                return;
            };
            let raft_out = live.raft.take_outputs();
            let had_raft = !raft_out.is_empty();
            for o in raft_out {
                self.on_raft_output(i, o);
            }
            let had_limbo = self.drain_limbo(i);
            let promoted = self.advance_promotion(i);
            if !had_raft && !had_limbo && !promoted {
                self.schedule_timer(i);
                return;
            }
        }
        self.fail(format!("node {}: outputs never settle", i + 1));
    }

    fn drain_limbo(&mut self, i: usize) -> bool {
        let mut any = false;
        loop {
            let Some(live) = self.nodes[i].live.as_mut() else {
                return any;
            };
            let out = live.limbo.take_outputs();
            if out.is_empty() {
                return any;
            }
            any = true;
            for o in out {
                self.on_limbo_output(i, o);
            }
        }
    }

    fn on_raft_output(&mut self, i: usize, o: Output) {
        match o {
            Output::Persist { term, vote } => {
                let life = self.nodes[i].life;
                if let Some(live) = self.nodes[i].live.as_mut() {
                    live.persist_pending = Some((term, vote));
                }
                let (lo, hi) = self.opts.disk_delay;
                let at = self.now + self.rng.random_range(lo..=hi);
                self.push(at, Event::Disk { node: i, life });
            }
            Output::Broadcast(msg) => {
                self.check_sent(i, &msg);
                for j in 0..self.len() {
                    if j != i {
                        let packet = Packet {
                            raft: Some((*msg).clone()),
                            ..Packet::default()
                        };
                        self.send(i, j, packet);
                    }
                }
            }
            Output::Update(status) => self.on_status(i, status),
        }
    }

    fn on_status(&mut self, i: usize, st: Status) {
        let id = self.nodes[i].id;
        let fencing = self.opts.fencing;
        let Some(live) = self.nodes[i].live.as_mut() else {
            return;
        };
        let prev = live.last_status.replace(st);
        if prev.is_some_and(|p| p.term > st.term) {
            let msg = format!(
                "node {id}: term went down {} -> {}",
                prev.map_or(0, |p| p.term),
                st.term
            );
            self.fail(msg);
            return;
        }
        let became_leader = st.role == Role::Leader && prev.is_none_or(|p| p.role != Role::Leader || p.term != st.term);
        if st.role != Role::Leader {
            live.promotion = None;
        } else if became_leader {
            live.promotion = live.limbo.begin_promotion(st.term);
        }
        // Fencing's limbo half (2.10): a queue owner that is no longer sure it leads stops
        // deciding, so it cannot contradict the next leader's PROMOTE.
        if fencing && live.limbo.owner() == id && (st.fenced || st.term > live.limbo.promote_greatest_term()) {
            live.limbo.freeze();
        }
        self.report.max_term = self.report.max_term.max(st.term);
        if became_leader {
            self.log(|| format!("leader {id} term {}", st.term));
            match self.leaders.insert(st.term, id) {
                Some(other) if other != id => {
                    self.fail(format!("two leaders in term {}: {other} and {id}", st.term));
                }
                Some(_) => {}
                None => self.report.leaders += 1,
            }
        }
    }

    fn on_limbo_output(&mut self, i: usize, o: LimboOutput) {
        match o {
            LimboOutput::Write(req) => {
                self.log(|| {
                    format!(
                        "{} writes {} of {} lsn {}",
                        i + 1,
                        req.kind.name(),
                        req.replica_id,
                        req.lsn
                    )
                });
                self.append_own_row(i, RowBody::Synchro(req));
                if let Some(live) = self.nodes[i].live.as_mut() {
                    live.limbo.apply(&req);
                }
                if req.kind == SynchroKind::Promote {
                    self.drain_limbo(i);
                    self.check_leader_complete(i);
                }
            }
            LimboOutput::Commit(txn) => self.on_commit(i, txn),
            LimboOutput::Rollback { txn, error } => {
                let term = self.promote_term_of(i);
                self.nodes[i].discarded.insert(txn, term);
                let waited = self.nodes[i].live.as_mut().is_some_and(|l| l.waiting.remove(&txn));
                if waited {
                    self.report.rolled_back += 1;
                    if error.code != ER_SYNC_QUORUM_TIMEOUT && error.code != ER_SYNC_ROLLBACK {
                        self.fail(format!("txn {txn}: unexpected error {}", error.message));
                    }
                }
                self.log(|| format!("{} rolls back {txn} ({})", i + 1, error.code));
            }
        }
    }

    /// The newest PROMOTE term node i has seen: the "epoch" of its limbo decisions.
    fn promote_term_of(&self, i: usize) -> u64 {
        self.nodes[i]
            .live
            .as_ref()
            .map_or(0, |l| l.limbo.promote_greatest_term())
    }

    fn on_commit(&mut self, i: usize, txn: TxnId) {
        let pos = self.nodes[i].applied.len();
        let term = self.promote_term_of(i);
        self.nodes[i].applied.push(txn);
        self.nodes[i].committed_term.insert(txn, term);
        let waited = self.nodes[i].live.as_mut().is_some_and(|l| l.waiting.remove(&txn));
        if waited {
            self.acked.insert(txn);
            self.report.committed += 1;
            if self.holders(txn) < self.quorum {
                self.report.under_replicated_acks += 1;
                self.log(|| format!("txn {txn} acknowledged while held by fewer than a quorum"));
            }
        }
        if self.diverged.contains(&i) {
            return;
        }
        // Invariant 4: every other applied log agrees at this position.
        for j in 0..self.len() {
            if j == i || self.diverged.contains(&j) {
                continue;
            }
            let Some(&other) = self.nodes[j].applied.get(pos) else {
                continue;
            };
            if other == txn {
                continue;
            }
            let (i_id, j_id) = (i + 1, j + 1);
            if self.nodes[i].discarded.contains_key(&other) {
                self.diverge(i, j, pos, other);
            } else if self.nodes[j].discarded.contains_key(&txn) {
                self.diverge(j, i, pos, txn);
            } else {
                self.fail(format!(
                    "applied logs differ at {pos}: node {i_id} has txn {txn}, node {j_id} txn {other}"
                ));
                return;
            }
        }
    }

    /// Node `victim` discarded `txn` (rolled it back, or its applier filtered it out), which
    /// `donor` committed at `pos`: a 2.6.3 split (see the module doc).
    fn diverge(&mut self, victim: usize, donor: usize, pos: usize, txn: TxnId) {
        if self.diverged.contains(&victim) || self.diverged.contains(&donor) {
            return;
        }
        // Copy the most advanced log that committed the row: `donor` may just lag.
        let donor = (0..self.len())
            .filter(|&k| k != victim && !self.diverged.contains(&k))
            .filter(|&k| self.nodes[k].applied.get(pos) == Some(&txn))
            .max_by_key(|&k| (self.nodes[k].applied.len(), self.nodes[k].wal.len()))
            .unwrap_or(donor);
        // The operator keeps acknowledged writes: when the discarding side holds some the
        // other lacks, it is the other side that is rebuilt (losing only unacknowledged rows).
        let (victim, donor) = match (self.acked_lost_by(victim, donor), self.acked_lost_by(donor, victim)) {
            (None, _) => (victim, donor),
            (Some(_), None) => (donor, victim),
            (Some(a), Some(b)) => {
                self.fail(format!(
                    "split with acknowledged writes on both sides: node {} alone has {a:?}, node {} alone has {b:?}",
                    self.nodes[victim].id, self.nodes[donor].id
                ));
                return;
            }
        };
        self.diverged.insert(victim);
        if self.acked.contains(&txn) {
            self.report.acked_divergences += 1;
        }
        let discarded_in = self.nodes[victim].discarded.get(&txn).copied().unwrap_or(0);
        let committed_in = self.nodes[donor].committed_term.get(&txn).copied().unwrap_or(0);
        self.log(|| {
            format!(
                "divergence at {pos}: txn {txn} (discarded under PROMOTE term {discarded_in}, committed under term \
                 {committed_in}); rebuild {} from {}",
                victim + 1,
                donor + 1
            )
        });
        self.pending_rebootstraps.push((victim, donor));
    }

    /// Acknowledged writes in `victim`'s applied log that `donor` does not hold: what
    /// rebuilding `victim` from `donor` would lose.
    fn acked_lost_by(&self, victim: usize, donor: usize) -> Option<Vec<TxnId>> {
        let lost: Vec<TxnId> = self.nodes[victim]
            .applied
            .iter()
            .copied()
            .filter(|&t| self.acked.contains(&t) && !self.holds(donor, t))
            .collect();
        (!lost.is_empty()).then_some(lost)
    }

    /// Node k holds `txn` as a live row: committed, or written and waiting, not rolled back
    /// or filtered out.
    fn holds(&self, k: usize, txn: TxnId) -> bool {
        let n = &self.nodes[k];
        !n.discarded.contains_key(&txn)
            && (n.applied.contains(&txn) || n.wal.iter().any(|r| r.body == RowBody::Data(txn)))
    }

    /// How many nodes hold `txn` as a live row.
    fn holders(&self, txn: TxnId) -> usize {
        (0..self.len()).filter(|&k| self.holds(k, txn)).count()
    }

    /// Invariant 5: a leader of the newest term that took the limbo over holds every
    /// acknowledged write. (A leader of an older term, elected late by delayed votes, may
    /// lack rows a newer term committed; it cannot commit anything itself, as the quorum
    /// that moved on no longer applies its rows.)
    fn check_leader_complete(&mut self, i: usize) {
        let term = self.nodes[i].live.as_ref().map_or(0, |l| l.raft.volatile_term());
        if term < self.report.max_term {
            return;
        }
        let applied: HashSet<TxnId> = self.nodes[i].applied.iter().copied().collect();
        let mut missing: Vec<TxnId> = self.acked.iter().copied().filter(|t| !applied.contains(t)).collect();
        if !missing.is_empty() {
            missing.sort_unstable();
            self.fail(format!("node {} promoted without acknowledged txns {missing:?}", i + 1));
        }
    }

    /// box_promote's wait: once a quorum holds the old queue, write the PROMOTE.
    fn advance_promotion(&mut self, i: usize) -> bool {
        let Some(live) = self.nodes[i].live.as_mut() else {
            return false;
        };
        let Some(p) = live.promotion else { return false };
        if live.raft.role() != Role::Leader {
            live.promotion = None;
            return false;
        }
        let acked = usize::from(p.is_held_by(&live.vclock))
            + live.peer_vclock.iter().flatten().filter(|v| p.is_held_by(v)).count();
        match live.limbo.finish_promotion(&p, acked) {
            Ok(true) => {
                live.promotion = None;
                true
            }
            Ok(false) => false,
            Err(_) => {
                // The queue grew meanwhile: 2.6.3 retries with the new end.
                live.promotion = live.limbo.begin_promotion(p.term);
                true
            }
        }
    }

    fn schedule_timer(&mut self, i: usize) {
        let life = self.nodes[i].life;
        let now = self.now;
        let Some(live) = self.nodes[i].live.as_mut() else {
            return;
        };
        let at = match (live.raft.next_deadline(), live.limbo.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let Some(at) = at.map(|a| a.max(now)) else {
            live.timer_at = None;
            return;
        };
        if live.timer_at != Some(at) {
            live.timer_at = Some(at);
            self.push(at, Event::Timer { node: i, life, at });
        }
    }

    // ===== invariants =====

    /// Invariant 3: what node i sends is durable, and one vote per term.
    fn check_sent(&mut self, i: usize, msg: &RaftMessage) {
        let node = &self.nodes[i];
        let id = node.id;
        if (msg.term, msg.vote) != (node.durable_term, node.durable_vote) {
            let durable = (node.durable_term, node.durable_vote);
            self.fail(format!(
                "node {id} sent term/vote {:?}, durable {durable:?}",
                (msg.term, msg.vote)
            ));
            return;
        }
        if matches!(msg.state, Some(Role::Candidate | Role::Leader)) && msg.vote != id {
            self.fail(format!("node {id} is {:?} with a vote for {}", msg.state, msg.vote));
            return;
        }
        if msg.vote != 0 {
            let prev = *self.votes.entry((i, msg.term)).or_insert(msg.vote);
            if prev != msg.vote {
                self.fail(format!("node {id} voted {prev} and {} in term {}", msg.vote, msg.term));
            }
        }
    }

    /// Invariant 7: with fencing, a writable node was linked to a quorum within the death
    /// timeout (plus a packet's flight, which may land after the cut).
    fn check_fencing(&mut self) {
        if !self.opts.fencing {
            return;
        }
        let limit = self.opts.death_timeout() + self.opts.delay.1;
        for i in self.writable() {
            let linked = (0..self.len())
                .filter(|&j| j != i)
                .filter(|&j| self.link_down_since[i][j].is_none_or(|t| self.now - t <= limit))
                .count();
            if linked + 1 < self.quorum {
                self.fail(format!("node {} writable while cut off from the quorum", i + 1));
                return;
            }
        }
    }

    fn update_links(&mut self) {
        let now = self.now;
        for i in 0..self.len() {
            for j in 0..self.len() {
                let up = self.nodes[i].live.is_some()
                    && self.nodes[j].live.is_some()
                    && !self.blocked.contains(&(i, j))
                    && !self.blocked.contains(&(j, i));
                let slot = &mut self.link_down_since[i][j];
                match (up, *slot) {
                    (true, _) => *slot = None,
                    (false, None) => *slot = Some(now),
                    (false, Some(_)) => {}
                }
            }
        }
    }

    // ===== plumbing =====

    fn send(&mut self, from: usize, to: usize, mut packet: Packet) {
        if self.loss > 0.0 && self.rng.random::<f64>() < self.loss {
            return;
        }
        packet.from_id = self.nodes[from].id;
        let (lo, hi) = self.opts.delay;
        let at = (self.now + self.rng.random_range(lo..=hi)).max(self.link_arrival[from][to]);
        self.link_arrival[from][to] = at;
        self.push(
            at,
            Event::Deliver {
                from,
                to,
                packet: Box::new(packet),
            },
        );
    }

    fn push(&mut self, at: u64, event: Event) {
        self.queue.push(at, event);
    }

    fn fail(&mut self, msg: String) {
        if self.violation.is_none() {
            self.log(|| format!("VIOLATION: {msg}"));
            self.violation = Some(msg);
        }
    }

    fn log(&mut self, line: impl FnOnce() -> String) {
        if self.opts.trace {
            let t = (self.now - EPOCH) as f64 / 1000.0;
            let line = format!("{t:10.3} ms  {}", line());
            self.trace.push(line);
        }
    }

    // ===== chaos =====

    /// One chaos tick: maybe a fault, maybe a repair, writes on the writable nodes.
    fn chaos(&mut self) {
        let n = self.len();
        let r = self.rng.random::<f64>();
        if r < 0.02 {
            // A random split into two sides.
            let mask = self.rng.random_range(1..(1u32 << n) - 1);
            let (a, b): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| mask & (1 << i) != 0);
            self.log(|| {
                format!(
                    "partition {:?} | {:?}",
                    a.iter().map(|i| i + 1).collect::<Vec<_>>(),
                    b.iter().map(|i| i + 1).collect::<Vec<_>>()
                )
            });
            for &x in &a {
                for &y in &b {
                    self.partition(x, y);
                }
            }
            self.report.partitions += 1;
        } else if r < 0.03 {
            let i = self.rng.random_range(0..n);
            self.log(|| format!("isolate {}", i + 1));
            self.isolate(i);
            self.report.partitions += 1;
        } else if r < 0.05 {
            self.heal();
        } else if r < 0.065 {
            let i = self.rng.random_range(0..n);
            self.crash(i);
        } else if r < 0.075 {
            let loss = [0.0, 0.05, 0.2, 0.5][self.rng.random_range(0..4)];
            self.log(|| format!("loss {loss}"));
            self.set_loss(loss);
        } else if r < 0.085 {
            let i = self.rng.random_range(0..n);
            if self.nodes[i].mode == ElectionMode::Manual && self.is_running(i) {
                self.log(|| format!("promote {}", i + 1));
                self.promote(i);
            }
        }
        if self.rng.random::<f64>() < 0.15 {
            let down: Vec<usize> = (0..n).filter(|&i| !self.is_running(i)).collect();
            if !down.is_empty() {
                let i = down[self.rng.random_range(0..down.len())];
                self.restart(i);
            }
        }
        for i in self.writable() {
            if self.rng.random::<f64>() < 0.5 {
                self.client_write(i);
            }
        }
        if self.now + CHAOS_TICK < self.chaos_until {
            self.push(self.now + CHAOS_TICK, Event::Chaos);
        }
    }
}

/// One seeded schedule: random size and modes, `opts.chaos_time` of faults and writes, then
/// the liveness phase. `Err` names the violated invariant (with the trace when kept).
pub fn run(seed: u64, opts: &Options) -> Result<Report, String> {
    let mut rng = SmallRng::seed_from_u64(mix(seed ^ 0x5eed));
    let n = if opts.nodes == 0 {
        rng.random_range(3..=5)
    } else {
        opts.nodes
    };
    // Mostly candidates; some voters and a manual node. A quorum of candidates keeps a
    // leader electable however the votes fall.
    let modes: Vec<ElectionMode> = (0..n)
        .map(|i| {
            if i < n / 2 + 1 {
                return ElectionMode::Candidate;
            }
            match rng.random_range(0..10) {
                0..=5 => ElectionMode::Candidate,
                6..=8 => ElectionMode::Voter,
                _ => ElectionMode::Manual,
            }
        })
        .collect();
    let mut c = Cluster::new(n, seed, opts.clone(), &modes);
    c.chaos_until = c.now + opts.chaos_time;
    c.push(c.now + CHAOS_TICK, Event::Chaos);
    c.run_to(c.chaos_until);

    if c.violation.is_none() {
        liveness(&mut c);
    }
    match c.violation.take() {
        None => Ok(c.report),
        Some(v) => {
            let mut msg = format!("seed {seed}, {n} nodes {modes:?}: {v}");
            if opts.trace {
                let tail = c.trace.len().saturating_sub(300);
                for line in &c.trace[tail..] {
                    let _ = write!(msg, "\n  {line}");
                }
            }
            Err(msg)
        }
    }
}

/// Heal, restart everything, and require a leader known to all that commits a write, then
/// convergence of every applied log to the leader's, and no acknowledged write missing.
///
/// An operator helps as one would: when no candidate-mode node can win by the vclock rule
/// but a manual one can, it calls `box.ctl.promote()` there. When no node at all can win
/// (writes on both sides of old partitions left vclocks no node dominates for a quorum),
/// 2.6.3 cannot elect anyone: the schedule counts as stuck and liveness is not asked of it.
fn liveness(c: &mut Cluster) {
    c.heal();
    for i in 0..c.len() {
        c.restart(i);
    }
    let (start, bound) = (c.now, c.opts.liveness_bound);
    let patience = 10 * c.opts.election_timeout;
    let mut committed = false;
    while c.violation.is_none() && c.now < start + bound {
        let left = start + bound - c.now;
        if c.run_until(|c| c.stable_leader().is_some(), left.min(patience))
            .is_some()
        {
            let Some(l) = c.stable_leader() else { continue };
            let Some(txn) = c.client_write(l) else { continue };
            let left = start + bound - c.now;
            if c.run_until(|c| c.is_acked(txn), left.min(4 * c.opts.synchro_timeout))
                .is_some()
            {
                c.report.liveness_time = c.now - start;
                committed = true;
                break;
            }
            continue;
        }
        if (0..c.len()).any(|i| c.nodes[i].mode == ElectionMode::Candidate && c.is_electable(i)) {
            continue;
        }
        match (0..c.len()).find(|&i| c.nodes[i].mode == ElectionMode::Manual && c.is_electable(i)) {
            Some(m) => {
                c.log(|| format!("operator: promote {}", m + 1));
                c.promote(m);
            }
            None => {
                c.report.stuck += 1;
                c.log(|| "stuck: no node can win by the vclock rule".to_string());
                return;
            }
        }
    }
    if c.violation.is_some() {
        return;
    }
    if !committed {
        let states: Vec<String> = (0..c.len())
            .map(|i| {
                let r = c.raft(i);
                format!(
                    "{}:{}/{}/t{}/v{}/l{}/vclock{}",
                    i + 1,
                    r.mode().name(),
                    r.role().name(),
                    r.volatile_term(),
                    r.volatile_vote(),
                    r.leader(),
                    c.live(i).vclock
                )
            })
            .collect();
        c.fail(format!(
            "no writable leader committed within {} ms of the heal: {}",
            bound / 1000,
            states.join(" ")
        ));
        return;
    }
    let converged = |c: &Cluster| {
        c.stable_leader()
            .is_some_and(|l| (0..c.len()).all(|i| c.nodes[i].applied == c.nodes[l].applied))
    };
    if c.run_until(converged, bound).is_none() {
        let logs: Vec<String> = (0..c.len())
            .map(|i| {
                let a = &c.nodes[i].applied;
                let tail = &a[a.len().saturating_sub(4)..];
                format!(
                    "{}: {} rows, ..{tail:?} limbo {}",
                    c.nodes[i].id,
                    a.len(),
                    c.live(i).limbo.len()
                )
            })
            .collect();
        c.fail(format!(
            "applied logs did not converge after the heal: {}",
            logs.join("; ")
        ));
        return;
    }
    if let Some(l) = c.stable_leader() {
        let final_log: HashSet<TxnId> = c.nodes[l].applied.iter().copied().collect();
        let mut lost: Vec<TxnId> = c.acked.iter().copied().filter(|t| !final_log.contains(t)).collect();
        if !lost.is_empty() {
            lost.sort_unstable();
            c.fail(format!("acknowledged txns lost: {lost:?}"));
        }
    }
}

/// `a >= b` in every component but 0: a node with vclock `a` gets a vote from one with `b`.
fn dominates(a: &Vclock, b: &Vclock) -> bool {
    (1..VCLOCK_MAX as u32).all(|i| a.get(i) >= b.get(i))
}

#[cfg(test)]
#[path = "sim_tests.rs"]
mod tests;
