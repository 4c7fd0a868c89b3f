//! The SWIM protocol as a pure state machine, the way Tarantool 2.6 runs it.
//!
//! # What it is
//!
//! SWIM (Das, Gupta, Motivala, 2002) keeps a weakly consistent member table over UDP with
//! three components that share one packet:
//!
//! * **failure detection**: each step pings one member; no ack after a timeout counts as a
//!   miss, two misses make it *suspected* (and two other members are asked to ping it for
//!   us, *indirect pings*), three more make it *dead*, two more with GC on delete it;
//! * **dissemination**: every change of a member is queued and piggybacked on pings and
//!   acks for `ceil(log2 N) + 1` steps, so it reaches everyone in O(log N) rounds;
//! * **anti-entropy** (Tarantool's addition): every packet also carries a random slice of
//!   the table, which is how a newcomer that knows one peer learns the rest.
//!
//! # Shape
//!
//! [`Swim`] owns no socket, timer or clock. Inputs are [`Swim::handle_packet`] (a decoded
//! [`Packet`] and the time), [`Swim::handle_timer`] and the API calls behind Lua
//! (`add_member`, `set_payload`, ...). Outputs are drained: [`Swim::take_outgoing`]
//! (packets with their destination), [`Swim::take_events`] (batched member events) and
//! [`Swim::next_deadline`] (when to call `handle_timer` next). Time is `u64` microseconds
//! of any monotonic clock the driver likes; randomness comes from an owned generator seeded
//! by the caller. So the same seed and the same inputs give the same outputs, which is what
//! `crate::sim` relies on.
//!
//! # What it follows
//!
//! Tarantool 2.6.0's rules as written down in `spec/swim.md` §2: members keyed by UUID,
//! rounds (a Fisher–Yates shuffle per round instead of the paper's random pick per step),
//! the incarnation `{generation, version}`, the TTDs, the ack-wait heap checked every ack
//! timeout, immediate re-pings, routed indirect pings and acks, refutation, "left" via quit,
//! and packets filled up to 1440 bytes with the exact sizes of Tarantool's encoder, so a
//! mixed cluster of `node` and Tarantool instances sees the same packets.
//!
//! # Where it deviates, and why
//!
//! * A send "completes" the moment it is emitted: the driver owns the socket, so the core
//!   cannot wait for it. Tarantool's per-member "task busy" rule becomes: at most one
//!   undrained ack per member in the outbox.
//! * A member we believe alive that gossip calls *suspected* is pinged at once instead of
//!   when our round reaches it ([`Swim`]'s `verify_suspicion`). The rules are Tarantool's
//!   (the count restarts at the status change; three expired pings make it dead; an ack
//!   makes it alive), only the first ping comes earlier: every member checks a suspect in
//!   parallel, which takes a real failure to *dead* everywhere sooner (simulated, 100
//!   members at heartbeat and ack timeout 0.1 s, mean of 20 seeds: 0.96 s instead of
//!   1.14 s), and a live suspect hears of the suspicion sooner and refutes it. On the wire
//!   it is an ordinary ping.
//! * News is pushed (`news.rs`, on unless `push_news` is off): a suspicion or a death this
//!   instance decided from its own missed acks, while its record is otherwise clean, goes at
//!   once to a few members (a suspicion) or to all (a death) in dissemination-only packets,
//!   and so does a refutation of a suspicion of itself. The rules stay Tarantool's; a death
//!   is seen everywhere about 0.5 s after the first ping to the dead member instead of that
//!   plus the spreading (simulated at the benchmark's settings: 0.61 s instead of 0.94 s).
//! * A ping that the peer's host refuses (ICMP port unreachable, [`Swim::handle_refused`],
//!   on unless `count_refusals` is off) is counted as missed when the refusal comes rather
//!   than at its deadline; the next ping still waits for the deadline. The rules stay
//!   Tarantool's; a crashed process on a live host is seen dead about 0.3 s after the first
//!   ping at the benchmark's settings instead of 0.5 s.
//! * A direct ping at an equal incarnation does not revive a *left* member: a left member
//!   has quit, and only a delayed datagram can still carry its old incarnation.
//! * Records with a zero address or an oversized payload are skipped (counted in
//!   [`Stats::dropped_bad_records`]); Tarantool's decoder rejects them earlier, but the core
//!   must not trust its caller either.
//! * **Lifeguard** (Dadgar et al., 2018), off by default so the default behaviour stays
//!   Tarantool's, two independent switches in [`Lifeguard`]:
//!   - *local health*: a 0..=8 score that grows when our own pings go unanswered or we
//!     must refute a suspicion of ourselves, and shrinks on every ack. Round steps and ack
//!     deadlines are stretched by `1 + score`, so an overloaded or badly connected member
//!     slows down instead of accusing healthy peers;
//!   - *dynamic suspicion*: a suspected member needs `NO_ACKS_TO_DEAD × 3` expired pings
//!     to be declared dead instead of `NO_ACKS_TO_DEAD`; each distinct peer that gossips the
//!     same suspicion shortens it logarithmically, down to the Tarantool value after three
//!     confirmations. Pings to a suspected member carry its own record first ("buddy
//!     system"), so it learns of the suspicion and refutes it at once.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use uuid::Uuid;

use super::member::{
    ceil_log2, event, incarnation_bits, prefetch, prefetch_all, GcMode, Member, MemberEvent, MemberId, MemberView,
};
use super::member_index::MemberIndex;
use super::news::{MissLog, CLEAN_WINDOW_HEARTBEATS, PUSH_FANOUT};
use super::payloads::Payloads;
use super::proto::{
    self, Body, FailureDetection, FailureDetectionKind, Incarnation, MemberRecord, Meta, Packet, Route, Status,
    MAX_PACKET_SIZE, MAX_PAYLOAD_SIZE,
};

/// Expired pings of an alive member before it becomes suspected. One miss is too easily a
/// lost datagram; Tarantool takes two.
pub const NO_ACKS_TO_SUSPECT: u32 = 2;
/// Expired pings of a suspected member before it becomes dead. The paper declares death
/// after one round of indirect pings; Tarantool finds that too little and waits for three.
pub const NO_ACKS_TO_DEAD: u32 = 3;
/// Expired pings of a dead member before it is deleted (GC on, status TTD 0). The paper
/// deletes at once; waiting lets the dead status spread and gives the member a chance to
/// refute it.
pub const NO_ACKS_TO_GC: u32 = 2;
/// Helpers asked to ping a suspected member. Nothing special in the value: two paths that
/// avoid our own link are enough to tell "the member is down" from "our link is lossy".
pub const INDIRECT_PING_COUNT: usize = 2;

/// Default step period, µs (1 s, spec §0). Nothing special in the value.
pub const HEARTBEAT_RATE_DEFAULT: u64 = 1_000_000;
/// Default ack timeout, µs (30 s, spec §0). Nothing special in the value.
pub const ACK_TIMEOUT_DEFAULT: u64 = 30_000_000;
/// Lifeguard: the highest local health score. Memberlist's default; at 8 the member runs 9×
/// slower, which is already as good as silent.
pub const LIFEGUARD_MAX_HEALTH: u32 = 8;
/// Lifeguard: how much longer an unconfirmed suspicion lasts than Tarantool's
/// `NO_ACKS_TO_DEAD`. The paper's β = 6 is in time; with one re-ping per expiry, 3× already
/// cuts a false death under 20 % loss by a factor of about 10^3.
pub const LIFEGUARD_SUSPICION_MULT: u32 = 3;
/// Lifeguard: independent confirmations that bring the suspicion down to the minimum. The
/// paper's K = 3.
pub const LIFEGUARD_CONFIRMATIONS: usize = 3;

/// Probes sent to an address that gossip names for an unknown member before waiting for
/// the next gossip about it. Tarantool probes again on every mention, which during a join is
/// several times per ack timeout; node sends one probe per address and ack timeout, so a
/// lost probe or a lost answer would otherwise wait for a random anti-entropy slice to name
/// the member again (a few percent of packets in a 1,000-member cluster). In the 1,000-member
/// simulated join, answers lost to full receive buffers left hundreds of one-sided pairs (B
/// knows A, A never heard B's ack) that took 200 more rounds to find each other.
pub const PROBE_ATTEMPTS: u32 = 3;

/// Records of a received packet that are prefetched and hashed before any is applied: all
/// of a packet from Tarantool's encoder (1440 bytes, at least 52 per record) and then some.
const PREFETCHED_RECORDS: usize = 32;

/// The biggest member table [`Swim::prefetch_state`] loads whole: 256 entries (about 14
/// KiB), what L1 can hold beside the rest. Bigger tables load only the entries a packet
/// names.
const WARMED_TABLE_BYTES: usize = 256 * std::mem::size_of::<Member>();

/// Batched events whose index is kept allocated between drains; a bigger one is freed.
const EVENT_INDEX_KEPT: usize = 64;

/// A probe for an unknown member waiting for its answer.
#[derive(Debug, Clone, Copy)]
struct Probe {
    /// When the answer is due.
    due: u64,
    /// Probes sent so far.
    attempts: u32,
}

/// Lifeguard extensions; both off by default (plain Tarantool 2.6 behaviour).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lifeguard {
    /// Local health multiplier on round period and ack deadlines.
    pub local_health: bool,
    /// Confirmation-driven suspicion length, plus the buddy record.
    pub dynamic_suspicion: bool,
}

impl Lifeguard {
    pub const ON: Lifeguard = Lifeguard {
        local_health: true,
        dynamic_suspicion: true,
    };
}

/// Everything a new instance needs (the first `cfg` plus the hidden `generation`).
#[derive(Debug, Clone)]
pub struct Config {
    pub uuid: Uuid,
    /// The bound address. With port 0 pass the requested address here and the real one to
    /// [`Swim::set_address`] afterwards: that bumps the version as Tarantool does.
    pub addr: SocketAddrV4,
    pub generation: u64,
    /// Step period, µs.
    pub heartbeat_rate: u64,
    /// Ack timeout, µs.
    pub ack_timeout: u64,
    pub gc_mode: GcMode,
    pub lifeguard: Lifeguard,
    /// Push suspicions, deaths and refutations at once (`news.rs`); on by default.
    pub push_news: bool,
    /// Count a ping the peer's host refused as missed when the refusal comes
    /// ([`Swim::handle_refused`]); on by default.
    pub count_refusals: bool,
}

impl Config {
    pub fn new(uuid: Uuid, addr: SocketAddrV4, generation: u64) -> Config {
        Config {
            uuid,
            addr,
            generation,
            heartbeat_rate: HEARTBEAT_RATE_DEFAULT,
            ack_timeout: ACK_TIMEOUT_DEFAULT,
            gc_mode: GcMode::On,
            lifeguard: Lifeguard::default(),
            push_news: true,
            count_refusals: true,
        }
    }
}

/// Why an API call was refused; texts as Tarantool's (spec §1), minus the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwimError {
    /// `a member with such UUID already exists`
    UuidExists,
    /// `can not remove self`
    RemoveSelf,
    /// `Payload should be <= 1200 and >= 0`
    PayloadTooBig,
    /// `UUID and URI are mandatory` (a nil UUID or an unspecified address)
    Mandatory,
    /// The instance has quit.
    Quit,
}

impl std::fmt::Display for SwimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SwimError::UuidExists => "a member with such UUID already exists",
            SwimError::RemoveSelf => "can not remove self",
            SwimError::PayloadTooBig => "Payload should be <= 1200 and >= 0",
            SwimError::Mandatory => "URI and UUID are mandatory",
            SwimError::Quit => "the swim instance is deleted",
        })
    }
}

impl std::error::Error for SwimError {}

/// Counters for `swim:stats`-like reporting and tests. The driver adds its own drops
/// (`dropped_decode`, `dropped_crypto`) through [`Swim::stats_mut`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub packets_sent: u64,
    /// Plaintext bytes, as the sizes of Tarantool's encoder give them.
    pub bytes_sent: u64,
    pub packets_received: u64,
    pub bytes_received: u64,
    pub pings_sent: u64,
    pub acks_sent: u64,
    pub indirect_pings_sent: u64,
    /// Pings to addresses learned from gossip about unknown members, or asked for by
    /// `probe_member`/`broadcast`.
    pub probes_sent: u64,
    pub quits_sent: u64,
    /// Dissemination-only packets sent at once after another member's status changed.
    pub pushes_sent: u64,
    pub forwarded: u64,
    pub dropped_decode: u64,
    pub dropped_crypto: u64,
    /// A ping or ack with an incarnation older than known (spec §2.3).
    pub dropped_stale: u64,
    /// Failure detection from our own UUID (our own packet looped back, or a UUID twin).
    pub dropped_from_self: u64,
    /// A packet after `quit()`.
    pub dropped_after_quit: u64,
    /// A packet with a zero address in META, or an oversized one to forward.
    pub dropped_bad_meta: u64,
    /// A packet with the nil UUID as its sender.
    pub dropped_nil_sender: u64,
    /// Member records skipped (zero address, nil UUID, oversized payload).
    pub dropped_bad_records: u64,
    /// An ack not sent because one was already waiting in the outbox.
    pub acks_coalesced: u64,
    /// A probe for an unknown member not sent because one was already waiting for its ack.
    pub probes_coalesced: u64,
    /// Probes for unknown members sent again because the first went unanswered.
    pub probes_retried: u64,
    pub suspicions: u64,
    pub deaths: u64,
    pub refutations: u64,
    /// Pings counted as missed when the peer's host refused them ([`Swim::handle_refused`]).
    pub pings_refused: u64,
}

/// A packet to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub to: SocketAddrV4,
    pub packet: Packet,
}

/// A member reference that survives table reshuffles: the UUID finds the slot, the id
/// tells a re-added member from the old object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct MemberRef {
    id: MemberId,
    uuid: Uuid,
}

/// A member's pending ack: when it is due, and whether the ping was already refused (its
/// miss counted, only the deadline left to keep the next ping in step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AckWait {
    deadline: u64,
    refused: bool,
}

/// Something [`Swim::send_news`] sends at once (see `news.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum News {
    /// We suspect this member after our own missed acks.
    Suspected(MemberRef),
    /// We declared this member dead after our own missed acks.
    Dead(MemberRef),
    /// We refuted a suspicion of ourselves.
    Refuted,
}

/// How a failure-detection message or record reached us (spec §2.3 vs §2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Definition {
    /// The member itself spoke to us (ping or ack).
    Direct,
    /// Someone told us about it.
    Indirect,
}

/// A SWIM instance. See the module documentation.
pub struct Swim {
    self_uuid: Uuid,
    addr: SocketAddrV4,
    heartbeat_rate: u64,
    ack_timeout: u64,
    gc_mode: GcMode,
    lifeguard: Lifeguard,
    push_news: bool,
    count_refusals: bool,
    /// Lifeguard local health score, 0..=LIFEGUARD_MAX_HEALTH.
    health: u32,

    rng: SmallRng,
    /// The member table. Order is arbitrary (swap-remove) and plays the role of
    /// Tarantool's hash-table order for "start at a random slot" walks.
    members: Vec<Member>,
    index: MemberIndex,
    /// Payload bytes and payload TTDs, for the members that have either.
    payloads: Payloads,
    /// Self's position in `members` (every packet built reads self's incarnation).
    self_pos: usize,
    next_id: u64,

    /// Positions of the members still to ping in this round, head first. A deleted member
    /// leaves it and the one moved into its place is repointed ([`Swim::delete`]): 4 bytes
    /// an entry instead of a 24-byte reference, as the queue holds the whole table.
    round_queue: VecDeque<u32>,
    /// Next round step, when the table has someone besides self.
    round_at: Option<u64>,
    /// Members waiting for an ack, earliest deadline on top; `(deadline, seq, member)`.
    /// An entry whose deadline differs from the member's one in `ack_waits` is stale.
    ack_heap: BinaryHeap<Reverse<(u64, u64, MemberRef)>>,
    ack_seq: u64,
    /// The ack deadline of every member waiting for one (a few at any time, so beside the
    /// table rather than 16 bytes in every entry).
    ack_waits: hashbrown::HashMap<MemberId, AckWait>,
    /// Lifeguard: distinct gossip senders that confirmed the current suspicion, per
    /// suspected member.
    confirmations: HashMap<MemberId, Vec<Uuid>>,
    /// Positions of the members with something to disseminate, oldest change first; kept
    /// like the round queue.
    dissemination: Vec<u32>,
    /// Addresses probed because gossip named an unknown member, with the time the probe's
    /// answer is due. Until then more gossip about the same address sends no second probe:
    /// during a join every received packet names dozens of unknown members, and re-probing
    /// each of them per packet multiplied the traffic by four and overflowed the receive
    /// buffers. An unanswered probe is sent again at the first round step after its
    /// deadline, up to [`PROBE_ATTEMPTS`] times in all (see there); any ping or ack from
    /// the address ends it.
    probing: HashMap<SocketAddrV4, Probe>,

    outbox: Vec<Outgoing>,
    /// News to push when the input being handled ends ([`Swim::send_news`]).
    news: Vec<News>,
    /// What our own failure detection saw lately: whether we may push news.
    miss_log: MissLog<MemberRef>,
    /// Members with an ack in the outbox.
    pending_acks: Vec<MemberId>,
    events: Vec<MemberEvent>,
    event_index: HashMap<MemberId, usize>,
    collect_events: bool,
    stats: Stats,
    quit: bool,
    /// The time of the input being handled; set on entry to every public method that
    /// takes `now`.
    now: u64,
}

impl Swim {
    /// A configured instance: self is the only member, alive, incarnation
    /// `{generation, 0}`, empty payload. Self's NEW event is queued.
    pub fn new(cfg: Config, seed: u64, now: u64) -> Result<Swim, SwimError> {
        if cfg.uuid.is_nil() || cfg.addr.port() == 0 && cfg.addr.ip().is_unspecified() {
            return Err(SwimError::Mandatory);
        }
        let mut rng = SmallRng::seed_from_u64(seed);
        let hash_key = rng.random::<u64>();
        let mut swim = Swim {
            self_uuid: cfg.uuid,
            addr: cfg.addr,
            heartbeat_rate: cfg.heartbeat_rate.max(1),
            ack_timeout: cfg.ack_timeout.max(1),
            gc_mode: cfg.gc_mode,
            lifeguard: cfg.lifeguard,
            push_news: cfg.push_news,
            count_refusals: cfg.count_refusals,
            health: 0,
            rng,
            members: Vec::new(),
            index: MemberIndex::new(hash_key),
            payloads: Payloads::default(),
            self_pos: 0,
            next_id: 0,
            round_queue: VecDeque::new(),
            round_at: None,
            ack_heap: BinaryHeap::new(),
            ack_seq: 0,
            ack_waits: hashbrown::HashMap::new(),
            confirmations: HashMap::new(),
            dissemination: Vec::new(),
            probing: HashMap::new(),
            outbox: Vec::new(),
            news: Vec::new(),
            miss_log: MissLog::default(),
            pending_acks: Vec::new(),
            events: Vec::new(),
            event_index: HashMap::new(),
            collect_events: true,
            stats: Stats::default(),
            quit: false,
            now,
        };
        let i = swim.insert(cfg.uuid, cfg.addr, Status::Alive, now);
        swim.self_pos = i;
        let m = &mut swim.members[i];
        m.incarnation = Incarnation::new(cfg.generation, 0);
        m.payload_up_to_date = true;
        swim.on_update(i, event::NEW);
        Ok(swim)
    }

    // ===== configuration =====

    pub fn uuid(&self) -> Uuid {
        self.self_uuid
    }
    pub fn addr(&self) -> SocketAddrV4 {
        self.addr
    }
    pub fn heartbeat_rate(&self) -> u64 {
        self.heartbeat_rate
    }
    pub fn ack_timeout(&self) -> u64 {
        self.ack_timeout
    }
    pub fn gc_mode(&self) -> GcMode {
        self.gc_mode
    }
    pub fn lifeguard(&self) -> Lifeguard {
        self.lifeguard
    }
    pub fn push_news(&self) -> bool {
        self.push_news
    }
    /// Lifeguard local health score (0 when the extension is off).
    pub fn local_health(&self) -> u32 {
        self.health
    }
    pub fn is_quit(&self) -> bool {
        self.quit
    }

    /// A new step period; the next step comes one new period from now.
    pub fn set_heartbeat_rate(&mut self, rate: u64, now: u64) {
        self.now = now;
        self.heartbeat_rate = rate.max(1);
        if self.round_at.is_some() {
            self.round_at = Some(now.saturating_add(self.round_period()));
        }
    }

    /// A new ack timeout: later waits use it; pings already sent keep their deadlines.
    pub fn set_ack_timeout(&mut self, timeout: u64, now: u64) {
        self.now = now;
        self.ack_timeout = timeout.max(1);
    }

    pub fn set_gc_mode(&mut self, mode: GcMode) {
        self.gc_mode = mode;
    }

    pub fn set_push_news(&mut self, on: bool) {
        self.push_news = on;
    }

    pub fn set_count_refusals(&mut self, on: bool) {
        self.count_refusals = on;
    }

    pub fn set_lifeguard(&mut self, lifeguard: Lifeguard) {
        self.lifeguard = lifeguard;
        if !lifeguard.local_health {
            self.health = 0;
        }
    }

    /// Self's address changed (after a rebind): version + 1 and NEW_URI (spec §2.9).
    pub fn set_address(&mut self, addr: SocketAddrV4, now: u64) {
        self.now = now;
        if addr == self.addr {
            return;
        }
        self.addr = addr;
        let i = self.self_index();
        self.members[i].addr = addr;
        self.members[i].incarnation.version = self.members[i].incarnation.version.saturating_add(1);
        self.on_update(i, event::NEW_URI | event::NEW_VERSION);
    }

    /// Self's UUID changed (spec §2.9): the old entry becomes *left* and is gossiped until
    /// its TTD runs out; a new self with the same address, the same incarnation and a copy
    /// of the payload takes its place. Tarantool 2.6.0 bumps neither version (checked on the
    /// real binary): *left* already wins over *alive* at an equal incarnation.
    pub fn set_uuid(&mut self, uuid: Uuid, now: u64) -> Result<(), SwimError> {
        self.now = now;
        if uuid == self.self_uuid {
            return Ok(());
        }
        if uuid.is_nil() {
            return Err(SwimError::Mandatory);
        }
        if self.find(&uuid).is_some() {
            return Err(SwimError::UuidExists);
        }
        let old = self.self_index();
        let inc = self.members[old].incarnation;
        let payload = self.payloads.bytes(self.members[old].payload).to_vec();
        self.members[old].status = Status::Left;
        self.on_update(old, event::NEW_STATUS);
        self.self_uuid = uuid;
        let i = self.insert(uuid, self.addr, Status::Alive, now);
        self.self_pos = i;
        let m = &mut self.members[i];
        m.incarnation = inc;
        m.payload_up_to_date = true;
        self.payloads.set_bytes(&mut m.payload, payload);
        self.on_update(i, event::NEW);
        Ok(())
    }

    // ===== API operations =====

    /// `add_member`: alive, incarnation {0, 0}, payload unknown; pinged in the next round.
    pub fn add_member(&mut self, uuid: Uuid, addr: SocketAddrV4, now: u64) -> Result<(), SwimError> {
        self.now = now;
        if self.quit {
            return Err(SwimError::Quit);
        }
        if uuid.is_nil() || addr.port() == 0 || addr.ip().is_unspecified() {
            return Err(SwimError::Mandatory);
        }
        if self.find(&uuid).is_some() {
            return Err(SwimError::UuidExists);
        }
        let i = self.insert(uuid, addr, Status::Alive, now);
        self.on_update(i, event::NEW);
        Ok(())
    }

    /// `remove_member`: deleted at once, locally (DROP). An unknown UUID is fine.
    pub fn remove_member(&mut self, uuid: Uuid, now: u64) -> Result<(), SwimError> {
        self.now = now;
        if uuid == self.self_uuid {
            return Err(SwimError::RemoveSelf);
        }
        if let Some(i) = self.find(&uuid) {
            self.delete(i);
        }
        Ok(())
    }

    /// `probe_member`: one ping to an address; whoever answers is added.
    pub fn probe_member(&mut self, addr: SocketAddrV4, now: u64) {
        self.now = now;
        if !self.quit {
            self.send_probe(addr);
        }
    }

    /// `broadcast`: one ping to each address the driver found (interface broadcast
    /// addresses with the port).
    pub fn broadcast(&mut self, addrs: &[SocketAddrV4], now: u64) {
        for &a in addrs {
            self.probe_member(a, now);
        }
    }

    /// `set_payload`: every call bumps the version, even with the same bytes (spec §1.4).
    pub fn set_payload(&mut self, payload: &[u8], now: u64) -> Result<(), SwimError> {
        self.now = now;
        if payload.len() > MAX_PAYLOAD_SIZE {
            return Err(SwimError::PayloadTooBig);
        }
        let i = self.self_index();
        let n = self.members.len();
        let m = &mut self.members[i];
        let mut bits = event::NEW_VERSION;
        if self.payloads.bytes(m.payload) != payload {
            self.payloads.set_bytes(&mut m.payload, payload.to_vec());
            bits |= event::NEW_PAYLOAD;
        }
        m.incarnation.version = m.incarnation.version.saturating_add(1);
        self.payloads.set_ttd(&mut m.payload, n as u32);
        self.on_update(i, bits);
        Ok(())
    }

    /// `quit`: self becomes *left*, one quit packet goes to every other member in a shuffled
    /// order, and the instance stops (spec §2.8). Later inputs are ignored.
    pub fn quit(&mut self, now: u64) {
        self.now = now;
        if self.quit {
            return;
        }
        let me = self.self_index();
        self.members[me].status = Status::Left;
        self.on_update(me, event::NEW_STATUS);
        let mut order: Vec<usize> = (0..self.members.len()).filter(|&i| i != me).collect();
        self.shuffle(&mut order);
        let inc = self.members[me].incarnation;
        for i in order {
            let to = self.members[i].addr;
            let packet = Packet {
                meta: self.meta(None),
                body: Body {
                    quit: Some(inc),
                    ..self.bare_body()
                },
            };
            self.stats.quits_sent += 1;
            self.emit(to, packet);
        }
        self.quit = true;
        self.round_at = None;
        self.round_queue.clear();
        self.ack_heap.clear();
    }

    /// Events are collected only while this is on (the binding turns it off while no
    /// trigger is registered: those changes are lost, as in Tarantool).
    pub fn set_event_collection(&mut self, on: bool) {
        self.collect_events = on;
        if !on {
            self.events.clear();
            self.event_index.clear();
        }
    }

    // ===== reading the table =====

    /// Members, self included.
    pub fn size(&self) -> usize {
        self.members.len()
    }

    pub fn member(&self, uuid: &Uuid) -> Option<MemberView<'_>> {
        self.find(uuid).map(|i| self.members[i].view(&self.payloads))
    }

    pub fn self_member(&self) -> MemberView<'_> {
        self.members[self.self_index()].view(&self.payloads)
    }

    /// All members in table order (unsorted, changes as the table changes).
    pub fn members(&self) -> impl Iterator<Item = MemberView<'_>> {
        self.members.iter().map(|m| m.view(&self.payloads))
    }

    /// Makes room for `additional` more members, so that adding them allocates nothing.
    /// Only a hint, as `Vec::reserve_exact`: a simulated full mesh of 10,000 would
    /// otherwise hold tables grown by doubling, up to 60 % bigger than needed.
    pub fn reserve(&mut self, additional: usize) {
        self.members.reserve_exact(additional);
        self.index.reserve(self.members.len() + additional, &self.members);
    }

    /// Members queued for dissemination (0 in a quiet cluster).
    pub fn queued_events(&self) -> usize {
        self.dissemination.len()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn stats_mut(&mut self) -> &mut Stats {
        &mut self.stats
    }

    // ===== outputs =====

    /// Packets to send, in order.
    pub fn take_outgoing(&mut self) -> Vec<Outgoing> {
        self.pending_acks.clear();
        std::mem::take(&mut self.outbox)
    }

    /// [`Swim::take_outgoing`] into `out` (emptied first), whose allocation the core keeps
    /// for the next packets: a driver that calls this after every input allocates nothing.
    pub fn swap_outgoing(&mut self, out: &mut Vec<Outgoing>) {
        self.pending_acks.clear();
        out.clear();
        std::mem::swap(&mut self.outbox, out);
    }

    /// Member events since the last call, one per member object; a member both added and
    /// dropped in between is not reported (spec §1.6).
    #[inline]
    pub fn take_events(&mut self) -> Vec<MemberEvent> {
        // A join or a mass change can batch an event per member; the map is not kept at that
        // size afterwards (a simulated mesh of 10,000 kept 3 GB of empty maps).
        if self.event_index.capacity() > EVENT_INDEX_KEPT {
            self.event_index = HashMap::new();
        } else {
            self.event_index.clear();
        }
        let mut events = std::mem::take(&mut self.events);
        events.retain(|e| e.mask & (event::NEW | event::DROP) != event::NEW | event::DROP);
        events
    }

    /// When `handle_timer` must be called next, if ever.
    pub fn next_deadline(&self) -> Option<u64> {
        let ack = self.ack_heap.peek().map(|&Reverse((deadline, _, _))| deadline);
        match (self.round_at, ack) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ===== inputs =====

    /// Timers: the round step (every heartbeat) and the ack deadlines. Calling it early or
    /// late is harmless; whatever is due runs.
    ///
    /// Tarantool checks the ack-wait heap on a ticker with period `ack_timeout`, so a ping
    /// expires between 1× and 2× its timeout (spec §2.3). Here each wait expires at its own
    /// deadline, the earliest moment that range allows: every miss counts as soon as it is
    /// due, and a silent member is suspected and declared dead with no tick phase added to
    /// each of its five misses (what made node slower than Tarantool to see a member dead).
    pub fn handle_timer(&mut self, now: u64) {
        self.now = now;
        if self.quit {
            return;
        }
        if self.ack_heap.peek().is_some_and(|&Reverse((d, _, _))| d <= now) {
            self.check_acks(now);
        }
        if let Some(at) = self.round_at {
            if at <= now {
                self.round_step(now);
            }
        }
        self.prune_ack_heap();
        self.send_news();
    }

    /// Drops answered waits from the top of the ack heap, so that `next_deadline` does not
    /// wake the driver for a ping that was acked long ago.
    fn prune_ack_heap(&mut self) {
        while let Some(&Reverse((deadline, _, r))) = self.ack_heap.peek() {
            if self.current_wait(r, deadline).is_some() && self.resolve(r).is_some() {
                break;
            }
            self.ack_heap.pop();
        }
    }

    /// The host at `addr` refused a datagram we sent there: nothing listens on that port
    /// (an ICMP port unreachable, which the driver reads from its socket's error queue).
    ///
    /// A member at `addr` whose ping waits for its ack has that ping counted as missed now
    /// instead of at its deadline: no ack can come through a closed port, and counting
    /// early changes no rule, only when the rule fires. The next ping still goes out at the
    /// deadline, so a member is pinged as often as without refusals and a restarting
    /// process has the same number of pings to come back before it is declared dead, only
    /// one ack timeout less to do it in. With a member that really crashed on a live host,
    /// a death is seen an ack timeout or two sooner (a suspicion one ack timeout sooner;
    /// members checking a pushed suspicion also count their refusals). Off with
    /// `count_refusals = false`; a refusal of any other datagram (an ack, a probe of an
    /// unknown address, an indirect ping's helper) counts nothing.
    pub fn handle_refused(&mut self, addr: SocketAddrV4, now: u64) {
        self.now = now;
        if self.quit || !self.count_refusals {
            return;
        }
        let waiting: Vec<MemberRef> = self
            .ack_heap
            .iter()
            .map(|&Reverse((deadline, _, r))| (deadline, r))
            .filter(|&(deadline, r)| {
                self.current_wait(r, deadline).is_some_and(|w| !w.refused)
                    && self.resolve(r).is_some_and(|i| self.members[i].addr == addr)
            })
            .map(|(_, r)| r)
            .collect();
        for r in waiting {
            // The heap may hold a stale entry with the same deadline: count a wait once.
            match self.ack_waits.get_mut(&r.id) {
                Some(w) if !w.refused => w.refused = true,
                _ => continue,
            }
            let Some(i) = self.resolve(r) else { continue };
            self.stats.pings_refused += 1;
            self.count_miss(i, r, now);
        }
        self.prune_ack_heap();
        self.send_news();
    }

    /// Starts loading what handling an input reads, so that the driver can decode the
    /// datagram meanwhile. With many instances in one process each input finds its
    /// instance cold: the state, the index and the member entries are each a cache miss,
    /// and a packet's records hit most entries of a small table in random order. A table
    /// bigger than [`WARMED_TABLE_BYTES`] is left to the per-record prefetches.
    pub fn prefetch_state(&self) {
        prefetch_all(std::slice::from_ref(self));
        if std::mem::size_of_val(self.members.as_slice()) <= WARMED_TABLE_BYTES {
            self.index.prefetch_all();
            prefetch_all(&self.members);
        }
    }

    /// A decoded packet from the network. Never panics, whatever it holds.
    pub fn handle_packet(&mut self, packet: Packet, now: u64) {
        self.now = now;
        if self.quit {
            self.stats.dropped_after_quit += 1;
            return;
        }
        self.stats.packets_received += 1;
        self.stats.bytes_received += packet_size(&packet) as u64;
        // The decoder rejects zero addresses (spec §3.3); the core does not rely on it.
        let zero = |a: SocketAddrV4| a.port() == 0 || a.ip().is_unspecified();
        if zero(packet.meta.src) || packet.meta.route.is_some_and(|r| zero(r.src) || zero(r.dst)) {
            self.stats.dropped_bad_meta += 1;
            return;
        }
        // Transport (spec §3.3): who really sent it, and through whom.
        let (sender, proxy) = match packet.meta.route {
            None => (packet.meta.src, None),
            Some(route) if route.dst == self.addr => (route.src, Some(packet.meta.src)),
            Some(route) => {
                if packet_size(&packet) > MAX_PACKET_SIZE {
                    // Could not have been received from a real sender: do not amplify it.
                    self.stats.dropped_bad_meta += 1;
                    return;
                }
                let mut packet = packet;
                packet.meta.src = self.addr;
                packet.meta.version = proto::TARANTOOL_VERSION;
                self.stats.forwarded += 1;
                self.emit(route.dst, packet);
                return;
            }
        };
        let body = packet.body;
        if body.src_uuid.is_nil() {
            self.stats.dropped_nil_sender += 1;
            return;
        }
        if let Some(fd) = body.failure_detection {
            if !self.process_failure_detection(body.src_uuid, sender, proxy, fd, now) {
                // Stale: "ignored entirely". The rest of the packet is as old.
                return;
            }
        }
        let mut hashes = [0u32; PREFETCHED_RECORDS];
        self.prefetch_members([&body.dissemination, &body.anti_entropy], &mut hashes);
        let mut k = 0;
        for records in [body.dissemination, body.anti_entropy].into_iter().flatten() {
            for record in records {
                let h = match hashes.get(k) {
                    Some(&h) => h,
                    None => self.index.hash(&record.uuid),
                };
                k += 1;
                self.upsert_record(record, h, body.src_uuid, now);
            }
        }
        if let Some(inc) = body.quit {
            self.process_quit(body.src_uuid, inc);
        }
        self.send_news();
    }

    /// Queues a suspicion or death we decided, if our record allows pushing it (`news.rs`).
    fn note_news(&mut self, news: News) {
        let (News::Suspected(r) | News::Dead(r)) = news else {
            return;
        };
        let window = self.heartbeat_rate.saturating_mul(CLEAN_WINDOW_HEARTBEATS);
        // A miss about a member found dead since was its silence, not our link.
        let found_dead = |m: MemberRef| self.resolve(m).is_none_or(|i| self.members[i].status == Status::Dead);
        if self.miss_log.is_clean_except(r, self.now, window, found_dead) {
            self.news.push(news);
        }
    }

    /// Sends the news the input just handled made, each record in a dissemination-only
    /// packet of its own (see `news.rs`).
    fn send_news(&mut self) {
        if self.news.is_empty() {
            return;
        }
        if self.quit || !self.push_news {
            self.news.clear();
            return;
        }
        for news in std::mem::take(&mut self.news) {
            let (subject, fanout) = match news {
                News::Suspected(r) => (self.resolve(r), PUSH_FANOUT),
                News::Dead(r) => (self.resolve(r), usize::MAX),
                News::Refuted => (Some(self.self_index()), PUSH_FANOUT),
            };
            let Some(subject) = subject else { continue };
            let record = self.record(subject, false);
            let self_pos = self.self_pos;
            let to_tell = self.pick_members(fanout, |i, m| {
                i != self_pos && i != subject && m.status == Status::Alive
            });
            for i in to_tell {
                let to = self.members[i].addr;
                let packet = Packet {
                    meta: self.meta(None),
                    body: Body {
                        dissemination: Some(vec![record.clone()]),
                        ..self.bare_body()
                    },
                };
                self.stats.pushes_sent += 1;
                self.emit(to, packet);
            }
        }
    }

    /// Starts loading the index slots, then the member entries, of the first records
    /// before they are applied one by one, and leaves their hashes in `hashes` for the
    /// lookups. Each lookup is a cache miss or two on a big table; done in order, every one
    /// waits for the last, while started together they overlap.
    fn prefetch_members(&self, lists: [&Option<Vec<MemberRecord>>; 2], hashes: &mut [u32; PREFETCHED_RECORDS]) {
        let records = lists.into_iter().flatten().flatten();
        let mut count = 0;
        for (h, rec) in hashes.iter_mut().zip(records) {
            *h = self.index.hash(&rec.uuid);
            self.index.prefetch(*h);
            count += 1;
        }
        for &h in &hashes[..count] {
            if let Some(m) = self.index.likely_pos(h).and_then(|i| self.members.get(i)) {
                prefetch(m);
            }
        }
    }

    // ===== failure detection =====

    /// Spec §2.3. Returns false when the message is stale.
    fn process_failure_detection(
        &mut self,
        uuid: Uuid,
        addr: SocketAddrV4,
        proxy: Option<SocketAddrV4>,
        fd: FailureDetection,
        now: u64,
    ) -> bool {
        if uuid == self.self_uuid {
            self.stats.dropped_from_self += 1;
            self.learn_about_self(fd.incarnation, Status::Alive);
            return true;
        }
        if proxy.is_none() && !self.probing.is_empty() {
            // The address answered (or spoke first): no more probes for it.
            self.probing.remove(&addr);
        }
        let i = match self.find(&uuid) {
            Some(i) => {
                if fd.incarnation < self.members[i].incarnation {
                    self.stats.dropped_stale += 1;
                    return false;
                }
                self.apply_definition(i, Status::Alive, addr, fd.incarnation, None, Definition::Direct);
                i
            }
            None => {
                if addr.port() == 0 || addr.ip().is_unspecified() {
                    self.stats.dropped_bad_records += 1;
                    return false;
                }
                let i = self.insert(uuid, addr, Status::Alive, now);
                self.members[i].incarnation = fd.incarnation;
                self.on_update(i, event::NEW);
                i
            }
        };
        match fd.kind {
            FailureDetectionKind::Ping => self.send_ack(i, proxy),
            FailureDetectionKind::Ack => {
                self.miss_log.note_ack(now);
                let m = &mut self.members[i];
                m.unacked = 0;
                self.ack_waits.remove(&m.id);
                if self.lifeguard.local_health {
                    self.health = self.health.saturating_sub(1);
                }
                self.prune_ack_heap();
            }
        }
        true
    }

    /// The ack ticker: every expired wait counts a miss and acts on it (spec §2.3).
    fn check_acks(&mut self, now: u64) {
        while let Some(&Reverse((deadline, _, r))) = self.ack_heap.peek() {
            if deadline > now {
                break;
            }
            self.ack_heap.pop();
            let Some(wait) = self.current_wait(r, deadline) else {
                continue;
            };
            let Some(i) = self.resolve(r) else { continue };
            self.ack_waits.remove(&r.id);
            // A refused ping counted its miss when the refusal came; its deadline only keeps
            // the pings one ack timeout apart, as they are without refusals.
            let still_pinged = if wait.refused {
                self.members[i].status != Status::Left
            } else {
                self.count_miss(i, r, now)
            };
            if !still_pinged {
                continue;
            }
            // A silent member is re-pinged at once, whatever its status.
            let to = self.members[i].addr;
            let packet = self.build_fd_packet(FailureDetectionKind::Ping, None, Some(i));
            self.stats.pings_sent += 1;
            self.emit(to, packet);
            self.wait_ack(i, 1);
        }
    }

    /// One unanswered ping of member `i` (`r`), and what the count leads to; false when the
    /// member is not to be pinged again (deleted by GC, or left).
    fn count_miss(&mut self, i: usize, r: MemberRef, now: u64) -> bool {
        // A dead member is silent for everyone: pinging it says nothing about our network
        // (with gc off it is pinged forever, and every round would spoil the record).
        if !matches!(self.members[i].status, Status::Dead | Status::Left) {
            self.miss_log.note_miss(now, r);
        }
        self.members[i].unacked = self.members[i].unacked.saturating_add(1);
        if self.lifeguard.local_health {
            self.health = (self.health + 1).min(LIFEGUARD_MAX_HEALTH);
        }
        let unacked = u32::from(self.members[i].unacked);
        match self.members[i].status {
            Status::Alive => {
                if unacked >= NO_ACKS_TO_SUSPECT {
                    self.members[i].status = Status::Suspected;
                    self.stats.suspicions += 1;
                    self.on_update(i, event::NEW_STATUS);
                    self.note_news(News::Suspected(r));
                    self.send_indirect_pings(i);
                }
            }
            Status::Suspected => {
                if unacked >= self.dead_threshold(i) {
                    self.members[i].status = Status::Dead;
                    self.stats.deaths += 1;
                    self.on_update(i, event::NEW_STATUS);
                    self.note_news(News::Dead(r));
                }
            }
            Status::Dead => {
                if unacked >= NO_ACKS_TO_GC && self.gc_mode == GcMode::On && self.members[i].status_ttd == 0 {
                    self.delete(i);
                    return false;
                }
            }
            Status::Left => return false,
        }
        true
    }

    /// `r`'s ack wait if it ends at `deadline`: heap entries of answered or replaced waits
    /// stay behind, stale.
    fn current_wait(&self, r: MemberRef, deadline: u64) -> Option<AckWait> {
        self.ack_waits.get(&r.id).copied().filter(|w| w.deadline == deadline)
    }

    /// Expired pings a suspected member needs to be declared dead.
    fn dead_threshold(&self, i: usize) -> u32 {
        if !self.lifeguard.dynamic_suspicion {
            return NO_ACKS_TO_DEAD;
        }
        let min = NO_ACKS_TO_DEAD as f64;
        let max = (NO_ACKS_TO_DEAD * LIFEGUARD_SUSPICION_MULT) as f64;
        let c = self.confirmations.get(&self.members[i].id).map_or(0, Vec::len) as f64;
        let k = LIFEGUARD_CONFIRMATIONS as f64;
        let t = max - (max - min) * (c + 1.0).ln() / (k + 1.0).ln();
        t.max(min).ceil() as u32
    }

    /// Spec §2.4: up to two helpers, from a random slot, not self, not at the target's
    /// address; each gets a ping routed to the target. The wait is doubled.
    fn send_indirect_pings(&mut self, target: usize) {
        let target_addr = self.members[target].addr;
        let self_uuid = self.self_uuid;
        let helpers = self.pick_members(INDIRECT_PING_COUNT, |_, m| m.uuid != self_uuid && m.addr != target_addr);
        for &h in &helpers {
            let to = self.members[h].addr;
            let route = Route {
                src: self.addr,
                dst: target_addr,
            };
            let packet = self.build_fd_packet(FailureDetectionKind::Ping, Some(route), Some(target));
            self.stats.indirect_pings_sent += 1;
            self.emit(to, packet);
        }
        if !helpers.is_empty() {
            // The ack travels four hops instead of two.
            self.wait_ack(target, 2);
        }
    }

    /// Up to `count` members that are `eligible`, in table order from a random slot (from the
    /// first when `count` takes them all anyway): indirect-ping helpers and news recipients.
    fn pick_members(&mut self, count: usize, eligible: impl Fn(usize, &Member) -> bool) -> Vec<usize> {
        let n = self.members.len();
        let start = if count < n { self.rng.random_range(0..n) } else { 0 };
        (0..n)
            .map(|k| (start + k) % n)
            .filter(|&i| eligible(i, &self.members[i]))
            .take(count)
            .collect()
    }

    /// Put a member on the ack-wait heap unless it is already there (Tarantool keeps the
    /// first deadline).
    fn wait_ack(&mut self, i: usize, hops: u64) {
        let now = self.now;
        let m = &self.members[i];
        if self.ack_waits.contains_key(&m.id) {
            return;
        }
        let mut timeout = self.ack_timeout.saturating_mul(hops);
        if self.lifeguard.local_health {
            timeout = timeout.saturating_mul(1 + self.health as u64);
        }
        let deadline = now.saturating_add(timeout);
        self.ack_waits.insert(
            m.id,
            AckWait {
                deadline,
                refused: false,
            },
        );
        let r = MemberRef { id: m.id, uuid: m.uuid };
        self.ack_seq += 1;
        self.ack_heap.push(Reverse((deadline, self.ack_seq, r)));
    }
}

// ===== rounds and dissemination =====

impl Swim {
    /// One round step (spec §2.2): ping the head of the round queue, then move it to the
    /// ack-wait heap and age every queued event.
    fn round_step(&mut self, now: u64) {
        if self.round_queue.is_empty() {
            self.new_round();
        }
        let target = self.round_queue.front().map(|&p| p as usize);
        if self.members.len() <= 1 {
            self.round_at = None;
            return;
        }
        self.round_at = Some(now.saturating_add(self.round_period()));
        if !self.probing.is_empty() {
            self.retry_probes(now);
        }
        let Some(i) = target else { return };
        let to = self.members[i].addr;
        let packet = self.build_fd_packet(FailureDetectionKind::Ping, None, Some(i));
        self.stats.pings_sent += 1;
        self.emit(to, packet);
        self.round_queue.pop_front();
        self.wait_ack(i, 1);
        self.decrease_ttds();
    }

    /// The step period, stretched by Lifeguard's local health when that is on.
    fn round_period(&self) -> u64 {
        self.heartbeat_rate.saturating_mul(1 + self.health as u64)
    }

    /// A new round: everyone but self, shuffled (Fisher–Yates).
    fn new_round(&mut self) {
        let me = self.self_pos as u32;
        let mut order: Vec<u32> = (0..self.members.len() as u32).filter(|&p| p != me).collect();
        self.shuffle(&mut order);
        self.round_queue = order.into();
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for k in (1..v.len()).rev() {
            let j = self.rng.random_range(0..=k);
            v.swap(k, j);
        }
    }

    /// After every round step, every queued member loses one step of each TTD, sent or not
    /// (spec §2.5). At status TTD 0 it leaves the queue, and a *left* member leaves the
    /// table.
    fn decrease_ttds(&mut self) {
        let mut gone = Vec::new();
        let (members, payloads) = (&mut self.members, &mut self.payloads);
        self.dissemination.retain(|&p| {
            let m = &mut members[p as usize];
            payloads.decrease_ttd(&mut m.payload);
            m.status_ttd = m.status_ttd.saturating_sub(1);
            if m.status_ttd == 0 && m.status == Status::Left && p as usize != self.self_pos {
                gone.push(MemberRef { id: m.id, uuid: m.uuid });
            }
            m.status_ttd > 0
        });
        // After a join the queue held the whole table; do not keep that much room forever.
        if self.dissemination.capacity() > 64 && self.dissemination.len() < self.dissemination.capacity() / 4 {
            self.dissemination.shrink_to(self.dissemination.len() * 2);
        }
        for r in gone {
            if let Some(i) = self.resolve(r) {
                self.delete(i);
            }
        }
    }

    /// A ping or ack with full dissemination and anti-entropy sections, filled up to
    /// `MAX_PACKET_SIZE` with the sizes Tarantool's encoder produces. `dst` is the member
    /// the failure detection is about (for Lifeguard's buddy record).
    fn build_fd_packet(&mut self, kind: FailureDetectionKind, route: Option<Route>, dst: Option<usize>) -> Packet {
        let meta = self.meta(route);
        let meta_size = if route.is_some() {
            proto::META_ROUTED_SIZE
        } else {
            proto::META_SIZE
        };
        // Both section headers are always there, even empty (spec §3.4).
        let mut room = MAX_PACKET_SIZE
            - meta_size
            - proto::BODY_HEADER_SIZE
            - proto::FAILURE_DETECTION_SIZE
            - 2 * proto::SECTION_HEADER_SIZE;
        // Lifeguard's buddy system: a suspected member hears about it first.
        let buddy = dst.filter(|&i| self.lifeguard.dynamic_suspicion && self.members[i].status == Status::Suspected);
        let dissemination = self.dissemination_records(&mut room, buddy);
        let n = self.members.len();
        let mut anti_entropy = Vec::with_capacity(n.min(room / proto::RECORD_SIZE));
        let start = self.rng.random_range(0..n);
        // The slice from `start` on, wrapping around the end of the table.
        let slice = || self.members[start..].iter().chain(&self.members[..start]);
        // It is cold (another instance ran since): start loading all of it at once.
        for m in slice().take(room / proto::RECORD_SIZE) {
            prefetch(m);
        }
        for m in slice() {
            let payload = m.payload_up_to_date.then(|| self.payloads.bytes(m.payload));
            let size = proto::record_size(payload.map(<[u8]>::len));
            if size > room {
                break;
            }
            room -= size;
            anti_entropy.push(Self::record_of(m, payload));
        }
        let me = &self.members[self.self_index()];
        Packet {
            meta,
            body: Body {
                failure_detection: Some(FailureDetection {
                    kind,
                    incarnation: me.incarnation,
                }),
                dissemination: Some(dissemination),
                anti_entropy: Some(anti_entropy),
                ..self.bare_body()
            },
        }
    }

    /// A body from us with no sections yet: the caller sets those it sends.
    fn bare_body(&self) -> Body {
        Body {
            src_uuid: self.self_uuid,
            failure_detection: None,
            dissemination: None,
            anti_entropy: None,
            quit: None,
        }
    }

    /// The dissemination section: `buddy`'s record first if given, then the queue, oldest
    /// change first, as far as `room` goes (spec §2.5).
    fn dissemination_records(&self, room: &mut usize, buddy: Option<usize>) -> Vec<MemberRecord> {
        // Sized up front: growing a vector of 64-byte records four times per packet showed
        // up in profiles.
        let mut records = Vec::with_capacity((self.dissemination.len() + 1).min(*room / proto::RECORD_SIZE));
        if let Some(i) = buddy {
            records.push(self.record(i, false));
            *room -= proto::record_size(None);
        }
        for &p in &self.dissemination {
            let i = p as usize;
            if Some(i) == buddy {
                continue;
            }
            let m = &self.members[i];
            let with_payload = m.payload_up_to_date && self.payloads.ttd(m.payload) > 0;
            let payload = with_payload.then(|| self.payloads.bytes(m.payload));
            let size = proto::record_size(payload.map(<[u8]>::len));
            if size > *room {
                break;
            }
            *room -= size;
            records.push(Self::record_of(m, payload));
        }
        records
    }

    fn record(&self, i: usize, with_payload: bool) -> MemberRecord {
        let m = &self.members[i];
        Self::record_of(m, with_payload.then(|| self.payloads.bytes(m.payload)))
    }

    #[inline]
    fn record_of(m: &Member, payload: Option<&[u8]>) -> MemberRecord {
        MemberRecord {
            status: m.status,
            addr: m.addr,
            uuid: m.uuid,
            incarnation: m.incarnation,
            payload: payload.map(<[u8]>::to_vec),
        }
    }

    fn meta(&self, route: Option<Route>) -> Meta {
        Meta {
            version: proto::TARANTOOL_VERSION,
            src: self.addr,
            route,
        }
    }

    fn send_ack(&mut self, i: usize, proxy: Option<SocketAddrV4>) {
        let id = self.members[i].id;
        if self.pending_acks.contains(&id) {
            self.stats.acks_coalesced += 1;
            return;
        }
        let member_addr = self.members[i].addr;
        let (to, route) = match proxy {
            None => (member_addr, None),
            Some(p) => (
                p,
                Some(Route {
                    src: self.addr,
                    dst: member_addr,
                }),
            ),
        };
        let packet = self.build_fd_packet(FailureDetectionKind::Ack, route, Some(i));
        self.pending_acks.push(id);
        self.stats.acks_sent += 1;
        self.emit(to, packet);
    }

    /// A probe for a member known only from gossip, unless one is already on its way.
    fn probe_unknown(&mut self, addr: SocketAddrV4, now: u64) {
        if self.probing.contains_key(&addr) {
            self.stats.probes_coalesced += 1;
            return;
        }
        let probe = Probe {
            due: now.saturating_add(self.ack_timeout),
            attempts: 1,
        };
        self.probing.insert(addr, probe);
        self.send_probe(addr);
    }

    /// Unanswered probes past their deadline go out again, or are given up after
    /// [`PROBE_ATTEMPTS`]; in address order, so that a run replays from its seed.
    fn retry_probes(&mut self, now: u64) {
        let mut due: Vec<SocketAddrV4> = self
            .probing
            .iter()
            .filter(|(_, p)| p.due <= now)
            .map(|(&addr, _)| addr)
            .collect();
        due.sort_unstable();
        for addr in due {
            let Some(p) = self.probing.get_mut(&addr) else { continue };
            if p.attempts >= PROBE_ATTEMPTS {
                self.probing.remove(&addr);
                continue;
            }
            p.attempts += 1;
            p.due = now.saturating_add(self.ack_timeout);
            self.stats.probes_retried += 1;
            self.send_probe(addr);
        }
    }

    fn send_probe(&mut self, addr: SocketAddrV4) {
        let packet = self.build_fd_packet(FailureDetectionKind::Ping, None, None);
        self.stats.probes_sent += 1;
        self.emit(addr, packet);
    }

    fn emit(&mut self, to: SocketAddrV4, packet: Packet) {
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += packet_size(&packet) as u64;
        self.outbox.push(Outgoing { to, packet });
    }
}

// ===== the member table =====

impl Swim {
    fn self_index(&self) -> usize {
        // Self is always in the table: it is never deleted, only replaced (set_uuid).
        debug_assert_eq!(self.members[self.self_pos].uuid, self.self_uuid);
        self.self_pos
    }

    fn find(&self, uuid: &Uuid) -> Option<usize> {
        self.index.get(uuid, &self.members)
    }

    fn resolve(&self, r: MemberRef) -> Option<usize> {
        let i = self.find(&r.uuid)?;
        (self.members[i].id == r.id).then_some(i)
    }

    fn insert(&mut self, uuid: Uuid, addr: SocketAddrV4, status: Status, now: u64) -> usize {
        self.next_id += 1;
        let m = Member::new(MemberId(self.next_id), uuid, addr, status);
        let i = self.members.len();
        self.members.push(m);
        self.index.insert(&uuid, i, &self.members);
        // The round timer starts with the second member; the first step is a full period
        // away (spec §2.2).
        if self.members.len() > 1 && self.round_at.is_none() && !self.quit {
            self.round_at = Some(now.saturating_add(self.round_period()));
        }
        i
    }

    fn delete(&mut self, i: usize) {
        let last = self.members.len() - 1;
        let info = self.members[i].view(&self.payloads).info();
        // The index re-hashes the UUIDs its slots point to: it goes first, while every
        // position is still in the table.
        self.index.remove(&info.uuid, i, &self.members);
        if i < last {
            let moved = self.members[last].uuid;
            self.index.repoint(&moved, last, i);
            if self.self_pos == last {
                self.self_pos = i;
            }
        }
        let mut m = self.members.swap_remove(i);
        self.payloads.release(&mut m.payload);
        self.ack_waits.remove(&m.id);
        if !self.confirmations.is_empty() {
            self.confirmations.remove(&m.id);
        }
        // The queues hold positions: the deleted member leaves them, and the last one,
        // moved into its place, is repointed. O(queue) per delete, which is rare (GC, left,
        // remove_member); the queues are walked far more often than a member is deleted.
        let (gone, moved) = (i as u32, last as u32);
        let repoint = |p: &mut u32| {
            if *p == moved {
                *p = gone;
            }
        };
        if m.status_ttd > 0 || (i < last && self.members[i].status_ttd > 0) {
            self.dissemination.retain(|&p| p != gone);
            self.dissemination.iter_mut().for_each(repoint);
        }
        self.round_queue.retain(|&p| p != gone);
        self.round_queue.iter_mut().for_each(repoint);
        if self.members.len() <= 1 {
            self.round_at = None;
            self.round_queue.clear();
        }
        self.push_event(m.id, m.uuid, event::DROP, Some(info));
    }

    /// Any visible change (spec §2.5): the counter of misses restarts, the member is
    /// (re)queued for dissemination with a fresh status TTD, and an event is batched.
    fn on_update(&mut self, i: usize, bits: u8) {
        let n = self.members.len();
        let m = &mut self.members[i];
        m.unacked = 0;
        if bits & (event::NEW_STATUS | event::NEW_INCARNATION) != 0 && !self.confirmations.is_empty() {
            self.confirmations.remove(&m.id);
        }
        if m.status_ttd == 0 {
            self.dissemination.push(i as u32);
        }
        // At most 65 for a table that fits in memory.
        m.status_ttd = (ceil_log2(n) + 1) as u8;
        if bits & event::NEW_PAYLOAD != 0 {
            self.payloads.set_ttd(&mut m.payload, n as u32);
        }
        let (id, uuid) = (m.id, m.uuid);
        self.push_event(id, uuid, bits, None);
    }

    fn push_event(&mut self, id: MemberId, uuid: Uuid, bits: u8, last: Option<super::member::MemberInfo>) {
        if !self.collect_events {
            return;
        }
        match self.event_index.get(&id) {
            Some(&k) => {
                let e = &mut self.events[k];
                e.mask |= bits;
                if last.is_some() {
                    e.last = last;
                }
            }
            None => {
                self.event_index.insert(id, self.events.len());
                self.events.push(MemberEvent {
                    id,
                    uuid,
                    mask: bits,
                    last,
                });
            }
        }
    }

    /// Apply a definition to a known member (not self), spec §2.3 (direct) and §2.5
    /// (indirect). The caller has already dropped older incarnations.
    fn apply_definition(
        &mut self,
        i: usize,
        status: Status,
        addr: SocketAddrV4,
        inc: Incarnation,
        payload: Option<Vec<u8>>,
        def: Definition,
    ) {
        let m = &mut self.members[i];
        let mut bits = 0;
        if inc > m.incarnation {
            bits |= incarnation_bits(m.incarnation, inc);
            m.incarnation = inc;
            if m.status != status {
                m.status = status;
                bits |= event::NEW_STATUS;
            }
            if m.addr != addr {
                m.addr = addr;
                bits |= event::NEW_URI;
            }
            match payload {
                Some(p) => {
                    if p != self.payloads.bytes(m.payload) {
                        self.payloads.set_bytes(&mut m.payload, p);
                        bits |= event::NEW_PAYLOAD;
                    }
                    m.payload_up_to_date = true;
                }
                None => m.payload_up_to_date = false,
            }
        } else if inc == m.incarnation {
            let grows = match def {
                // Direct contact proves it is alive, unless it quit (see the essay).
                Definition::Direct => m.status != Status::Alive && m.status != Status::Left,
                Definition::Indirect => status > m.status,
            };
            if grows {
                m.status = status;
                bits |= event::NEW_STATUS;
            }
            if let Some(p) = payload {
                if !m.payload_up_to_date {
                    if p != self.payloads.bytes(m.payload) {
                        self.payloads.set_bytes(&mut m.payload, p);
                        bits |= event::NEW_PAYLOAD;
                    }
                    m.payload_up_to_date = true;
                }
            }
        }
        if bits != 0 {
            self.on_update(i, bits);
        }
    }

    /// A member record from dissemination or anti-entropy (spec §2.5), told by `teller`.
    /// `hash` is the index's hash of `rec.uuid`.
    fn upsert_record(&mut self, rec: MemberRecord, hash: u32, teller: Uuid, now: u64) {
        if rec.uuid.is_nil()
            || rec.addr.port() == 0
            || rec.addr.ip().is_unspecified()
            || rec.payload.as_ref().is_some_and(|p| p.len() > MAX_PAYLOAD_SIZE)
        {
            self.stats.dropped_bad_records += 1;
            return;
        }
        if rec.uuid == self.self_uuid {
            self.learn_about_self(rec.incarnation, rec.status);
            return;
        }
        let Some(i) = self.index.get_hashed(&rec.uuid, hash, &self.members) else {
            match rec.status {
                Status::Left => {}
                Status::Dead if self.gc_mode == GcMode::On => {}
                Status::Dead => {
                    let i = self.insert(rec.uuid, rec.addr, Status::Dead, now);
                    let m = &mut self.members[i];
                    m.incarnation = rec.incarnation;
                    if let Some(p) = rec.payload {
                        self.payloads.set_bytes(&mut m.payload, p);
                        m.payload_up_to_date = true;
                    }
                    self.on_update(i, event::NEW);
                }
                // Not added on hearsay: ask the member itself, once per ack timeout.
                Status::Alive | Status::Suspected => self.probe_unknown(rec.addr, now),
            }
            return;
        };
        let m = &self.members[i];
        if rec.incarnation < m.incarnation {
            return;
        }
        let was_alive = m.status == Status::Alive;
        // Lifeguard: another member independently suspects the one we suspect.
        if self.lifeguard.dynamic_suspicion
            && m.status == Status::Suspected
            && rec.incarnation == m.incarnation
            && rec.status >= Status::Suspected
            && teller != self.self_uuid
        {
            let confirmed = self.confirmations.entry(m.id).or_default();
            if !confirmed.contains(&teller) && confirmed.len() < LIFEGUARD_CONFIRMATIONS {
                confirmed.push(teller);
            }
        }
        self.apply_definition(
            i,
            rec.status,
            rec.addr,
            rec.incarnation,
            rec.payload,
            Definition::Indirect,
        );
        if was_alive && self.members[i].status == Status::Suspected {
            self.verify_suspicion(i);
        }
    }

    /// Someone else suspects a member we believed alive: ping it now rather than when our
    /// round reaches it. Tarantool counts only its own misses either way (its counter
    /// restarts at the status change, and three more make it dead); pinging at once starts
    /// that count while the suspicion is fresh, so every member checks in parallel, and the
    /// ping carries the suspicion to the suspect so that a live one refutes it sooner.
    fn verify_suspicion(&mut self, i: usize) {
        if self.ack_waits.contains_key(&self.members[i].id) {
            return;
        }
        let to = self.members[i].addr;
        let packet = self.build_fd_packet(FailureDetectionKind::Ping, None, Some(i));
        self.stats.pings_sent += 1;
        self.emit(to, packet);
        self.wait_ack(i, 1);
    }

    /// Gossip about self (spec §2.6): adopt a bigger incarnation, refute a bad status at
    /// the current one.
    fn learn_about_self(&mut self, inc: Incarnation, status: Status) {
        let i = self.self_index();
        let m = &mut self.members[i];
        let mut bits = 0;
        if inc > m.incarnation {
            bits |= incarnation_bits(m.incarnation, inc);
            m.incarnation = inc;
        }
        if inc == m.incarnation && status != Status::Alive {
            m.incarnation.version = m.incarnation.version.saturating_add(1);
            bits |= event::NEW_VERSION;
            self.stats.refutations += 1;
            self.miss_log.note_refutation(self.now);
            self.news.push(News::Refuted);
            if self.lifeguard.local_health {
                self.health = (self.health + 1).min(LIFEGUARD_MAX_HEALTH);
            }
        }
        if bits != 0 {
            self.on_update(i, bits);
        }
    }

    /// A quit message (spec §2.8).
    fn process_quit(&mut self, uuid: Uuid, inc: Incarnation) {
        if uuid == self.self_uuid {
            // Someone with our UUID quit: make sure our incarnation is the newest.
            let i = self.self_index();
            let m = &mut self.members[i];
            if inc >= m.incarnation {
                let new = Incarnation::new(inc.generation, inc.version.saturating_add(1));
                let bits = incarnation_bits(m.incarnation, new);
                m.incarnation = new;
                self.on_update(i, bits);
            }
            return;
        }
        let Some(i) = self.find(&uuid) else { return };
        let m = &mut self.members[i];
        if inc < m.incarnation {
            return;
        }
        let mut bits = incarnation_bits(m.incarnation, inc);
        m.incarnation = inc;
        if m.status != Status::Left {
            m.status = Status::Left;
            bits |= event::NEW_STATUS;
        }
        if bits != 0 {
            self.on_update(i, bits);
        }
    }
}

/// The plaintext size of a packet as Tarantool's encoder lays it out (fixed widths). For a
/// received packet encoded with narrower integers this is an upper bound.
pub fn packet_size(p: &Packet) -> usize {
    let mut size = if p.meta.route.is_some() {
        proto::META_ROUTED_SIZE
    } else {
        proto::META_SIZE
    };
    size += proto::BODY_HEADER_SIZE;
    if p.body.failure_detection.is_some() {
        size += proto::FAILURE_DETECTION_SIZE;
    }
    for records in [&p.body.dissemination, &p.body.anti_entropy].into_iter().flatten() {
        size += proto::SECTION_HEADER_SIZE;
        size += records
            .iter()
            .map(|r| proto::record_size(r.payload.as_ref().map(Vec::len)))
            .sum::<usize>();
    }
    if p.body.quit.is_some() {
        size += proto::QUIT_SIZE;
    }
    size
}

/// `127.0.0.1:port`, for tests and the simulator.
pub fn localhost(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
