//! The election driver: runs the Raft core (`box_::raft::core`) on the Lua thread. It
//! persists term and vote as RAFT rows, publishes the state for the relays, feeds the core
//! what the appliers hear, arms its timer, makes box read-only or writable with the role,
//! and has a new leader take the synchronous queue over (2.6.3's `box_promote`).

use std::cell::RefCell;
use std::rc::Rc;

use tokio::sync::Notify;

use crate::box_::error::ClientError;
use crate::box_::lua::{wal_written, with_runtime};
use crate::box_::persist::now_us;
use crate::box_::raft::core::{Config, ElectionMode, InstanceId, Output, Raft, RaftMessage, Role, Status, SECOND};
use crate::box_::raft::limbo::Promotion;
use crate::box_::wal::mp::{put_map_len, put_uint, Cursor};
use crate::box_::wal::vclock::{Vclock, VCLOCK_MAX};

use super::hub;

struct Election {
    raft: Raft,
    /// Rings when the core has outputs or a new deadline.
    wakeup: Rc<Notify>,
    /// What each replica acknowledged (relay ACKs), for a promotion's quorum wait.
    acked: [Option<Vclock>; VCLOCK_MAX],
    /// The leader's take-over of the synchronous queue, while it waits for the quorum.
    promotion: Option<Promotion>,
    log: Vec<String>,
    /// What the last status line said (role, term, leader, enabled).
    last_logged: Option<(Role, u64, InstanceId, bool)>,
}

thread_local! {
    static ELECTION: RefCell<Option<Election>> = const { RefCell::new(None) };
}

fn with_election<R>(f: impl FnOnce(&mut Election) -> R) -> Option<R> {
    ELECTION.with(|e| e.try_borrow_mut().ok()?.as_mut().map(f))
}

/// The election options of `box.cfg` (times in seconds, as given).
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: ElectionMode,
    pub election_timeout: f64,
    pub replication_timeout: f64,
    pub election_quorum: usize,
    pub pre_vote: bool,
    pub fencing: bool,
    pub fast_failover: bool,
}

fn micros(seconds: f64) -> u64 {
    (seconds.max(0.0) * SECOND as f64) as u64
}

/// Starts the driver at `box.cfg` time with the recovered term and vote; `lua` receives
/// its log lines.
pub fn start(lua: mlua::WeakLua, id: InstanceId, term: u64, vote: InstanceId, opts: &Options) {
    let now = now_us();
    let mut cfg = Config::new(id);
    cfg.mode = opts.mode;
    cfg.election_timeout = micros(opts.election_timeout);
    cfg.death_timeout = 4 * micros(opts.replication_timeout);
    cfg.election_quorum = opts.election_quorum;
    cfg.pre_vote = opts.pre_vote;
    cfg.fencing = opts.fencing;
    cfg.fast_failover = opts.fast_failover;
    let seed = now ^ (std::process::id() as u64) << 32 ^ id as u64;
    let raft = Raft::new(cfg, term, vote, seed, now);
    let wakeup = Rc::new(Notify::new());
    ELECTION.with(|e| {
        *e.borrow_mut() = Some(Election {
            raft,
            wakeup: wakeup.clone(),
            acked: [None; VCLOCK_MAX],
            promotion: None,
            log: Vec::new(),
            last_logged: None,
        })
    });
    hub::set_driver(Rc::new(HubDriver));
    let status = with_election(|e| e.raft.status());
    if let Some(s) = status {
        with_runtime(|rt| rt.db.set_ro(|r| r.election = s.is_ro));
    }
    tokio::task::spawn_local(run(lua, wakeup));
}

/// `box.cfg` changed an election option.
pub fn configure(opts: &Options) {
    let now = now_us();
    with_election(|e| {
        let r = &mut e.raft;
        r.set_election_timeout(micros(opts.election_timeout), now);
        r.set_death_timeout(4 * micros(opts.replication_timeout), now);
        r.set_election_quorum(opts.election_quorum, now);
        r.set_pre_vote(opts.pre_vote, now);
        r.set_fencing(opts.fencing, now);
        r.set_fast_failover(opts.fast_failover);
        if r.mode() != opts.mode {
            e.log.push(format!("RAFT: election_mode = {}", opts.mode.name()));
            r.set_mode(opts.mode, now);
        }
        e.wakeup.notify_one();
        r.status()
    })
    .map(|s| with_runtime(|rt| rt.db.set_ro(|r| r.election = s.is_ro)));
}

/// The instance got its id (a join registered it).
pub fn is_running() -> bool {
    with_election(|_| ()).is_some()
}

/// The term and vote on disk.
pub fn persisted_state() -> Option<(u64, InstanceId)> {
    with_election(|e| e.raft.persisted_state())
}

/// `box.info.election`: state, term, vote, leader, leader_idle (seconds, nil without a leader).
pub fn status() -> Option<(Status, Option<f64>)> {
    let now = now_us();
    with_election(|e| {
        (
            e.raft.status(),
            e.raft.leader_idle(now).map(|us| us as f64 / SECOND as f64),
        )
    })
}

/// `box.ctl.promote()`: manual mode stands in a new term; then, as leader, the synchronous
/// queue is taken over. Returns once this node leads (or with the core's error).
pub async fn promote() -> Result<(), ClientError> {
    let now = now_us();
    let mode = with_election(|e| {
        let r = e.raft.promote(now);
        e.wakeup.notify_one();
        r.map(|()| e.raft.mode())
    })
    .unwrap_or(Ok(ElectionMode::Off))?;
    if mode == ElectionMode::Off {
        // No elections: promote takes the queue over in the current term.
        let term = with_election(|e| e.raft.volatile_term()).unwrap_or(1);
        start_promotion(term);
        wait_promoted().await;
        return Ok(());
    }
    loop {
        let (leader, role) = with_election(|e| (e.raft.leader(), e.raft.role())).unwrap_or((0, Role::Follower));
        let me = with_election(|e| e.raft.id()).unwrap_or(0);
        if role == Role::Leader {
            wait_promoted().await;
            return Ok(());
        }
        if leader != 0 && leader != me {
            return Err(crate::client_error!(
                crate::box_::errcode::ER_INTERFERING_PROMOTE,
                leader
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Until the take-over of the synchronous queue has ended (its PROMOTE is written and
/// applied, or it gave up): box.ctl.promote() returns only then, as in Tarantool.
async fn wait_promoted() {
    loop {
        let promoting = with_election(|e| e.promotion.is_some()).unwrap_or(false);
        let writing = with_runtime(|rt| rt.persist.as_ref().is_some_and(|p| p.limbo.is_in_rollback())).unwrap_or(false);
        if !promoting && !writing {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

/// `box.ctl.demote()` (2.10): a leader steps down; with elections on it stops standing
/// until configured again.
pub fn demote() {
    let now = now_us();
    with_election(|e| {
        if e.raft.role() == Role::Leader || e.raft.mode() == ElectionMode::Manual {
            let mode = e.raft.mode();
            e.raft.set_mode(ElectionMode::Voter, now);
            e.raft.set_mode(mode, now);
            e.wakeup.notify_one();
        }
    });
}

fn take_log() -> Vec<String> {
    with_election(|e| std::mem::take(&mut e.log)).unwrap_or_default()
}

/// Encodes a RAFT row's body: `{0 term, 1 vote, 2 state, 3 vclock, 4 leader_id, 5 is_leader_seen}`
/// (zero vote and state left out, vclock only from candidates, as 2.6.3's `xrow_encode_raft`).
pub fn encode_message(msg: &RaftMessage) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    let mut n = 1;
    n += (msg.vote != 0) as u32;
    n += msg.state.is_some() as u32;
    n += msg.vclock.is_some() as u32;
    n += (msg.leader_id != 0) as u32 + msg.is_leader_seen as u32;
    put_map_len(&mut out, n);
    put_uint(&mut out, 0);
    put_uint(&mut out, msg.term);
    if msg.vote != 0 {
        put_uint(&mut out, 1);
        put_uint(&mut out, msg.vote as u64);
    }
    if let Some(state) = msg.state {
        put_uint(&mut out, 2);
        put_uint(&mut out, state.code() as u64);
    }
    if let Some(v) = &msg.vclock {
        put_uint(&mut out, 3);
        v.encode_mp(&mut out);
    }
    if msg.leader_id != 0 {
        put_uint(&mut out, 4);
        put_uint(&mut out, msg.leader_id as u64);
    }
    if msg.is_leader_seen {
        put_uint(&mut out, 5);
        out.push(0xc3);
    }
    out
}

/// Decodes a RAFT row's body; unknown keys are skipped (later versions add some).
pub fn decode_message(body: &[u8]) -> Result<RaftMessage, String> {
    let bad = |e: crate::box_::wal::mp::MpError| format!("invalid RAFT body: {e}");
    let mut c = Cursor::new(body);
    let n = c.read_map_len().map_err(bad)?;
    let mut msg = RaftMessage {
        term: 0,
        vote: 0,
        state: None,
        vclock: None,
        leader_id: 0,
        is_leader_seen: false,
    };
    for _ in 0..n {
        match c.read_uint().map_err(bad)? {
            0 => msg.term = c.read_uint().map_err(bad)?,
            1 => msg.vote = id_of(c.read_uint().map_err(bad)?)?,
            2 => msg.state = Role::from_code(c.read_uint().map_err(bad)?),
            3 => {
                let (v, used) = Vclock::decode_mp(c.rest()).map_err(bad)?;
                msg.vclock = Some(v);
                c = Cursor::new(&c.rest()[used..]);
            }
            4 => msg.leader_id = id_of(c.read_uint().map_err(bad)?)?,
            5 => msg.is_leader_seen = c.rest().first() == Some(&0xc3) && c.skip().is_ok(),
            _ => c.skip().map_err(bad)?,
        }
    }
    Ok(msg)
}

/// A message as Tarantool's log shows it: `{term: 3, vote: 4, state: candidate, vclock: {1: 13}}`.
fn describe(msg: &RaftMessage) -> String {
    let mut s = format!("{{term: {}", msg.term);
    if msg.vote != 0 {
        s += &format!(", vote: {}", msg.vote);
    }
    if let Some(state) = msg.state {
        s += &format!(", state: {}", state.name());
    }
    if let Some(v) = &msg.vclock {
        s += &format!(", vclock: {v:?}");
    }
    if msg.leader_id != 0 {
        s += &format!(", leader: {}", msg.leader_id);
    }
    s + "}"
}

fn id_of(v: u64) -> Result<InstanceId, String> {
    u32::try_from(v)
        .ok()
        .filter(|&id| (id as usize) < VCLOCK_MAX)
        .ok_or_else(|| format!("invalid RAFT body: instance id {v} out of range"))
}

/// The driver loop: carries out the core's outputs and fires its timer.
async fn run(lua: mlua::WeakLua, wakeup: Rc<Notify>) {
    loop {
        if let Some(lua) = lua.try_upgrade() {
            for line in take_log() {
                crate::modules::log::write(&lua, crate::modules::log::Level::Info, &line);
            }
        }
        let now = now_us();
        let vclock = with_runtime(|rt| rt.persist.as_ref().map(|p| p.vclock)).flatten();
        let outputs = with_election(|e| {
            if let Some(v) = &vclock {
                e.raft.set_vclock(v);
            }
            if e.raft.next_deadline().is_some_and(|d| d <= now) {
                e.raft.handle_timer(now);
            }
            e.raft.take_outputs()
        })
        .unwrap_or_default();
        for out in outputs {
            match out {
                Output::Persist { term, vote } => persist(term, vote).await,
                Output::Broadcast(msg) => hub::publish_raft_state(encode_message(&msg)),
                Output::Update(status) => on_status(status),
            }
        }
        if with_election(|e| !e.raft.has_outputs()).unwrap_or(true) {
            let deadline = with_election(|e| e.raft.next_deadline()).flatten();
            match deadline {
                Some(at) => {
                    let wait = std::time::Duration::from_micros(at.saturating_sub(now_us()));
                    let _ = tokio::time::timeout(wait, wakeup.notified()).await;
                }
                None => wakeup.notified().await,
            }
        }
    }
}

/// Writes `{term, vote}` and tells the core once it is durable.
async fn persist(term: u64, vote: InstanceId) {
    loop {
        let ticket = with_runtime(|rt| rt.persist.as_mut().and_then(|p| p.write_raft(term, vote))).flatten();
        let Some(ticket) = ticket else { break };
        match wal_written(ticket).await {
            Ok(()) => break,
            Err(e) => {
                // 2.6.3 panics here ("Failed to write RAFT state"): nothing may be sent
                // that the disk does not hold. Retry; the core keeps waiting meanwhile.
                with_election(|el| el.log.push(format!("RAFT: failed to persist state: {e}")));
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    let now = now_us();
    with_election(|e| {
        e.log
            .push(format!("RAFT: persisted state {{term: {term}, vote: {vote}}}"));
        e.raft.persisted(now);
    });
}

fn on_status(status: Status) {
    let leader_now = status.role == Role::Leader;
    with_election(|e| {
        // With elections off only a new term is news.
        let shown = (status.role, status.term, status.leader, status.is_enabled);
        let last = e.last_logged.replace(shown);
        if last != Some(shown) && (status.is_enabled || last.is_none_or(|l| l.1 != status.term)) {
            e.log.push(format!(
                "RAFT: state {}, term {}, vote {}, leader {}",
                status.role.name(),
                status.term,
                status.vote,
                status.leader
            ));
        }
    });
    with_runtime(|rt| rt.db.set_ro(|r| r.election = status.is_ro));
    if leader_now {
        start_promotion(status.term);
    }
}

/// A new leader takes the synchronous queue over: wait until a quorum holds the old owner's
/// entries, then write PROMOTE (2.6.3's `box_promote` after winning an election).
fn start_promotion(term: u64) {
    let p = with_runtime(|rt| rt.persist.as_ref().and_then(|p| p.limbo.begin_promotion(term))).flatten();
    let Some(p) = p else { return };
    with_election(|e| e.promotion = Some(p));
    tokio::task::spawn_local(async move {
        loop {
            let done = with_runtime(|rt| {
                let own = rt.persist.as_ref().map(|p| p.vclock).unwrap_or_default();
                let acked = with_election(|e| {
                    e.acked
                        .iter()
                        .enumerate()
                        .filter(|(id, v)| *id as u32 != e.raft.id() && v.is_some_and(|v| p.is_held_by(&v)))
                        .count()
                })
                .unwrap_or(0)
                    + p.is_held_by(&own) as usize;
                let persist = rt.persist.as_mut()?;
                let result = persist.limbo.finish_promotion(&p, acked);
                let mut wake = Vec::new();
                persist.run_limbo(&mut rt.db, &mut wake);
                crate::box_::lua::wake_waiters(wake);
                Some(result)
            })
            .flatten();
            match done {
                Some(Ok(false)) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
                Some(Ok(true)) | None => break,
                Some(Err(e)) => {
                    with_election(|el| el.log.push(format!("RAFT: promotion failed: {e}")));
                    break;
                }
            }
            // Still the leader of that term?
            let still = with_election(|e| e.raft.role() == Role::Leader && e.raft.volatile_term() == term);
            if still == Some(false) {
                break;
            }
        }
        with_election(|e| e.promotion = None);
    });
}

/// What the transport reports, handed to the core.
struct HubDriver;

impl hub::Driver for HubDriver {
    fn on_raft_row(&self, source: u32, body: &[u8]) -> Result<(), String> {
        let msg = decode_message(body)?;
        let now = now_us();
        // A vote is granted by comparing vclocks: ours must be current, not as of the
        // driver's last wakeup (rows applied since would be missing from it).
        let vclock = with_runtime(|rt| rt.persist.as_ref().map(|p| p.vclock)).flatten();
        with_election(|e| {
            if let Some(v) = &vclock {
                e.raft.set_vclock(v);
            }
            e.log.push(format!("RAFT: message {} from {source}", describe(&msg)));
            let r = e.raft.handle_message(source, &msg, now).map_err(|err| err.to_string());
            e.wakeup.notify_one();
            r
        })
        .unwrap_or(Ok(()))
    }

    fn on_upstream_traffic(&self, source: u32) {
        let now = now_us();
        with_election(|e| {
            e.raft.handle_heartbeat(source, now);
            e.wakeup.notify_one();
        });
    }

    fn on_upstream_lost(&self, source: u32) {
        let now = now_us();
        with_election(|e| {
            e.raft.handle_peer_disconnected(source, now);
            e.wakeup.notify_one();
        });
    }

    fn accepts_rows_from(&self, source: u32) -> bool {
        with_election(|e| e.raft.is_source_allowed(source)).unwrap_or(true)
    }

    fn on_replica_ack(&self, replica_id: u32, vclock: &Vclock) {
        with_election(|e| {
            if let Some(slot) = e.acked.get_mut(replica_id as usize) {
                *slot = Some(*vclock);
            }
            e.raft.handle_heartbeat(replica_id, now_us());
            e.wakeup.notify_one();
        });
        with_runtime(|rt| {
            let Some(p) = rt.persist.as_mut() else { return };
            let owner = p.limbo.owner();
            if owner == 0 {
                return;
            }
            p.limbo.ack(replica_id, vclock.get(owner));
            let mut wake = Vec::new();
            p.run_limbo(&mut rt.db, &mut wake);
            crate::box_::lua::wake_waiters(wake);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_bodies_round_trip_and_match_tarantool() {
        // The capture's 2.6.3 leader state: {0: 2, 1: 1, 2: 3}.
        let leader = RaftMessage {
            term: 2,
            vote: 1,
            state: Some(Role::Leader),
            vclock: None,
            leader_id: 0,
            is_leader_seen: false,
        };
        assert_eq!(encode_message(&leader), [0x83, 0x00, 0x02, 0x01, 0x01, 0x02, 0x03]);
        let mut v = Vclock::new();
        v.follow(1, 13);
        let candidate = RaftMessage {
            term: 3,
            vote: 4,
            state: Some(Role::Candidate),
            vclock: Some(v),
            leader_id: 0,
            is_leader_seen: false,
        };
        for m in [leader, candidate] {
            assert_eq!(decode_message(&encode_message(&m)), Ok(m));
        }
    }

    #[test]
    fn bad_raft_bodies_are_refused_with_a_reason() {
        assert!(decode_message(&[0x81, 0x00]).unwrap_err().contains("invalid RAFT body"));
        assert!(decode_message(&[0x81, 0x01, 0xcd, 0x01, 0x00])
            .unwrap_err()
            .contains("out of range"));
        // Unknown keys are skipped.
        let m = decode_message(&[0x82, 0x00, 0x05, 0x09, 0xa1, b'x']).unwrap();
        assert_eq!(m.term, 5);
    }
}
