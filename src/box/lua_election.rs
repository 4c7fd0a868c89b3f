//! Lua bindings of elections and the synchronous queue: the election options of `box.cfg`,
//! `box.info.election`, `box.info.synchro`, `box.ctl.promote()`/`demote()`.

use mlua::prelude::*;

use super::lua::with_box;
use super::raft::core::ElectionMode;
use crate::replication::election::{self, Options};

use std::cell::Cell;

thread_local! {
    /// Term and vote as recovery found them, for the driver's start.
    static RECOVERED: Cell<(u64, u32)> = const { Cell::new((1, 0)) };
}

/// Recovery read a RAFT row.
pub fn recovered_raft_state(term: u64, vote: u32) {
    RECOVERED.with(|r| r.set((term.max(1), vote)));
}

/// The rows a checkpoint ends with: the persisted Raft term and vote (`{0: term, 1: vote}`,
/// local group), as 2.6.3's `checkpoint_write_raft` writes them, once there was an election.
pub fn snapshot_trailer() -> Vec<crate::box_::wal::snapshot::TrailerRow> {
    let (term, vote) = election::persisted_state().unwrap_or_else(|| RECOVERED.with(|r| r.get()));
    if term <= 1 && vote == 0 {
        // Nothing to keep; and Tarantool 2.6.0, which has no RAFT rows, can still read the file.
        return Vec::new();
    }
    let body = super::persist::raft_state_body(term, vote);
    vec![(super::wal::row::IPROTO_RAFT, super::wal::row::GROUP_LOCAL, body)]
}

fn seconds(t: &LuaTable, key: &str, default: f64) -> LuaResult<f64> {
    Ok(t.get::<Option<f64>>(key)?.unwrap_or(default))
}

/// `internal.election_cfg{mode, election_timeout, replication_timeout, election_quorum,
/// synchro_quorum, synchro_timeout, pre_vote, fencing}`: the first call starts the driver.
fn election_cfg(lua: &Lua, t: LuaTable) -> LuaResult<()> {
    let mode_name: String = t.get::<Option<String>>("mode")?.unwrap_or_else(|| "off".into());
    let mode = ElectionMode::parse(&mode_name)
        .ok_or_else(|| LuaError::runtime(format!("unknown election_mode '{mode_name}'")))?;
    let opts = Options {
        mode,
        election_timeout: seconds(&t, "election_timeout", 5.0)?,
        replication_timeout: seconds(&t, "replication_timeout", 1.0)?,
        election_quorum: t.get::<Option<usize>>("election_quorum")?.unwrap_or(1),
        pre_vote: t.get::<Option<bool>>("pre_vote")?.unwrap_or(false),
        fencing: t.get::<Option<bool>>("fencing")?.unwrap_or(false),
        fast_failover: t.get::<Option<bool>>("fast_failover")?.unwrap_or(true),
    };
    let synchro_quorum = t.get::<Option<usize>>("synchro_quorum")?.unwrap_or(1);
    let synchro_timeout = seconds(&t, "synchro_timeout", 5.0)?;
    let id = with_box(|rt| {
        let id = rt.persist.as_ref().map_or(1, |p| p.instance_id);
        if let Some(p) = rt.persist.as_mut() {
            p.limbo.set_quorum(synchro_quorum);
            p.limbo.set_synchro_timeout((synchro_timeout * 1e6) as u64);
            let mut wake = Vec::new();
            p.run_limbo(&mut rt.db, &mut wake);
            super::lua::wake_waiters(wake);
            p.synchro_wakeup.notify_one();
        }
        Ok(id)
    })?;
    if election::is_running() {
        election::configure(&opts);
    } else {
        let (term, vote) = RECOVERED.with(|r| r.get());
        election::start(lua.weak(), id, term, vote, &opts);
        tokio::task::spawn_local(super::synchro::run());
    }
    Ok(())
}

pub fn election_info(lua: &Lua, (): ()) -> LuaResult<LuaTable> {
    let t = lua.create_table()?;
    let (term, vote) = RECOVERED.with(|r| r.get());
    match election::status() {
        Some((s, idle)) => {
            t.set("state", s.role.name())?;
            t.set("term", s.term)?;
            t.set("vote", s.vote)?;
            t.set("leader", s.leader)?;
            t.set("leader_idle", idle)?;
        }
        None => {
            t.set("state", "follower")?;
            t.set("term", term)?;
            t.set("vote", vote)?;
            t.set("leader", 0)?;
        }
    }
    Ok(t)
}

pub fn synchro_info(lua: &Lua, (): ()) -> LuaResult<LuaTable> {
    let (owner, len, quorum) = with_box(|rt| {
        Ok(rt
            .persist
            .as_ref()
            .map_or((0, 0, 1), |p| (p.limbo.owner(), p.limbo.len(), p.limbo.quorum())))
    })?;
    let t = lua.create_table()?;
    let queue = lua.create_table()?;
    queue.set("owner", owner)?;
    queue.set("len", len)?;
    t.set("queue", queue)?;
    t.set("quorum", quorum)?;
    Ok(t)
}

pub fn install(lua: &Lua, m: &LuaTable) -> LuaResult<()> {
    m.set("election_cfg", lua.create_function(election_cfg)?)?;
    m.set("election_info", lua.create_function(election_info)?)?;
    m.set("synchro_info", lua.create_function(synchro_info)?)?;
    m.set(
        "promote",
        lua.create_async_function(|_, ()| async { election::promote().await.map_err(|e| e.into_lua_err()) })?,
    )?;
    m.set(
        "demote",
        lua.create_function(|_, ()| {
            election::demote();
            Ok(())
        })?,
    )?;
    Ok(())
}
