//! The replica set as this instance follows it (Tarantool 2.6's `replication.cc`): the
//! appliers of `box.cfg.replication`, how many of them are connected and synced, the orphan
//! status that follows from that, the choice of a bootstrap master, and the upstream part
//! of `box.info.replication`.
//!
//! Orphan: an instance synced with fewer upstreams than `replication_connect_quorum` (all
//! of them by default) is read-only, `box.info.status` 'orphan'. It becomes one only while
//! `box.cfg` connects (at start after local recovery, or when `replication` changes) and
//! waits up to `replication_sync_timeout` for the upstreams to catch up; it leaves that
//! status as soon as enough of them follow. As in 2.6, losing upstreams later does not make
//! it an orphan again.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::rc::Rc;
use std::time::Duration;

use mlua::prelude::*;
use tokio::sync::watch;
use uuid::Uuid;

use super::applier::{Applier, Gate, State};
use super::cfg;
use super::replica_proto::Ballot;
use crate::box_::db::Db;
use crate::box_::errcode::*;
use crate::box_::error::ClientError;
use crate::box_::lua as box_lua;
use crate::box_::mp::{self, Mp};
use crate::box_::schema;
use crate::box_::status::{self, Status};
use crate::client_error;
use crate::modules::log::{self, Level};

struct ReplicaSet {
    appliers: Vec<Rc<Applier>>,
    /// Bumped on every applier state change: box.cfg's waits watch it.
    changes: watch::Sender<u64>,
}

thread_local! {
    static SET: RefCell<ReplicaSet> = RefCell::new(ReplicaSet {
        appliers: Vec::new(),
        changes: watch::channel(0).0,
    });
}

/// The appliers of the current `box.cfg.replication`.
pub fn appliers() -> Vec<Rc<Applier>> {
    SET.with(|s| s.borrow().appliers.clone())
}

fn install(appliers: Vec<Rc<Applier>>) {
    SET.with(|s| s.borrow_mut().appliers = appliers);
}

fn watch_changes() -> watch::Receiver<u64> {
    SET.with(|s| s.borrow().changes.subscribe())
}

/// An applier changed state: wake the waits; one that follows may end orphan mode.
pub fn on_state_change(state: State) {
    SET.with(|s| s.borrow().changes.send_modify(|n| *n += 1));
    if state == State::Follow && status::is_configured() {
        check_quorum();
    }
}

/// The replica set UUID (`_schema` key `cluster`).
pub fn replicaset_uuid(db: &Db) -> Option<Uuid> {
    let space = db.schema.space(schema::SCHEMA_ID)?;
    space.primary()?.tuples().find_map(|t| {
        let mut f = t.fields();
        match (f.next(), f.next()) {
            (Some(k), Some(v)) if k == b"\xa7cluster" => match mp::read(v, 0) {
                Ok((Mp::Str(s), _)) => Uuid::parse_str(&String::from_utf8_lossy(s)).ok(),
                _ => None,
            },
            _ => None,
        }
    })
}

/// Appliers by what they are doing, as `replicaset.applier` counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub total: usize,
    /// Connected to their peer (the instance itself counts).
    pub connected: usize,
    /// Following their peer closely enough (`replication_sync_lag`); the instance itself.
    pub synced: usize,
    /// Waiting for their peer to finish loading, or for access.
    pub loading: usize,
    /// Stopped or cancelled for good.
    pub failed: usize,
}

pub fn count(appliers: &[Rc<Applier>]) -> Counts {
    let mut c = Counts {
        total: appliers.len(),
        ..Counts::default()
    };
    for a in appliers {
        let s = a.counted_state();
        let itself = a.is_self() && s == State::Off;
        if matches!(s, State::Connected | State::Follow) || itself {
            c.connected += 1;
        }
        if s == State::Follow || itself {
            c.synced += 1;
        }
        if s == State::Loading {
            c.loading += 1;
        }
        if a.is_finished() && !a.is_self() {
            c.failed += 1;
        }
    }
    c
}

/// Read-only or not for want of upstreams. `announce`: also the status and the log lines
/// (`box_set_orphan`); without it only the read-only side (`box_do_set_orphan`, while
/// box.cfg reconnects).
pub fn set_orphan(lua: &Lua, orphan: bool, announce: bool) {
    status::set_orphan(orphan);
    box_lua::with_runtime(|rt| rt.db.set_ro(|r| r.orphan = orphan));
    if !announce {
        return;
    }
    if orphan {
        log::write(lua, Level::Crit, "entering orphan mode");
        status::set_status(Status::Orphan);
    } else {
        log::write(lua, Level::Crit, "leaving orphan mode");
        status::set_status(Status::Running);
    }
}

/// `replicaset_check_quorum`: enough upstreams follow: not an orphan any more.
pub fn check_quorum() {
    let appliers = appliers();
    let c = count(&appliers);
    if c.synced >= cfg::get().quorum(c.total) {
        if let Some(lua) = LUA.with(|l| l.borrow().as_ref().and_then(|w| w.try_upgrade())) {
            set_orphan(&lua, false, true);
        }
    }
}

thread_local! {
    /// For the log lines of state changes that happen outside any Lua call.
    static LUA: RefCell<Option<mlua::WeakLua>> = const { RefCell::new(None) };
}

/// Remembers the Lua state for logging (set when replication is configured).
pub fn set_lua(lua: &Lua) {
    LUA.with(|l| *l.borrow_mut() = Some(lua.weak()));
}

/// Waits until `done(counts)` or the deadline; returns the last counts.
async fn wait_until(appliers: &[Rc<Applier>], timeout: Duration, done: impl Fn(&Counts) -> bool) -> Counts {
    let deadline = tokio::time::Instant::now() + timeout.min(Duration::from_secs(100 * 365 * 86400));
    let mut changes = watch_changes();
    loop {
        changes.borrow_and_update();
        let c = count(appliers);
        if done(&c) {
            return c;
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => {}
            _ => return count(appliers),
        }
    }
}

/// `replicaset_connect`: starts `appliers` (stopped at CONNECTED) and waits up to
/// `replication_connect_timeout` for all of them, or only for the quorum unless
/// `connect_quorum` (a first start must hear everyone it can, so that all choose the same
/// bootstrap master). Fewer than the quorum with `connect_quorum` is an error.
pub async fn connect(lua: &Lua, appliers: &[Rc<Applier>], connect_quorum: bool) -> Result<(), ClientError> {
    set_lua(lua);
    let total = appliers.len();
    log::write(lua, Level::Info, &format!("connecting to {total} replicas"));
    for a in appliers {
        a.set_gate(Gate::Hold);
        a.start(lua)
            .map_err(|e| client_error!(ER_CFG, "replication", e.to_string()))?;
    }
    let c = cfg::get();
    let quorum = c.quorum(total);
    let connected = |a: &[Rc<Applier>]| a.iter().filter(|a| a.was_connected()).count();
    let done = wait_until(appliers, cfg::secs(c.connect_timeout), |counts| {
        let n = connected(appliers);
        n >= total || (n >= quorum && !connect_quorum) || total - counts.failed < quorum
    })
    .await;
    let _ = done;
    let n = connected(appliers);
    if n < total {
        log::write(
            lua,
            Level::Crit,
            &format!("failed to connect to {} out of {total} replicas", total - n),
        );
        if connect_quorum && n < quorum {
            return Err(client_error!(
                ER_CFG,
                "replication",
                "failed to connect to one or more replicas"
            ));
        }
    } else {
        log::write(lua, Level::Info, &format!("connected to {n} replicas"));
    }
    // Two URIs leading to one instance.
    let mut seen = std::collections::HashSet::new();
    for a in appliers.iter().filter(|a| a.was_connected()) {
        if let Some(u) = a.uuid() {
            if !seen.insert(u) {
                return Err(client_error!(
                    ER_CFG,
                    "replication",
                    "duplicate connection to the same replica"
                ));
            }
        }
    }
    Ok(())
}

/// Box runs: `appliers` become the replica set's and go on to subscribe.
pub fn adopt(appliers: Vec<Rc<Applier>>) {
    follow(&appliers);
    install(appliers);
}

/// `replicaset_follow`: every applier goes on to subscribe.
pub fn follow(appliers: &[Rc<Applier>]) {
    for a in appliers {
        a.set_gate(Gate::Proceed);
    }
}

/// `replicaset_sync`: waits up to `replication_sync_timeout` for the quorum of upstreams to
/// follow; the instance is an orphan if they do not.
pub async fn sync(lua: &Lua) {
    let appliers = appliers();
    let c = cfg::get();
    let quorum = c.quorum(appliers.len());
    if quorum == 0 {
        set_orphan(lua, false, true);
        return;
    }
    log::write(lua, Level::Info, &format!("synchronizing with {quorum} replicas"));
    let counts = wait_until(&appliers, cfg::secs(c.sync_timeout), |c| {
        c.synced >= quorum || c.connected + c.loading < quorum
    })
    .await;
    if counts.synced < quorum {
        log::write(
            lua,
            Level::Crit,
            &format!(
                "failed to synchronize with {} out of {} replicas",
                counts.total - counts.synced,
                counts.total
            ),
        );
        set_orphan(lua, true, true);
    } else {
        log::write(lua, Level::Info, "replica set sync complete");
        set_orphan(lua, false, true);
    }
}

/// `box.cfg{replication = ...}` after start (`box_set_replication`): the new appliers
/// connect (orphan meanwhile), replace the old ones, subscribe, and box.cfg waits for
/// them to sync.
pub async fn reconfigure(lua: &Lua, sources: &[String]) -> Result<(), ClientError> {
    let mut fresh = Vec::new();
    for s in sources {
        fresh.push(
            Applier::new(s)
                .ok_or_else(|| client_error!(ER_CFG, "replication", "expected host:service or /unix.socket"))?,
        );
    }
    if !fresh.is_empty() {
        set_orphan(lua, true, false);
        if let Err(e) = connect(lua, &fresh, false).await {
            for a in &fresh {
                a.stop().await;
            }
            return Err(e);
        }
    }
    for old in appliers() {
        old.stop().await;
    }
    install(fresh.clone());
    follow(&fresh);
    sync(lua).await;
    Ok(())
}

/// A candidate bootstrap master: an instance that answered VOTE (or this one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub uuid: Uuid,
    pub ballot: Ballot,
}

/// `replicaset_leader`: the writable candidate with the newest vclock (an instance that
/// finished loading before one that has not; equal vclocks: the lowest UUID). Read-only
/// ones only if no candidate is writable. Returns an index into `candidates`.
pub fn choose_leader(candidates: &[Candidate]) -> Option<usize> {
    round(candidates, true).or_else(|| round(candidates, false))
}

fn round(candidates: &[Candidate], skip_ro: bool) -> Option<usize> {
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by_key(|&i| candidates[i].uuid);
    let mut leader: Option<usize> = None;
    for i in order {
        let c = &candidates[i];
        if skip_ro && c.ballot.is_ro {
            continue;
        }
        let Some(l) = leader else {
            leader = Some(i);
            continue;
        };
        let l = &candidates[l];
        if c.ballot.is_loading && !l.ballot.is_loading {
            continue;
        }
        // Compared without component 0 (ballots carry none); incomparable replaces.
        match c.ballot.vclock.compare(&l.ballot.vclock) {
            Some(Ordering::Less) => continue,
            Some(Ordering::Equal) if c.uuid > l.uuid => continue,
            _ => leader = Some(i),
        }
    }
    leader
}

/// `box.info.replication[id].upstream` for the instance `uuid`, if an applier follows it.
pub fn upstream_info(lua: &Lua, uuid: &str) -> LuaResult<Option<LuaTable>> {
    let Some(a) = appliers()
        .into_iter()
        .find(|a| a.uuid().is_some_and(|u| u.to_string() == uuid) && a.state() != State::Off)
    else {
        return Ok(None);
    };
    let t = lua.create_table()?;
    t.set("status", a.state().name())?;
    if a.is_running() {
        t.set("lag", a.lag())?;
        t.set("idle", a.idle())?;
        t.set("peer", a.peer.as_str())?;
        if let Some(m) = a.message() {
            t.set("message", m)?;
        }
    }
    Ok(Some(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::box_::wal::vclock::Vclock;

    fn cand(n: u8, ro: bool, loading: bool, lsns: &[(u32, i64)]) -> Candidate {
        let mut vclock = Vclock::new();
        for &(id, lsn) in lsns {
            vclock.follow(id, lsn);
        }
        Candidate {
            uuid: Uuid::from_bytes([n; 16]),
            ballot: Ballot {
                is_ro: ro,
                is_loading: loading,
                vclock,
                ..Ballot::default()
            },
        }
    }

    #[test]
    fn the_writable_one_leads_a_fresh_cluster() {
        // The lecture demo: four fresh nodes, only 3301 writable.
        let c = [
            cand(4, true, true, &[]),
            cand(9, false, true, &[]),
            cand(1, true, true, &[]),
            cand(7, true, true, &[]),
        ];
        assert_eq!(choose_leader(&c), Some(1));
    }

    #[test]
    fn ties_go_to_the_lowest_uuid_and_vclocks_decide_first() {
        let c = [
            cand(5, false, true, &[]),
            cand(2, false, true, &[]),
            cand(8, false, true, &[]),
        ];
        assert_eq!(choose_leader(&c), Some(1));
        let c = [cand(5, false, true, &[(1, 3)]), cand(2, false, true, &[(1, 2)])];
        assert_eq!(choose_leader(&c), Some(0));
    }

    #[test]
    fn a_loading_instance_does_not_displace_a_running_one() {
        let c = [cand(1, false, false, &[(1, 1)]), cand(2, false, true, &[(1, 9)])];
        assert_eq!(choose_leader(&c), Some(0));
        // Met the other way round, the vclock decides (as in 2.6).
        let c = [cand(1, false, true, &[(1, 9)]), cand(2, false, false, &[(1, 1)])];
        assert_eq!(choose_leader(&c), Some(0));
    }

    #[test]
    fn read_only_ones_lead_only_when_nothing_is_writable() {
        let c = [cand(3, true, false, &[(1, 1)]), cand(1, true, false, &[(1, 5)])];
        assert_eq!(choose_leader(&c), Some(1));
        assert_eq!(choose_leader(&[]), None);
    }
}
