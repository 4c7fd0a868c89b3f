//! Raft leader election as Tarantool 2.6.3 runs it, as a pure state machine.
//!
//! # What it does
//!
//! One node of a replica set keeps a *term* and a *vote*; candidates ask for votes, the one
//! that collects `election_quorum` of them in a term is the leader and the only writable
//! node. This follows `src/lib/raft/raft.c` of Tarantool 2.6.3 rule for rule (spec `box.md`
//! §4.3), with Tarantool's two deviations from the paper:
//!
//! * the log position is a *vclock*, one LSN per instance, so a vote goes to a candidate
//!   whose vclock is `>=` ours in every component (component 0, local rows, is ignored);
//! * there is no request/response pair: every node broadcasts its whole state
//!   `{term, vote, state, vclock}` and a candidate counts the broadcasts that name it.
//!
//! # Shape
//!
//! Inputs are method calls with the current time (µs): [`Raft::handle_message`] (a peer's
//! RAFT row), [`Raft::handle_heartbeat`] (any row or heartbeat from a peer: it proves the
//! peer alive), [`Raft::handle_peer_disconnected`], [`Raft::handle_timer`],
//! [`Raft::persisted`] (the driver's WAL write finished), [`Raft::set_vclock`] and the
//! `set_*` configuration calls. Outputs are drained with [`Raft::take_outputs`]:
//!
//! * [`Output::Persist`]: write `{term, vote}` as a RAFT row to the WAL, then call
//!   [`Raft::persisted`]. At most one is outstanding. **Nothing the node sends carries a term
//!   or vote that is not yet durable**: a broadcast is held back while a write is in flight,
//!   and a node becomes candidate or leader only after its own vote is on disk. This is
//!   Tarantool's "volatile" vs persisted state: decisions (whom to vote for, which messages
//!   are stale) use the volatile values at once, the network only ever sees persisted ones.
//! * [`Output::Broadcast`]: send this state to every peer.
//! * [`Output::Update`]: the visible status changed (role, term, vote, leader, ...).
//!
//! The one timer is read with [`Raft::next_deadline`]; time and the election timeout's
//! random shift are inputs (a seeded RNG owned by the core), so the seeded simulator in
//! `super::sim` replays any run exactly.
//!
//! # Options beyond 2.6.3 (off by default)
//!
//! * **pre-vote** (`Config::pre_vote`): a candidate does not start an election while a peer
//!   heard within the death timeout reports that it still sees the leader, nor while it hears
//!   fewer than a quorum of peers. So a node cut off from the leader alone, or from everyone,
//!   does not bump the term and depose a healthy leader when it comes back. Messages carry
//!   `leader_id` and `is_leader_seen` for it, as Tarantool 2.10+ does (RAFT body keys 4, 5).
//! * **fencing** (`Config::fencing`): a leader that has not heard, for the death timeout,
//!   from enough peers in its own term to make a quorum with itself resigns: it becomes a
//!   read-only follower in the same term ([`Status::fenced`]). A partitioned old leader thus
//!   stops taking writes within the death timeout, before the majority elects a new one.
//!
//! 2.6.3 has neither: a leader cut off from the quorum stays writable (captured, spec §4.3),
//! and any node that times out bumps the term.

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::box_::errcode::ER_UNSUPPORTED;
use crate::box_::error::ClientError;
use crate::box_::wal::vclock::{Vclock, VCLOCK_MAX};
use crate::client_error;

/// An instance id (`box.info.id`), 1..31; 0 means "none".
pub type InstanceId = u32;

/// The election timeout is stretched by a random part of up to this fraction of itself, so
/// that candidates which timed out together do not split the vote again. Tarantool's
/// `RAFT_RANDOM_ELECTION_FACTOR`.
const RANDOM_ELECTION_FACTOR_PERCENT: u64 = 10;

/// µs per second, for configuration in seconds.
pub const SECOND: u64 = 1_000_000;

/// The role of a node (`box.info.election.state`); the numbers are the wire values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Can't write; follows a leader, or voted for another node, or may not be a candidate.
    Follower = 1,
    /// Voted for itself in an on-going election and waits for the outcome.
    Candidate = 2,
    /// Won the election of its term; the only writable node.
    Leader = 3,
}

impl Role {
    /// The wire value (RAFT body key 2).
    pub fn code(self) -> u32 {
        self as u32
    }

    /// Decodes a wire value; 0 and unknown values are `None`.
    pub fn from_code(code: u64) -> Option<Role> {
        match code {
            1 => Some(Role::Follower),
            2 => Some(Role::Candidate),
            3 => Some(Role::Leader),
            _ => None,
        }
    }

    /// As `box.info.election.state` shows it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
    }
}

/// `box.cfg.election_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionMode {
    /// Raft is stopped: terms are still persisted, but it neither votes nor restricts writes.
    Off,
    /// Votes, never becomes a leader, never writable.
    Voter,
    /// Becomes a candidate only through [`Raft::promote`] (`box.ctl.promote()`, 2.6.3).
    Manual,
    /// Starts elections when there is no leader.
    Candidate,
}

impl ElectionMode {
    /// Parses the option's text; `None` for anything else.
    pub fn parse(text: &str) -> Option<ElectionMode> {
        match text {
            "off" => Some(ElectionMode::Off),
            "voter" => Some(ElectionMode::Voter),
            "manual" => Some(ElectionMode::Manual),
            "candidate" => Some(ElectionMode::Candidate),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ElectionMode::Off => "off",
            ElectionMode::Voter => "voter",
            ElectionMode::Manual => "manual",
            ElectionMode::Candidate => "candidate",
        }
    }
}

/// A RAFT row's body (IPROTO type 30, local group): what one node tells the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftMessage {
    /// Key 0. Never 0 in a valid message.
    pub term: u64,
    /// Key 1: whom the sender voted for in `term`, 0 for nobody.
    pub vote: InstanceId,
    /// Key 2; `None` (omitted, 0) is invalid from the network.
    pub state: Option<Role>,
    /// Key 3: only candidates send it, and they must.
    pub vclock: Option<Vclock>,
    /// Key 4 (Tarantool 2.10+; node sends it, 2.6.3 ignores it): the sender's leader, 0 if none.
    pub leader_id: InstanceId,
    /// Key 5 (Tarantool 2.10+): the sender hears its leader (within the death timeout).
    pub is_leader_seen: bool,
}

/// Why a message from the network was refused (Tarantool's `RaftError` texts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageError {
    /// Term 0 or a missing state. Doesn't affect state.
    InvalidTermOrState,
    /// A candidate message that votes for another node or lacks a vclock. Doesn't affect state.
    BadCandidate,
}

impl std::fmt::Display for MessageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MessageError::InvalidTermOrState => "Invalid term or state",
            MessageError::BadCandidate => "Candidate should always vote for self and provide its vclock",
        })
    }
}

impl std::error::Error for MessageError {}

/// Configuration. Times are µs.
#[derive(Debug, Clone)]
pub struct Config {
    /// This node's instance id, 1..31.
    pub id: InstanceId,
    pub mode: ElectionMode,
    /// `box.cfg.election_timeout`: how long an election round lasts before the next one
    /// (plus a random 0..10 %). 2.6.3's default is 5 s.
    pub election_timeout: u64,
    /// How long a follower waits without hearing the leader before it counts it dead:
    /// 4 × `replication_timeout` in Tarantool (`replication_disconnect_timeout()`), 4 s by default.
    pub death_timeout: u64,
    /// Votes needed to win: min(`replication_synchro_quorum`, max(registered replicas, 1)).
    pub election_quorum: usize,
    /// See the module doc. Off in 2.6.3.
    pub pre_vote: bool,
    /// See the module doc. Off in 2.6.3.
    pub fencing: bool,
    /// A candidate that loses its connection to the leader waits one replication_timeout
    /// (a quarter of the death timeout: time for a reconnect) instead of the rest of the
    /// death timeout. Not in 2.6.3, which waits the death timeout out.
    pub fast_failover: bool,
}

impl Config {
    /// Tarantool 2.6.3's defaults: mode off, election timeout 5 s, death timeout 4 × 1 s,
    /// quorum 1, no pre-vote, no fencing.
    pub fn new(id: InstanceId) -> Config {
        Config {
            id,
            mode: ElectionMode::Off,
            election_timeout: 5 * SECOND,
            death_timeout: 4 * SECOND,
            election_quorum: 1,
            pre_vote: false,
            fencing: false,
            fast_failover: false,
        }
    }
}

/// The visible state (`box.info.election` and what box needs to decide writability).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub role: Role,
    /// The volatile term: may be one WAL write ahead of the persisted one (as 2.6.3 shows it).
    pub term: u64,
    /// The volatile vote.
    pub vote: InstanceId,
    pub leader: InstanceId,
    pub is_enabled: bool,
    /// Raft forbids writes: enabled and not the leader (`raft_is_ro`).
    pub is_ro: bool,
    /// The leader resigned in this term because it lost the quorum (fencing).
    pub fenced: bool,
}

/// What the state machine asks its driver to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Make `{term, vote}` durable (a RAFT row in the WAL and snapshot), then call
    /// [`Raft::persisted`]. Until then the node acts as a follower and sends nothing new.
    Persist { term: u64, vote: InstanceId },
    /// Send to every peer. (Boxed: a vclock is 264 bytes, the other outputs are small.)
    Broadcast(Box<RaftMessage>),
    /// The status changed.
    Update(Status),
}

/// What the node knows of one peer.
#[derive(Debug, Clone, Copy, Default)]
struct Peer {
    /// When anything was last heard from it (µs); `None` if never, or since it disconnected.
    last_heard: Option<u64>,
    /// The term of its latest RAFT message.
    term: u64,
    /// Its latest message said it sees its leader (meaningful when `term` is ours).
    sees_leader: bool,
}

/// The one timer, and what its expiry means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimerKind {
    /// A follower candidate waits for the known leader to go silent.
    LeaderDead,
    /// A candidate waits for a leader to show up after start or restart.
    LeaderFound,
    /// An election round is on; at expiry a new round starts.
    ElectionEnd,
}

#[derive(Debug, Clone, Copy)]
struct Timer {
    kind: TimerKind,
    /// When it was armed and for how long, so that a configuration change can move it.
    started: u64,
    duration: u64,
}

impl Timer {
    fn deadline(&self) -> u64 {
        self.started.saturating_add(self.duration)
    }
}

/// One node's Raft state machine. See the module doc.
pub struct Raft {
    id: InstanceId,
    mode: ElectionMode,
    /// Raft is on (mode is not `off`).
    is_enabled: bool,
    /// The configuration allows this node to be a candidate.
    is_cfg_candidate: bool,
    /// It may start elections now: enabled and allowed (or promoted, in manual mode).
    is_candidate: bool,
    role: Role,
    /// The leader of the volatile term, 0 if unknown.
    leader: InstanceId,

    // ===== term and vote =====
    // The volatile pair drives decisions at once; the persisted pair is what the WAL holds
    // and the only one sent out. They differ only while a write is in progress.
    volatile_term: u64,
    volatile_vote: InstanceId,
    term: u64,
    vote: InstanceId,
    /// The state machine waits for a WAL write; until it ends the node is a follower with
    /// no timer (Tarantool's `is_write_in_progress`).
    is_write_in_progress: bool,
    /// The `Persist` handed to the driver and not yet confirmed.
    persist_in_flight: Option<(u64, InstanceId)>,
    /// A broadcast is due once nothing is in flight.
    is_broadcast_scheduled: bool,

    // ===== election =====
    /// Bit i: instance i voted for us in this term (valid in candidate state).
    vote_mask: u32,
    vote_count: usize,
    election_quorum: usize,
    election_timeout: u64,
    death_timeout: u64,
    /// Our vclock, kept current by the driver.
    vclock: Vclock,
    timer: Option<Timer>,
    rng: SmallRng,

    // ===== liveness of others =====
    peers: [Peer; VCLOCK_MAX],
    /// When the leader was last heard (for `leader_idle` and pre-vote).
    leader_last_seen: u64,
    pre_vote: bool,
    /// An election is due but pre-vote holds it back; retried on every input.
    is_election_held: bool,
    fencing: bool,
    fast_failover: bool,
    /// Resigned in this term by fencing.
    fenced: bool,
    /// `promote()` made this manual node a candidate until some leader is known.
    is_promoting: bool,

    outputs: Vec<Output>,
    last_status: Option<Status>,
    /// The last `is_leader_seen` sent, to broadcast when it flips.
    last_seen_sent: bool,
}

impl Raft {
    /// A node whose WAL and snapshot held `{term, vote}` (`term` 1 and `vote` 0 for a new
    /// one), configured by `cfg`, at time `now`. `seed` drives the random election shift.
    /// Raft starts right away if the mode is not `off` (recovery is the caller's business,
    /// as in Tarantool, where Raft is enabled after it).
    pub fn new(cfg: Config, term: u64, vote: InstanceId, seed: u64, now: u64) -> Raft {
        let term = term.max(1);
        let mut raft = Raft {
            id: cfg.id,
            mode: ElectionMode::Off,
            is_enabled: false,
            is_cfg_candidate: false,
            is_candidate: false,
            role: Role::Follower,
            leader: 0,
            volatile_term: term,
            volatile_vote: vote,
            term,
            vote,
            is_write_in_progress: false,
            persist_in_flight: None,
            is_broadcast_scheduled: false,
            vote_mask: 0,
            vote_count: 0,
            election_quorum: cfg.election_quorum.max(1),
            election_timeout: cfg.election_timeout,
            death_timeout: cfg.death_timeout,
            vclock: Vclock::new(),
            timer: None,
            rng: SmallRng::seed_from_u64(seed),
            peers: [Peer::default(); VCLOCK_MAX],
            leader_last_seen: now,
            pre_vote: cfg.pre_vote,
            is_election_held: false,
            fencing: cfg.fencing,
            fast_failover: cfg.fast_failover,
            fenced: false,
            is_promoting: false,
            outputs: Vec::new(),
            last_status: None,
            last_seen_sent: false,
        };
        raft.set_mode(cfg.mode, now);
        raft
    }

    // ===== reading =====

    pub fn id(&self) -> InstanceId {
        self.id
    }

    pub fn mode(&self) -> ElectionMode {
        self.mode
    }

    pub fn status(&self) -> Status {
        Status {
            role: self.role,
            term: self.volatile_term,
            vote: self.volatile_vote,
            leader: self.leader,
            is_enabled: self.is_enabled,
            is_ro: self.is_ro(),
            fenced: self.fenced,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn leader(&self) -> InstanceId {
        self.leader
    }

    /// The volatile term (what decisions use; `box.info.election.term`).
    pub fn volatile_term(&self) -> u64 {
        self.volatile_term
    }

    /// The volatile vote (`box.info.election.vote`).
    pub fn volatile_vote(&self) -> InstanceId {
        self.volatile_vote
    }

    /// The persisted term and vote (what a snapshot stores, `raft_checkpoint_local`).
    pub fn persisted_state(&self) -> (u64, InstanceId) {
        (self.term, self.vote)
    }

    pub fn is_enabled(&self) -> bool {
        self.is_enabled
    }

    /// Raft forbids writes: enabled and not the leader. (box adds `read_only`, orphan status
    /// and a foreign limbo.)
    pub fn is_ro(&self) -> bool {
        self.is_enabled && self.role != Role::Leader
    }

    /// Rows from `source` may be applied: Raft is off, or `source` is the leader.
    pub fn is_source_allowed(&self, source: InstanceId) -> bool {
        !self.is_enabled || (source != 0 && self.leader == source)
    }

    /// Time since the leader was last heard (`box.info.election.leader_idle`); 0 on the
    /// leader itself, `None` when no leader is known.
    pub fn leader_idle(&self, now: u64) -> Option<u64> {
        match self.leader {
            0 => None,
            l if l == self.id => Some(0),
            _ => Some(now.saturating_sub(self.leader_last_seen)),
        }
    }

    /// The election quorum in force.
    pub fn election_quorum(&self) -> usize {
        self.election_quorum
    }

    /// Votes collected in the current candidacy (`box.info.election.vote_count` in later versions).
    pub fn vote_count(&self) -> usize {
        self.vote_count
    }

    /// The state to tell peers now (`raft_checkpoint_remote`): persisted term and vote only;
    /// the vclock only from a candidate. Drivers may resend it at any time (on reconnect, or
    /// periodically over a lossy transport): processing it twice changes nothing.
    pub fn message(&self, now: u64) -> RaftMessage {
        let in_persisted_term = self.term == self.volatile_term;
        RaftMessage {
            term: self.term,
            vote: self.vote,
            state: Some(self.role),
            vclock: (self.role == Role::Candidate).then_some(self.vclock),
            leader_id: if in_persisted_term { self.leader } else { 0 },
            is_leader_seen: in_persisted_term && self.is_leader_seen(now),
        }
    }

    /// When [`Raft::handle_timer`] is due next.
    pub fn next_deadline(&self) -> Option<u64> {
        let mut at = self.timer.map(|t| t.deadline());
        let mut consider = |d: Option<u64>| {
            if let Some(d) = d {
                at = Some(at.map_or(d, |a| a.min(d)));
            }
        };
        consider(self.fence_deadline());
        consider(self.leader_unseen_deadline());
        at
    }

    pub fn has_outputs(&self) -> bool {
        !self.outputs.is_empty()
    }

    /// Drains the outputs, oldest first.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    // ===== configuration =====

    /// `box.cfg{election_mode = ...}`: candidate-ness first, then on/off, as 2.6.3 applies it.
    pub fn set_mode(&mut self, mode: ElectionMode, now: u64) {
        self.mode = mode;
        if mode != ElectionMode::Manual {
            self.is_promoting = false;
        }
        self.cfg_is_candidate(mode == ElectionMode::Candidate, now);
        self.cfg_is_enabled(mode != ElectionMode::Off, now);
        self.flush(now);
    }

    /// `box.cfg{election_timeout = ...}` (µs). A running election round keeps its start and
    /// ends at start + the new timeout (the random part is dropped), as in 2.6.3.
    pub fn set_election_timeout(&mut self, timeout: u64, now: u64) {
        if timeout == self.election_timeout {
            return;
        }
        self.election_timeout = timeout;
        if let Some(t) = self.timer.filter(|t| t.kind == TimerKind::ElectionEnd) {
            self.arm(t.kind, t.started, timeout.max(now.saturating_sub(t.started)));
        }
        self.flush(now);
    }

    /// The death timeout (µs), 4 × `replication_timeout`. A running leader-death wait keeps
    /// its start.
    pub fn set_death_timeout(&mut self, timeout: u64, now: u64) {
        self.death_timeout = timeout;
        if let Some(t) = self.timer.filter(|t| t.kind == TimerKind::LeaderDead) {
            self.arm(t.kind, t.started, timeout.max(now.saturating_sub(t.started)));
        }
        self.flush(now);
    }

    /// The election quorum; lowering it may make a candidate the leader at once.
    pub fn set_election_quorum(&mut self, quorum: usize, now: u64) {
        self.election_quorum = quorum.max(1);
        if self.role == Role::Candidate && self.vote_count >= self.election_quorum {
            self.become_leader(now);
        }
        self.flush(now);
    }

    pub fn set_pre_vote(&mut self, on: bool, now: u64) {
        self.pre_vote = on;
        self.retry_held_election(now);
        self.flush(now);
    }

    pub fn set_fast_failover(&mut self, on: bool) {
        self.fast_failover = on;
    }

    pub fn set_fencing(&mut self, on: bool, now: u64) {
        self.fencing = on;
        self.flush(now);
    }

    /// The local vclock changed (rows were written or applied). No outputs.
    pub fn set_vclock(&mut self, vclock: &Vclock) {
        self.vclock = *vclock;
    }

    /// `box.ctl.promote()`'s Raft part (2.6.3): in manual mode, become a candidate and start
    /// a new term now, without waiting for the old leader to die; candidacy ends again as
    /// soon as some leader is known. The caller then checks who won (`leader()`): itself, or
    /// `ER_INTERFERING_PROMOTE`. In candidate mode it succeeds only on the leader; a voter or
    /// a node with Raft off gets 2.6.3's errors (off: promote is box's business, no election).
    pub fn promote(&mut self, now: u64) -> Result<(), ClientError> {
        match self.mode {
            ElectionMode::Off => Ok(()),
            ElectionMode::Voter => Err(client_error!(
                ER_UNSUPPORTED,
                "election_mode='voter'",
                "manual elections"
            )),
            ElectionMode::Candidate if self.role == Role::Leader => Ok(()),
            ElectionMode::Candidate => Err(client_error!(
                ER_UNSUPPORTED,
                "election_mode='candidate'",
                "manual elections"
            )),
            ElectionMode::Manual => {
                if self.role == Role::Leader {
                    return Ok(());
                }
                self.is_promoting = true;
                self.start_candidate(now);
                self.new_term(now);
                self.flush(now);
                Ok(())
            }
        }
    }

    // ===== inputs =====

    /// A RAFT message from instance `source` (never ourselves). Invalid messages are refused
    /// with Tarantool's texts and change nothing.
    pub fn handle_message(&mut self, source: InstanceId, msg: &RaftMessage, now: u64) -> Result<(), MessageError> {
        let Some(state) = msg.state else {
            return Err(MessageError::InvalidTermOrState);
        };
        if msg.term == 0 {
            return Err(MessageError::InvalidTermOrState);
        }
        if state == Role::Candidate && (msg.vote != source || msg.vclock.is_none()) {
            return Err(MessageError::BadCandidate);
        }
        if source == 0 || source == self.id || source as usize >= VCLOCK_MAX {
            // An anonymous replica, our own state echoed back, or an id no vclock can hold.
            return Ok(());
        }
        let peer = &mut self.peers[source as usize];
        peer.last_heard = Some(now);
        if msg.term >= peer.term {
            peer.term = msg.term;
            peer.sees_leader = msg.is_leader_seen;
        }
        self.process_message(source, state, msg, now);
        self.retry_held_election(now);
        self.flush(now);
        Ok(())
    }

    /// Anything at all (a row, a heartbeat, an ack) arrived from `source`: it is alive. A
    /// candidate following it as the leader restarts the death wait (`raft_process_heartbeat`).
    pub fn handle_heartbeat(&mut self, source: InstanceId, now: u64) {
        if source == 0 || source == self.id || source as usize >= VCLOCK_MAX {
            return;
        }
        self.peers[source as usize].last_heard = Some(now);
        if source == self.leader {
            self.leader_last_seen = now;
        }
        if self.is_candidate
            && self.role != Role::Leader
            && self.leader == source
            && !self.is_write_in_progress
            && self.timer.is_some_and(|t| t.kind == TimerKind::LeaderDead)
        {
            self.wait_leader_dead(now);
        }
        self.retry_held_election(now);
        self.flush(now);
    }

    /// The connection to `source` broke: it no longer counts as heard (pre-vote, fencing).
    pub fn handle_peer_disconnected(&mut self, source: InstanceId, now: u64) {
        if let Some(peer) = self.peers.get_mut(source as usize) {
            peer.last_heard = None;
        }
        if self.fast_failover && source != 0 && source != self.id && source == self.leader {
            // The leader is not seen any more (pre-vote witnesses learn it from our next
            // broadcast), and a candidate gives a reconnect one replication_timeout.
            self.leader_last_seen = now.saturating_sub(self.death_timeout);
            let grace = self.death_timeout / 4;
            if self.is_candidate
                && self.role != Role::Leader
                && !self.is_write_in_progress
                && self
                    .timer
                    .is_some_and(|t| t.kind == TimerKind::LeaderDead && t.deadline() > now + grace)
            {
                self.arm(TimerKind::LeaderDead, now, grace);
            }
        }
        self.retry_held_election(now);
        self.flush(now);
    }

    /// Call at (or after) [`Raft::next_deadline`].
    pub fn handle_timer(&mut self, now: u64) {
        if let Some(t) = self.timer.filter(|t| t.deadline() <= now) {
            self.timer = None;
            match t.kind {
                // 2.6.3 has one callback for all three: start a new election.
                TimerKind::LeaderDead | TimerKind::LeaderFound | TimerKind::ElectionEnd => {
                    self.election_update(now);
                }
            }
        }
        // Fencing and leader_unseen_deadline: flush resigns, or broadcasts the flip.
        self.flush(now);
    }

    /// The last [`Output::Persist`] is durable.
    pub fn persisted(&mut self, now: u64) {
        let Some((term, vote)) = self.persist_in_flight.take() else {
            return;
        };
        debug_assert!(term >= self.term);
        self.term = term;
        self.vote = vote;
        // Persisted state is what peers see, and it changed.
        self.is_broadcast_scheduled = true;
        if self.is_fully_on_disk() {
            self.end_dump(now);
        }
        self.flush(now);
    }

    // ===== the state machine (raft_sm_* of 2.6.3) =====

    fn process_message(&mut self, source: InstanceId, state: Role, msg: &RaftMessage, now: u64) {
        if msg.term < self.volatile_term {
            // Outdated: the sender will learn our term from our broadcasts.
            return;
        }
        if msg.term > self.volatile_term {
            self.schedule_new_term(msg.term, now);
        }
        // A vote request, a vote reply, or an old vote still being broadcast.
        if msg.vote != 0 {
            match self.role {
                Role::Follower | Role::Leader => {
                    if self.is_enabled
                        && self.leader == 0
                        && msg.vote != self.id
                        && state == Role::Candidate
                        && self.volatile_vote == 0
                        && msg.vclock.as_ref().is_some_and(|v| self.can_vote_for(v))
                    {
                        self.schedule_new_vote(msg.vote);
                    }
                }
                Role::Candidate => {
                    // A vote for a competitor changes nothing; a vote for us counts once.
                    if msg.vote == self.id && self.vote_mask & (1 << source) == 0 {
                        self.vote_mask |= 1 << source;
                        self.vote_count += 1;
                        if self.vote_count >= self.election_quorum {
                            self.become_leader(now);
                        }
                    }
                }
            }
        }
        if state != Role::Leader {
            if source == self.leader {
                // The leader resigned (mode change, fencing, restart).
                self.leader = 0;
                if self.is_candidate && !self.is_write_in_progress {
                    self.election_update(now);
                }
            }
            return;
        }
        if source == self.leader {
            return;
        }
        if self.leader != 0 {
            // A second leader in one term can only be a bug elsewhere; 2.6.3 logs it and
            // keeps the first.
            return;
        }
        self.follow_leader(source, now);
    }

    /// A vote may go to a candidate whose vclock is >= ours in every component but 0 (the
    /// local rows, which differ on every node): Raft's "log at least as up-to-date".
    fn can_vote_for(&self, candidate: &Vclock) -> bool {
        (1..VCLOCK_MAX as u32).all(|i| candidate.get(i) >= self.vclock.get(i))
    }

    fn is_fully_on_disk(&self) -> bool {
        self.volatile_term == self.term && self.volatile_vote == self.vote
    }

    /// What to do once term and vote are on disk.
    fn end_dump(&mut self, now: u64) {
        self.is_write_in_progress = false;
        if !self.is_candidate {
            // A voter only votes; it watches nothing.
        } else if self.leader != 0 {
            self.wait_leader_dead(now);
        } else if self.vote == self.id {
            if self.election_quorum == 1 {
                self.become_leader(now);
            } else {
                self.become_candidate(now);
            }
        } else if self.vote != 0 {
            // Voted for another node: give it a round to win.
            self.wait_election_end(now);
        } else {
            // A new term with no leader and no vote yet: stand in it.
            self.schedule_new_vote(self.id);
        }
    }

    fn pause_and_dump(&mut self) {
        if self.is_write_in_progress {
            return;
        }
        self.timer = None;
        self.is_write_in_progress = true;
    }

    fn become_leader(&mut self, now: u64) {
        debug_assert!(self.role != Role::Leader && !self.is_write_in_progress);
        self.role = Role::Leader;
        self.leader = self.id;
        self.leader_last_seen = now;
        self.timer = None;
        self.is_election_held = false;
        self.is_broadcast_scheduled = true;
    }

    fn follow_leader(&mut self, leader: InstanceId, now: u64) {
        self.role = Role::Follower;
        self.leader = leader;
        self.leader_last_seen = now;
        self.is_election_held = false;
        if !self.is_write_in_progress && self.is_candidate {
            self.wait_leader_dead(now);
        }
        self.is_broadcast_scheduled = true;
    }

    fn become_candidate(&mut self, now: u64) {
        self.role = Role::Candidate;
        self.vote_count = 1;
        self.vote_mask = 1 << self.id;
        self.wait_election_end(now);
        self.is_broadcast_scheduled = true;
    }

    fn schedule_new_term(&mut self, term: u64, now: u64) {
        debug_assert!(term > self.volatile_term);
        self.volatile_term = term;
        // A new term is a new Raft state: no vote, no leader, a follower until on disk.
        self.volatile_vote = 0;
        self.leader = 0;
        self.leader_last_seen = now;
        self.role = Role::Follower;
        self.vote_count = 0;
        self.vote_mask = 0;
        self.fenced = false;
        self.is_election_held = false;
        self.pause_and_dump();
        self.is_broadcast_scheduled = true;
    }

    fn schedule_new_vote(&mut self, vote: InstanceId) {
        debug_assert!(self.volatile_vote == 0 && self.leader == 0);
        self.volatile_vote = vote;
        self.pause_and_dump();
    }

    /// Term + 1 and a vote for self, in one WAL write; candidate once it is durable.
    fn schedule_new_election(&mut self, now: u64) {
        debug_assert!(self.is_fully_on_disk());
        self.schedule_new_term(self.term + 1, now);
        self.schedule_new_vote(self.id);
    }

    /// The timer fired or the leader resigned: start an election, unless pre-vote says a
    /// leader is still seen or too few peers are heard (then retry on every input, with
    /// the death timeout as a backstop).
    fn election_update(&mut self, now: u64) {
        if !self.is_candidate || self.is_write_in_progress || self.role == Role::Leader {
            return;
        }
        if self.pre_vote && !self.may_start_election(now) {
            self.is_election_held = true;
            self.arm(TimerKind::LeaderFound, now, self.death_timeout);
            return;
        }
        self.is_election_held = false;
        self.schedule_new_election(now);
    }

    fn retry_held_election(&mut self, now: u64) {
        if self.is_election_held && (!self.pre_vote || self.may_start_election(now)) {
            self.is_election_held = false;
            self.timer = None;
            self.election_update(now);
        }
    }

    /// Pre-vote's two conditions: no fresh peer reports seeing the leader of our term, and a
    /// quorum (with us) is heard within the death timeout.
    fn may_start_election(&self, now: u64) -> bool {
        let mut heard = 1;
        for (id, peer) in self.peers.iter().enumerate() {
            if id as InstanceId == self.id || !self.is_fresh(peer, now) {
                continue;
            }
            heard += 1;
            if peer.term == self.volatile_term && peer.sees_leader {
                return false;
            }
        }
        heard >= self.election_quorum
    }

    fn is_fresh(&self, peer: &Peer, now: u64) -> bool {
        peer.last_heard
            .is_some_and(|t| now < t.saturating_add(self.death_timeout))
    }

    /// We hear our leader (we are it, or heard it within the death timeout).
    fn is_leader_seen(&self, now: u64) -> bool {
        match self.leader {
            0 => false,
            l if l == self.id => true,
            _ => now < self.leader_last_seen.saturating_add(self.death_timeout),
        }
    }

    /// With pre-vote, when our view of the leader goes stale we broadcast it at once, so that
    /// peers waiting for every witness to give up need not wait for our next resend.
    fn leader_unseen_deadline(&self) -> Option<u64> {
        (self.pre_vote && self.last_seen_sent && self.leader != self.id)
            .then(|| self.leader_last_seen.saturating_add(self.death_timeout))
    }

    fn wait_leader_dead(&mut self, now: u64) {
        self.arm(TimerKind::LeaderDead, now, self.death_timeout);
    }

    fn wait_leader_found(&mut self, now: u64) {
        self.arm(TimerKind::LeaderFound, now, self.death_timeout);
    }

    fn wait_election_end(&mut self, now: u64) {
        let timeout = self.election_timeout + self.random_election_shift();
        self.arm(TimerKind::ElectionEnd, now, timeout);
    }

    fn arm(&mut self, kind: TimerKind, started: u64, duration: u64) {
        self.timer = Some(Timer {
            kind,
            started,
            duration,
        });
    }

    /// 0..=10 % of the election timeout, in whole milliseconds as 2.6.3 draws it.
    fn random_election_shift(&mut self) -> u64 {
        let max_ms = (self.election_timeout * RANDOM_ELECTION_FACTOR_PERCENT / 100 / 1000).max(1);
        self.rng.random_range(0..=max_ms) * 1000
    }

    fn cfg_is_enabled(&mut self, enabled: bool, now: u64) {
        if enabled == self.is_enabled {
            return;
        }
        if enabled {
            self.sm_start(now);
        } else {
            self.sm_stop();
        }
    }

    fn sm_start(&mut self, now: u64) {
        self.is_enabled = true;
        self.is_candidate = self.is_cfg_candidate;
        if self.is_write_in_progress || !self.is_candidate {
            // Frozen until the write ends; or a voter, which waits for nothing.
        } else if self.leader != 0 {
            self.wait_leader_dead(now);
        } else {
            // Probably a restart: give a live leader time to say so before disturbing it.
            self.wait_leader_found(now);
        }
        // Our term may be the highest around; peers ignore our votes until they learn it.
        self.is_broadcast_scheduled = true;
    }

    fn sm_stop(&mut self) {
        self.is_enabled = false;
        self.is_candidate = false;
        self.is_election_held = false;
        if self.role == Role::Leader {
            self.leader = 0;
        }
        self.role = Role::Follower;
        self.timer = None;
        self.is_broadcast_scheduled = true;
    }

    fn cfg_is_candidate(&mut self, candidate: bool, now: u64) {
        self.is_cfg_candidate = candidate;
        if candidate && self.is_enabled {
            self.start_candidate(now);
        } else {
            self.stop_candidate(true);
        }
    }

    fn start_candidate(&mut self, now: u64) {
        if self.is_candidate {
            return;
        }
        self.is_candidate = true;
        if self.role == Role::Leader || self.is_write_in_progress {
            // Still the leader (manual mode), or frozen until the write ends.
        } else if self.leader != 0 {
            self.wait_leader_dead(now);
        } else {
            self.wait_leader_found(now);
        }
    }

    /// Stop standing in elections; a leader steps down only if `demote`.
    fn stop_candidate(&mut self, demote: bool) {
        if !self.is_candidate && self.role != Role::Leader {
            return;
        }
        self.is_candidate = false;
        self.is_election_held = false;
        if self.role != Role::Leader {
            self.timer = None;
        }
        if self.role != Role::Follower {
            if self.role == Role::Leader {
                if !demote {
                    return;
                }
                self.leader = 0;
            }
            self.role = Role::Follower;
            self.is_broadcast_scheduled = true;
        }
    }

    /// `raft_new_term`: bump the term; used by promote to start an election now.
    fn new_term(&mut self, now: u64) {
        if self.is_enabled {
            self.schedule_new_term(self.volatile_term + 1, now);
        }
    }

    // ===== fencing =====

    /// When the leader may next lose its quorum: the moment the (quorum − 1)-th most recently
    /// heard peer of our term goes stale. `None` unless a fencing leader needs peers.
    fn fence_deadline(&self) -> Option<u64> {
        if !self.fencing || self.role != Role::Leader || self.election_quorum <= 1 {
            return None;
        }
        let mut heard: Vec<u64> = self
            .peers
            .iter()
            .enumerate()
            .filter(|(id, p)| *id as InstanceId != self.id && p.term == self.term)
            .filter_map(|(_, p)| p.last_heard)
            .collect();
        let needed = self.election_quorum - 1;
        if heard.len() < needed {
            return Some(0);
        }
        heard.sort_unstable_by(|a, b| b.cmp(a));
        Some(heard[needed - 1].saturating_add(self.death_timeout))
    }

    fn has_quorum_contact(&self, now: u64) -> bool {
        let heard = self
            .peers
            .iter()
            .enumerate()
            .filter(|(id, p)| *id as InstanceId != self.id && p.term == self.term && self.is_fresh(p, now))
            .count();
        heard + 1 >= self.election_quorum
    }

    /// Fencing: the leader lost its quorum; it becomes a read-only follower in its term and,
    /// if a candidate, waits as after a restart before it stands again.
    fn resign(&mut self, now: u64) {
        if self.role != Role::Leader {
            return;
        }
        self.role = Role::Follower;
        self.leader = 0;
        self.fenced = true;
        self.is_broadcast_scheduled = true;
        if self.is_candidate {
            self.wait_leader_found(now);
        }
    }

    // ===== outputs =====

    /// End of every input: hand the pending write, then (once nothing is in flight) the
    /// broadcast, then the new status to the driver.
    fn flush(&mut self, now: u64) {
        if self.is_promoting && self.leader != 0 {
            // promote() waited for "some leader"; manual mode stops standing, a leader stays.
            self.is_promoting = false;
            if self.mode == ElectionMode::Manual {
                self.stop_candidate(false);
            }
        }
        if self.is_write_in_progress && self.persist_in_flight.is_none() {
            let pair = (self.volatile_term, self.volatile_vote);
            self.persist_in_flight = Some(pair);
            self.outputs.push(Output::Persist {
                term: pair.0,
                vote: pair.1,
            });
        }
        if self.fence_deadline().is_some_and(|d| d <= now) && !self.has_quorum_contact(now) {
            // Also right at the election: votes gathered over a long round may come from peers
            // that went silent since; such a leader has no quorum to lead.
            self.resign(now);
        }
        if self.is_write_in_progress && self.persist_in_flight.is_none() && self.is_fully_on_disk() {
            // Nothing left to write (cannot happen: every dump follows a change).
            self.end_dump(now);
        }
        let seen = self.is_leader_seen(now);
        if self.pre_vote && seen != self.last_seen_sent {
            // Sent below, or once the write in flight ends; either way peers will hear it.
            self.is_broadcast_scheduled = true;
            self.last_seen_sent = seen;
        }
        if self.is_broadcast_scheduled && self.persist_in_flight.is_none() {
            self.is_broadcast_scheduled = false;
            let msg = self.message(now);
            self.last_seen_sent = msg.is_leader_seen;
            self.outputs.push(Output::Broadcast(Box::new(msg)));
        }
        let status = self.status();
        if self.last_status != Some(status) {
            self.last_status = Some(status);
            self.outputs.push(Output::Update(status));
        }
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
