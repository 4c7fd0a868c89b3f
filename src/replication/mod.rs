//! Replication: the relay (master side: VOTE, JOIN, SUBSCRIBE, streaming rows to a replica),
//! the applier (replica side: bootstrap, join, subscribe, applying rows), and the seam between
//! them and the Raft election and synchronous-queue drivers ([`hub`]).
//!
//! Facts: `../shared/spec/box.md` §1.11 and the decoded capture in
//! `../shared/spec/box-observed/replication/`. Both sides are described in
//! docs/replication.md.
//!
//! The master's side: [`proto`] (its half of the wire), [`ballot`] (VOTE), [`wal_feed`],
//! [`wal_reader`] and [`wal_stream`] (the rows a replica lacks, from memory or the xlogs),
//! [`join`], [`relay`] (SUBSCRIBE), [`downstream`] (what box.info shows of the relays).
//!
//! The replica's side (docs/replication.md): [`replica_proto`] (its half of the wire),
//! [`applier`] (one connection to an upstream), [`replicaset`] (the appliers together:
//! orphan status, bootstrap master choice, box.info), [`bootstrap`] (the first box.cfg),
//! [`cfg`] (the `replication_*` options); box's way in for replicated rows is `box_::apply`.

pub mod applier;
pub mod ballot;
pub mod bootstrap;
pub mod cfg;
pub mod downstream;
pub mod election;
pub mod hub;
pub mod join;
pub mod proto;
pub mod relay;
pub mod replica_proto;
pub mod replicaset;
pub mod wal_feed;
pub mod wal_reader;
pub mod wal_stream;

use mlua::prelude::*;

use crate::box_::error::ClientError;
use crate::box_::status;

/// The replication functions of `box.internal` (lua/box.lua's reconfigure calls them).
pub fn install(lua: &Lua, m: &LuaTable) -> LuaResult<()> {
    crate::box_::apply::install(lua, m)?;
    // box.cfg{replication = ...} once box runs: reconnect, then wait for the sync.
    m.set(
        "replication_set",
        lua.create_async_function(|lua, sources: Option<Vec<String>>| async move {
            if !status::is_configured() {
                return Ok(());
            }
            replicaset::reconfigure(&lua, &sources.unwrap_or_default())
                .await
                .map_err(ClientError::into_lua_err)
        })?,
    )?;
    Ok(())
}
