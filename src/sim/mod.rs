//! A deterministic simulator for the sans-IO protocol cores.
//!
//! One thread, one virtual clock, one event queue, one seed. Nodes are [`Swim`] cores; the
//! network is a function from "node A sent packet P to address X at time t" to "node B
//! receives P at time t + delay", or to nothing (loss, partition, dead node). Nothing reads
//! the real clock or global randomness, so a run is a pure function of its seed and of
//! the calls the test makes: a failing seed replays exactly (`SIM_SEED=<n> cargo test ...`).
//!
//! The shape follows Tarantool's own `fakeev`/`fakenet` test harness and FoundationDB /
//! TigerBeetle style simulation (see `spec/simulation.md`):
//!
//! * the clock starts at [`EPOCH`], not 0, to catch code that assumes time starts at zero;
//! * faults are per link: loss probability, a delay range, and partitions (blocked pairs),
//!   checked when a packet is sent (loss) and when it arrives (partition), so a partition
//!   also cuts packets already in flight;
//! * `kill` deletes a core with no goodbye, `restart` builds a fresh one with the same UUID
//!   and address and a new, bigger generation (the current time, as `fiber.time64()`);
//! * waiters (`run_until`) advance virtual time until a predicate holds or a limit passes.
//!
//! Packets travel decoded: the byte codec is tested on its own, and skipping it here keeps
//! 10,000-member runs fast. [`Cluster`] is the harness; [`tests`] holds the scenarios.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddrV4;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use uuid::Uuid;

pub mod queue;
pub mod scenarios;

use self::queue::EventQueue;
use crate::swim::core::{localhost, Config, Lifeguard, Swim};
use crate::swim::member::{event, GcMode};
use crate::swim::proto::{Body, MemberRecord, Meta, Packet, Status, TARANTOOL_VERSION};

/// The virtual clock's start, µs (about 11.6 days). Non-zero on purpose, see the module doc.
pub const EPOCH: u64 = 1_000_000_000_000;
/// Node i listens on `127.0.0.1:(BASE_PORT + i)`.
pub const BASE_PORT: u16 = 10000;

/// The seed of a test: `SIM_SEED` from the environment when set (to replay a failure),
/// else `default`.
pub fn seed_from_env(default: u64) -> u64 {
    std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// splitmix64: derives independent seeds for the nodes and the network from one seed.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Node i's UUID: `00000000-0000-4000-8000-<i in 12 hex digits>`, readable in failures.
pub fn node_uuid(i: usize) -> Uuid {
    Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0000 | i as u128)
}

/// Node i's address.
pub fn node_addr(i: usize) -> SocketAddrV4 {
    localhost(BASE_PORT.wrapping_add(i as u16))
}

/// Protocol and network settings of a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// µs.
    pub heartbeat_rate: u64,
    /// µs.
    pub ack_timeout: u64,
    pub gc_mode: GcMode,
    pub lifeguard: Lifeguard,
    /// Push news at once (`swim::news`); on by default, as in a real instance.
    pub push_news: bool,
    /// Probability that any packet is lost, 0.0..=1.0.
    pub loss: f64,
    /// One-way delay range, µs.
    pub delay: (u64, u64),
    /// Datagrams that may be on their way to one node at once; more are dropped, as a full
    /// socket receive buffer drops them. Linux's default 208 KiB `rmem_default` holds about
    /// this many full SWIM datagrams once kernel overhead is counted. Without a bound, the
    /// probe storm of a 1,000-member join (every unknown record answered by a probe whose
    /// ack carries more unknown records) queues millions of packets within a millisecond.
    pub rx_capacity: usize,
    /// A killed node's host stays up and refuses datagrams for it (ICMP port unreachable,
    /// after the delay back), as for a crashed process; false: the host went down with it
    /// and datagrams vanish.
    pub refusals: bool,
}

impl Default for ClusterConfig {
    /// The seed demo's settings (spec §4.1): 1 s steps, 0.1 s ack timeout, GC off; a LAN
    /// delay of 0.1–1 ms.
    fn default() -> ClusterConfig {
        ClusterConfig {
            heartbeat_rate: 1_000_000,
            ack_timeout: 100_000,
            gc_mode: GcMode::Off,
            lifeguard: Lifeguard::default(),
            push_news: true,
            loss: 0.0,
            delay: (100, 1_000),
            rx_capacity: 256,
            refusals: false,
        }
    }
}

enum Action {
    Deliver {
        from: usize,
        to: SocketAddrV4,
        /// Boxed: the queue is a heap that moves its entries on every push and pop, and a
        /// packet inline is 136 bytes.
        packet: Box<Packet>,
    },
    Timer {
        node: usize,
        life: u64,
        at: u64,
    },
    /// The host at `to` refused node `node`'s datagram.
    Refused {
        node: usize,
        to: SocketAddrV4,
    },
}

/// One simulated host.
pub struct Node {
    /// `None` while killed (or after quit).
    pub swim: Option<Swim>,
    pub uuid: Uuid,
    pub addr: SocketAddrV4,
    /// Bumped on every kill/restart, so timers of an old life are ignored.
    life: u64,
    timer_at: Option<u64>,
    /// Datagrams scheduled for delivery here and not yet delivered.
    inflight: usize,
}

/// Counters of the simulated network.
#[derive(Debug, Clone, Default)]
pub struct NetStats {
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    pub blocked: u64,
    /// Sent to an address nobody listens on, or to a killed node.
    pub unreachable: u64,
    /// Of those, refused back to the sender (`ClusterConfig::refusals`).
    pub refused: u64,
    /// Dropped because the receiver already had `rx_capacity` datagrams coming.
    pub overflow: u64,
}

/// A member declared dead by an observer while it was in fact running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FalseDeath {
    pub at: u64,
    pub observer: usize,
    pub subject: Uuid,
}

/// The cluster harness: `n` nodes, a fake network, a virtual clock, all from one seed.
pub struct Cluster {
    pub cfg: ClusterConfig,
    pub seed: u64,
    now: u64,
    queue: EventQueue<Action>,
    rng: SmallRng,
    nodes: Vec<Node>,
    by_addr: HashMap<SocketAddrV4, usize>,
    link_loss: HashMap<(usize, usize), f64>,
    blocked: HashSet<(usize, usize)>,
    pub net: NetStats,
    /// Every NEW_STATUS → dead about a node that was running at that moment.
    pub false_deaths: Vec<FalseDeath>,
    /// Events handled (deliveries and timers), for benchmarks.
    pub steps: u64,
}

impl Cluster {
    /// `n` nodes with the default settings, each knowing only itself.
    pub fn new(n: usize, seed: u64) -> Cluster {
        Cluster::with_config(n, seed, ClusterConfig::default())
    }

    pub fn with_config(n: usize, seed: u64, cfg: ClusterConfig) -> Cluster {
        let mut c = Cluster {
            cfg,
            seed,
            now: EPOCH,
            queue: EventQueue::default(),
            rng: SmallRng::seed_from_u64(mix(seed)),
            nodes: Vec::with_capacity(n),
            by_addr: HashMap::new(),
            link_loss: HashMap::new(),
            blocked: HashSet::new(),
            net: NetStats::default(),
            false_deaths: Vec::new(),
            steps: 0,
        };
        for i in 0..n {
            let (uuid, addr) = (node_uuid(i), node_addr(i));
            c.by_addr.insert(addr, i);
            c.nodes.push(Node {
                swim: None,
                inflight: 0,
                uuid,
                addr,
                life: 0,
                timer_at: None,
            });
            c.start(i);
        }
        c
    }

    /// Build node i's core: generation = now + i (distinct, growing with time).
    fn start(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.life += 1;
        let mut cfg = Config::new(node.uuid, node.addr, self.now + i as u64);
        cfg.heartbeat_rate = self.cfg.heartbeat_rate;
        cfg.ack_timeout = self.cfg.ack_timeout;
        cfg.gc_mode = self.cfg.gc_mode;
        cfg.lifeguard = self.cfg.lifeguard;
        cfg.push_news = self.cfg.push_news;
        let seed = mix(self.seed ^ mix(i as u64) ^ node.life.rotate_left(40));
        node.swim = Some(Swim::new(cfg, seed, self.now).expect("valid node config"));
        node.timer_at = None;
        self.sync(i);
    }

    // ===== inspection =====

    pub fn now(&self) -> u64 {
        self.now
    }

    /// Simulated time since the start, in heartbeat periods.
    pub fn rounds(&self) -> f64 {
        (self.now - EPOCH) as f64 / self.cfg.heartbeat_rate as f64
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// Node i's core; panics if it is killed (a test bug).
    pub fn swim(&self, i: usize) -> &Swim {
        self.nodes[i].swim.as_ref().expect("node is running")
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].swim.is_some()
    }

    /// What node `observer` thinks of node `subject`'s status, if it knows it.
    pub fn status(&self, observer: usize, subject: usize) -> Option<Status> {
        let s = self.nodes[observer].swim.as_ref()?;
        s.member(&self.nodes[subject].uuid).map(|m| m.status())
    }

    /// True when every running node knows every running node as alive.
    pub fn all_alive_known(&self) -> bool {
        let running: Vec<usize> = (0..self.len()).filter(|&i| self.is_running(i)).collect();
        // Cheap check first: table sizes.
        if running.iter().any(|&i| self.swim(i).size() < running.len()) {
            return false;
        }
        running
            .iter()
            .all(|&o| running.iter().all(|&s| self.status(o, s) == Some(Status::Alive)))
    }

    // ===== control =====

    /// Run a closure on node i's core at the current time, then collect its outputs.
    pub fn with<R>(&mut self, i: usize, f: impl FnOnce(&mut Swim, u64) -> R) -> R {
        let now = self.now;
        let r = f(self.nodes[i].swim.as_mut().expect("node is running"), now);
        self.sync(i);
        r
    }

    /// Node i learns node j (`add_member`).
    pub fn join(&mut self, i: usize, j: usize) {
        let (uuid, addr) = (self.nodes[j].uuid, self.nodes[j].addr);
        self.with(i, |s, now| {
            let _ = s.add_member(uuid, addr, now);
        });
    }

    /// Every node but `seed` learns `seed`.
    pub fn join_all_through(&mut self, seed: usize) {
        for i in 0..self.len() {
            if i != seed {
                self.join(i, seed);
            }
        }
    }

    /// Every node learns every other node (a fully configured cluster): `add_member` of
    /// each in turn, with the table reserved first (a full mesh of 10,000 grown by doubling
    /// would hold up to 60 % more than it needs).
    pub fn join_full(&mut self) {
        let n = self.len();
        let peers: Vec<(Uuid, SocketAddrV4)> = self.nodes.iter().map(|node| (node.uuid, node.addr)).collect();
        for i in 0..n {
            if !self.is_running(i) {
                continue;
            }
            self.with(i, |s, now| {
                s.reserve(n.saturating_sub(s.size()));
                for (j, &(uuid, addr)) in peers.iter().enumerate() {
                    if j != i {
                        let _ = s.add_member(uuid, addr, now);
                    }
                }
            });
        }
    }

    /// [`Cluster::join_full`], then every node also learns every other node's real
    /// incarnation (`add_member` knows only the address and starts at `{0, 0}`), handed to
    /// it as gossip packets of 26 records each, as if one member had gossiped its whole
    /// table. Without it each node learns the incarnations from random anti-entropy slices,
    /// and its dissemination queue stays full for about N ln N / 50 rounds; after this, it
    /// empties within one TTD (ceil(log2 N) + 1 rounds) and the cluster is quiet.
    pub fn join_full_converged(&mut self) {
        self.join_full();
        let records: Vec<MemberRecord> = (0..self.len())
            .filter_map(|j| {
                let m = self.nodes[j].swim.as_ref()?.self_member();
                Some(MemberRecord {
                    status: Status::Alive,
                    addr: m.addr(),
                    uuid: m.uuid(),
                    incarnation: m.incarnation(),
                    payload: None,
                })
            })
            .collect();
        for i in 0..self.len() {
            if !self.is_running(i) {
                continue;
            }
            let teller = (i + 1) % self.len();
            let (src, src_uuid) = (self.nodes[teller].addr, self.nodes[teller].uuid);
            for chunk in records.chunks(26) {
                let packet = Packet {
                    meta: Meta {
                        version: TARANTOOL_VERSION,
                        src,
                        route: None,
                    },
                    body: Body {
                        src_uuid,
                        failure_detection: None,
                        dissemination: Some(chunk.to_vec()),
                        anti_entropy: None,
                        quit: None,
                    },
                };
                self.with(i, |s, now| s.handle_packet(packet, now));
            }
        }
    }

    /// Loss probability of every link, in percent.
    pub fn set_loss(&mut self, pct: f64) {
        self.cfg.loss = pct / 100.0;
    }

    /// Loss probability of the link a → b only, in percent.
    pub fn set_link_loss(&mut self, a: usize, b: usize, pct: f64) {
        self.link_loss.insert((a, b), pct / 100.0);
    }

    /// Cut the links between a and b, both ways.
    pub fn partition(&mut self, a: usize, b: usize) {
        self.blocked.insert((a, b));
        self.blocked.insert((b, a));
    }

    /// Cut every link between the two groups.
    pub fn partition_groups(&mut self, a: &[usize], b: &[usize]) {
        for &x in a {
            for &y in b {
                self.partition(x, y);
            }
        }
    }

    /// Remove all partitions and per-link loss.
    pub fn heal(&mut self) {
        self.blocked.clear();
        self.link_loss.clear();
    }

    /// Stop node i with no goodbye (`s:delete()` or `kill -9`).
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].swim = None;
        self.nodes[i].life += 1;
        self.nodes[i].timer_at = None;
    }

    /// Start node i again: same UUID and address, a new generation, an empty table.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.start(i);
    }

    /// Node i quits gracefully; its quit packets go out, then it is gone.
    pub fn quit(&mut self, i: usize) {
        self.with(i, |s, now| s.quit(now));
        self.kill(i);
    }

    // ===== running =====

    /// Handle the next event; false when the queue is empty.
    pub fn step(&mut self) -> bool {
        let Some((at, action)) = self.queue.pop() else {
            return false;
        };
        self.now = self.now.max(at);
        self.steps += 1;
        match action {
            Action::Timer { node, life, at } => {
                let n = &mut self.nodes[node];
                if n.life != life || n.timer_at != Some(at) {
                    return true;
                }
                n.timer_at = None;
                if let Some(s) = n.swim.as_mut() {
                    s.handle_timer(self.now);
                    self.sync(node);
                }
            }
            Action::Deliver { from, to, packet } => {
                let Some(&dst) = self.by_addr.get(&to) else {
                    self.unreachable(from, to);
                    return true;
                };
                self.nodes[dst].inflight -= 1;
                if self.blocked.contains(&(from, dst)) {
                    self.net.blocked += 1;
                    return true;
                }
                match self.nodes[dst].swim.as_mut() {
                    Some(s) => {
                        self.net.delivered += 1;
                        s.handle_packet(*packet, self.now);
                        self.sync(dst);
                    }
                    None => self.unreachable(from, to),
                }
            }
            Action::Refused { node, to } => {
                if let Some(s) = self.nodes[node].swim.as_mut() {
                    s.handle_refused(to, self.now);
                    self.sync(node);
                }
            }
        }
        true
    }

    /// A datagram from `from` found nobody at `to`: it vanishes, or with
    /// `ClusterConfig::refusals` the refusal travels back.
    fn unreachable(&mut self, from: usize, to: SocketAddrV4) {
        self.net.unreachable += 1;
        if self.cfg.refusals {
            self.net.refused += 1;
            let at = self.now + self.link_delay();
            self.push(at, Action::Refused { node: from, to });
        }
    }

    /// One datagram's trip time, from the configured range.
    fn link_delay(&mut self) -> u64 {
        let (lo, hi) = self.cfg.delay;
        if hi > lo {
            self.rng.random_range(lo..=hi)
        } else {
            lo
        }
    }

    /// Run until virtual time `until` (µs, absolute).
    pub fn run_to(&mut self, until: u64) {
        while let Some(at) = self.queue.next_at() {
            if at > until {
                break;
            }
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// Run for `dur` µs of virtual time.
    pub fn run_for(&mut self, dur: u64) {
        self.run_to(self.now + dur);
    }

    /// Run for `n` heartbeat periods.
    pub fn run_rounds(&mut self, n: f64) {
        self.run_for((n * self.cfg.heartbeat_rate as f64) as u64);
    }

    /// Advance in slices of a tenth of a heartbeat until `pred` holds (returns the time it
    /// took, µs) or `max_time` µs pass (returns `None`).
    pub fn run_until(&mut self, mut pred: impl FnMut(&Cluster) -> bool, max_time: u64) -> Option<u64> {
        let start = self.now;
        let slice = (self.cfg.heartbeat_rate / 10).max(1);
        loop {
            if pred(self) {
                return Some(self.now - start);
            }
            if self.now - start >= max_time {
                return None;
            }
            self.run_for(slice.min(max_time - (self.now - start)));
        }
    }

    /// Collect node i's outputs: packets onto the network, events into the checks, and its
    /// next deadline onto the queue.
    fn sync(&mut self, i: usize) {
        let Some(s) = self.nodes[i].swim.as_mut() else { return };
        let out = s.take_outgoing();
        let events = s.take_events();
        let deadline = s.next_deadline();
        for e in events {
            if e.mask & event::NEW_STATUS == 0 {
                continue;
            }
            let s = self.nodes[i].swim.as_ref().expect("running");
            if s.member(&e.uuid).map(|m| m.status()) != Some(Status::Dead) {
                continue;
            }
            let subject = self.nodes.iter().position(|n| n.uuid == e.uuid);
            if subject.is_some_and(|j| self.nodes[j].swim.is_some()) {
                self.false_deaths.push(FalseDeath {
                    at: self.now,
                    observer: i,
                    subject: e.uuid,
                });
            }
        }
        for o in out {
            self.net.sent += 1;
            let dst = self.by_addr.get(&o.to).copied();
            let loss = dst
                .and_then(|d| self.link_loss.get(&(i, d)).copied())
                .unwrap_or(self.cfg.loss);
            if loss > 0.0 && self.rng.random::<f64>() < loss {
                self.net.lost += 1;
                continue;
            }
            if let Some(d) = dst {
                if self.nodes[d].inflight >= self.cfg.rx_capacity {
                    self.net.overflow += 1;
                    continue;
                }
                self.nodes[d].inflight += 1;
            }
            let delay = self.link_delay();
            self.push(
                self.now + delay,
                Action::Deliver {
                    from: i,
                    to: o.to,
                    packet: Box::new(o.packet),
                },
            );
        }
        let node = &mut self.nodes[i];
        if let Some(at) = deadline {
            let at = at.max(self.now);
            if node.timer_at != Some(at) {
                node.timer_at = Some(at);
                let life = node.life;
                self.push(at, Action::Timer { node: i, life, at });
            }
        } else {
            node.timer_at = None;
        }
    }

    fn push(&mut self, at: u64, action: Action) {
        self.queue.push(at, action);
    }
}

#[cfg(test)]
mod tests;
