//! The master's side of JOIN (2.6.0's `box_process_join`): a new replica gets a copy of the
//! data, is registered in `_cluster`, and then subscribes.
//!
//! 1. Checks, in 2.6.0's order and with its texts: box loaded, not ourselves, read access
//!    to universe; for a replica not registered yet: writable, write access to `_cluster`;
//!    a WAL.
//! 2. The initial stage: a read view of every space that replicates (system spaces first,
//!    in id order; temporary and local ones left out, as memtx's join does), taken at once
//!    on the Lua thread as cheap tuple references, then the WAL synced so that everything
//!    the view shows is written: `OK {VCLOCK: where the view stands}`, each tuple as
//!    `INSERT {SPACE_ID, TUPLE}` (no LSN), in chunks that wait for the socket. Writers go on
//!    meanwhile.
//! 3. The registration: `[next free id, uuid]` inserted into `_cluster` through the normal
//!    commit path, so it is a WAL row of this instance like any other.
//! 4. The final stage: `OK {VCLOCK: stop}`, every WAL row between the read view and `stop`
//!    (the registration among them) with its instance id and LSN, `OK {VCLOCK: now}`.
//!
//! The feed's reader is taken before the read view, so the final stage comes from memory
//! unless the replica was slow enough for the tail to drop it (then from the files).

use mlua::WeakLua;
use uuid::Uuid;

use super::downstream;
use super::proto::{self, Wanted};
use super::relay::{log, relayed, Downlink, Peer, RelayError, HIGH_WATER, SEND_CHUNK};
use super::wal_feed::covers;
use super::wal_stream::WalStream;
use crate::box_::access::PRIV_WRITE;
use crate::box_::db::Request;
use crate::box_::errcode::*;
use crate::box_::error::ClientError;
use crate::box_::lua as box_lua;
use crate::box_::mp;
use crate::box_::schema::{self, Schema};
use crate::box_::tuple::Tuple;
use crate::box_::wal::row::{put_replace_body, RowRef, GROUP_LOCAL, IPROTO_INSERT};
use crate::box_::wal::vclock::{Vclock, VCLOCK_MAX};
use crate::client_error;
use crate::modules::log::Level;

/// The fiber id the registration runs under: no fiber has it, so it never joins a
/// fiber's transaction (as the IPROTO server's own writes).
const NO_FIBER: u64 = u64::MAX;

/// Every tuple of every space a replica gets, system spaces first (2.6.0's `space_foreach`
/// order, which recovery on the replica relies on: `_space` before the spaces it defines).
pub fn read_view(schema: &Schema) -> Vec<(u32, Tuple)> {
    let mut out = Vec::new();
    for space in schema.spaces.values() {
        let def = &space.def;
        if def.temporary || def.group_id == GROUP_LOCAL || def.engine != "memtx" {
            continue;
        }
        if let Some(pk) = space.primary() {
            out.extend(pk.tuples().map(|t| (def.id, t.clone())));
        }
    }
    out
}

/// The smallest id `_cluster` does not have (2.6.0 takes the first gap from 1).
pub fn next_replica_id(schema: &Schema) -> Result<u32, ClientError> {
    let mut id = 1;
    for taken in schema.cluster.keys() {
        if *taken != id {
            break;
        }
        id += 1;
    }
    if id as usize >= VCLOCK_MAX {
        return Err(client_error!(ER_REPLICA_MAX, VCLOCK_MAX as u32));
    }
    Ok(id)
}

/// The synchronous queue's rollbacks so far: a JOIN fails if one happens while it runs.
fn limbo_rollbacks() -> u64 {
    box_lua::with_runtime(|rt| rt.persist.as_ref().map(|p| p.limbo.rollback_count()))
        .flatten()
        .unwrap_or(0)
}

/// Waits until the synchronous transactions queued now are decided (2.6.0's
/// `txn_limbo_wait_confirm`: a replica must not get data its master may still roll back):
/// `A rollback for a synchronous transaction is received` if one is rolled back,
/// `Quorum collection for a synchronous transaction is timed out` after
/// `replication_synchro_timeout`.
async fn wait_confirm() -> Result<(), ClientError> {
    let state = || {
        box_lua::with_runtime(|rt| {
            rt.persist.as_ref().map(|p| {
                let l = &p.limbo;
                (
                    l.last_sync_lsn(),
                    l.confirmed_lsn(),
                    l.rollback_count(),
                    l.synchro_timeout(),
                )
            })
        })
        .flatten()
    };
    let Some((Some(last), _, rollbacks, timeout_us)) = state() else {
        return Ok(());
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_micros(timeout_us);
    loop {
        match state() {
            Some((_, _, r, _)) if r != rollbacks => return Err(client_error!(ER_SYNC_ROLLBACK)),
            Some((_, confirmed, _, _)) if confirmed >= last => return Ok(()),
            None => return Ok(()),
            _ => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(client_error!(ER_SYNC_QUORUM_TIMEOUT));
        }
        // The queue has no waiters' list for us: a JOIN is rare, a poll is enough.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Waits until the connection has room for more.
async fn room(link: &dyn Downlink, peer: &Peer) -> Result<(), RelayError> {
    while link.unsent() >= HIGH_WATER && !link.is_closed() {
        link.progress().notified().await;
    }
    if link.is_closed() {
        return Err(RelayError::eof(&peer.socket_name));
    }
    Ok(())
}

struct Joining {
    registered: bool,
    feed: std::sync::Arc<super::wal_feed::WalFeed>,
    wal_dir: std::path::PathBuf,
}

fn check_join(peer: &Peer, uuid: Uuid) -> Result<Joining, ClientError> {
    box_lua::with_runtime(|rt| {
        let p = rt.persist.as_ref().ok_or_else(|| client_error!(ER_LOADING))?;
        if uuid == p.instance_uuid {
            return Err(client_error!(ER_CONNECTION_TO_SELF));
        }
        let access = &rt.db.schema.access;
        access.check_universe(peer.uid, crate::box_::access::PRIV_READ)?;
        let registered = rt.db.schema.cluster.values().any(|u| *u == uuid.to_string());
        if !registered {
            if rt.db.read_only {
                return Err(client_error!(ER_READONLY));
            }
            let cluster = rt.db.space(schema::CLUSTER_ID)?;
            access.check_space(
                peer.uid,
                schema::CLUSTER_ID,
                cluster.name(),
                cluster.def.owner,
                PRIV_WRITE,
            )?;
        }
        let wal = p
            .wal
            .as_ref()
            .ok_or_else(|| client_error!(ER_UNSUPPORTED, "Replication", "wal_mode = 'none'"))?;
        Ok(Joining {
            registered,
            feed: wal.feed(),
            wal_dir: p.wal_dir.clone(),
        })
    })
    .unwrap_or_else(|| Err(client_error!(ER_LOADING)))
}

/// Registers `uuid` in `_cluster` as a write of this instance; its id.
async fn register(lua: &WeakLua, uuid: Uuid) -> Result<u32, RelayError> {
    let (id, ticket) = box_lua::with_runtime(|rt| {
        let id = next_replica_id(&rt.db.schema)?;
        let mut tuple = Vec::with_capacity(48);
        mp::write_array_header(&mut tuple, 2);
        mp::write_uint(&mut tuple, id as u64);
        mp::write_str(&mut tuple, uuid.to_string().as_bytes());
        let req = Request::Insert {
            space_id: schema::CLUSTER_ID,
            tuple: Tuple::new(&tuple)?,
        };
        let (_, stmt) = rt.db.execute(NO_FIBER, schema::ADMIN, req, true)?;
        let ticket = match stmt {
            Some(stmt) => box_lua::commit_stmt(rt, stmt)?,
            None => None,
        };
        Ok::<_, ClientError>((id, ticket))
    })
    .ok_or_else(|| client_error!(ER_LOADING))??;
    // A task ends no scheduler round: the commit goes to the WAL now.
    box_lua::flush_wal();
    if let Some(ticket) = ticket {
        box_lua::wal_written(ticket).await?;
    }
    if let Some(l) = lua.try_upgrade() {
        if let Err(e) = box_lua::after_write(&l) {
            log(lua, Level::Error, &format!("schema reload failed: {e}"));
        }
    }
    Ok(id)
}

/// Serves a JOIN; the connection goes on afterwards (the replica subscribes on it). An
/// error is the caller's to send.
pub async fn join(
    lua: &WeakLua,
    link: &dyn Downlink,
    peer: &Peer,
    sync: u64,
    body: Option<&[u8]>,
) -> Result<(), RelayError> {
    if box_lua::with_runtime(|_| ()).is_none() {
        return Err(client_error!(ER_LOADING).into());
    }
    let uuid = proto::decode(body, Wanted::Join)?.instance_uuid.unwrap_or_default();
    let joining = check_join(peer, uuid)?;
    log(
        lua,
        Level::Info,
        &format!("joining replica {uuid} at {}", peer.socket_name),
    );
    let rollbacks = limbo_rollbacks();
    // The feed keeps every row written from now on: the final stage needs them.
    let mut stream = WalStream::new(&joining.feed, joining.wal_dir.clone(), Vclock::new());
    let (tuples, synced) = box_lua::with_runtime(|rt| {
        // Commits of this round first: the view shows them.
        if let Some(p) = rt.persist.as_mut() {
            p.flush();
        }
        let synced = rt.persist.as_ref().and_then(|p| p.wal.as_ref()).map(|w| w.sync());
        (read_view(&rt.db.schema), synced)
    })
    .ok_or_else(|| client_error!(ER_LOADING))?;
    let start = match synced {
        Some(rx) => match rx.await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(ClientError::with_message(ER_WAL_IO, e.to_string()).into()),
            Err(_) => return Err(client_error!(ER_WAL_IO).into()),
        },
        None => return Err(client_error!(ER_UNSUPPORTED, "Replication", "wal_mode = 'none'").into()),
    };
    // What the view shows must be decided before it goes.
    wait_confirm().await?;
    let mut out = Vec::with_capacity(SEND_CHUNK + 1024);
    proto::put_vclock_ok(&mut out, sync, &start);
    let mut body = Vec::new();
    for (space_id, tuple) in &tuples {
        body.clear();
        put_replace_body(&mut body, *space_id, tuple.data());
        let row = RowRef {
            kind: IPROTO_INSERT,
            body: &body,
            ..RowRef::default()
        };
        proto::put_row(&mut out, sync, &row);
        if out.len() >= SEND_CHUNK {
            link.send(&out);
            out.clear();
            // Others run between chunks; past the high water mark the rest waits for
            // the socket.
            tokio::task::yield_now().await;
            room(link, peer).await?;
        }
    }
    drop(tuples);
    link.send(&out);
    out.clear();
    log(lua, Level::Info, "initial data sent.");
    if !joining.registered {
        let id = register(lua, uuid).await?;
        log(lua, Level::Info, &format!("assigned id {id} to replica {uuid}"));
    }
    let stop = joining.feed.written();
    if limbo_rollbacks() != rollbacks {
        return Err(client_error!(ER_SYNC_ROLLBACK).into());
    }
    wait_confirm().await?;
    proto::put_vclock_ok(&mut out, sync, &stop);
    link.send(&out);
    out.clear();
    stream.start_from(start);
    while !covers(stream.have(), &stop) {
        room(link, peer).await?;
        stream.ready().await?;
        for path in stream.take_opened() {
            log(lua, Level::Info, &format!("recover from `{}'", path.display()));
        }
        stream.take(|row| {
            // Rows past `stop` are the subscription's.
            if row.lsn <= stop.get(row.replica_id) {
                if let Some(r) = relayed(row, 0, None) {
                    proto::put_row(&mut out, sync, &r);
                }
            }
        });
        link.send(&out);
        out.clear();
        tokio::task::yield_now().await;
    }
    log(lua, Level::Info, "final data sent.");
    proto::put_vclock_ok(&mut out, sync, &joining.feed.written());
    link.send(&out);
    // Keep the WAL from `stop` on for this replica until it subscribes.
    downstream::update(uuid, |d| d.vclock = stop);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_fill_the_first_gap() {
        let mut s = Schema::new();
        assert_eq!(next_replica_id(&s), Ok(1));
        s.cluster.insert(1, "a".into());
        s.cluster.insert(2, "b".into());
        s.cluster.insert(4, "d".into());
        assert_eq!(next_replica_id(&s), Ok(3));
        s.cluster.insert(3, "c".into());
        assert_eq!(next_replica_id(&s), Ok(5));
        for id in 5..32 {
            s.cluster.insert(id, format!("{id}"));
        }
        assert_eq!(next_replica_id(&s).unwrap_err().code, ER_REPLICA_MAX);
    }
}
