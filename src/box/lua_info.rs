//! Starting box (`box.cfg{}`: recovery or bootstrap), reconfiguring it, snapshots, and what
//! it reports: `box.info`, `box.stat`, `box.slab.info`.

use std::path::{Path, PathBuf};

use mlua::prelude::*;
use uuid::Uuid;

use super::db::Db;
use super::errcode::*;
use super::error::ClientError;
use super::lua::{install_runtime, with_box, BoxRuntime};
use super::persist::Persistence;
use super::schema;
use super::status::{self, Status};
use super::tuple::Tuple;
use super::wal::recovery::{recover, RecoveryOptions};
use super::wal::row::{IPROTO_RAFT, IPROTO_RAFT_CONFIRM, IPROTO_RAFT_PROMOTE, IPROTO_RAFT_ROLLBACK};
use super::wal::snapshot::{remove_inprogress, spawn_snapshot, write_snapshot};
use super::wal::vclock::Vclock;
use super::wal::writer::{WalConfig, WalMode, WalWriter};
use crate::client_error;
use crate::replication::bootstrap::{register_peers, Origin, Peers};

impl AsRef<[u8]> for Tuple {
    fn as_ref(&self) -> &[u8] {
        self.data()
    }
}

fn cfg_str(cfg: &LuaTable, key: &str) -> LuaResult<Option<String>> {
    cfg.get::<Option<String>>(key)
}

fn resolve(dir: Option<String>) -> PathBuf {
    PathBuf::from(dir.unwrap_or_else(|| ".".into()))
}

fn cfg_error(option: &str, why: impl Into<String>) -> LuaError {
    let why = why.into();
    client_error!(ER_CFG, option, why).into_lua_err()
}

/// Every tuple of every persistent space, system spaces first, as a snapshot stores them.
fn snapshot_tuples(db: &Db) -> Vec<(u32, u32, Tuple)> {
    let mut out = Vec::new();
    for space in db.schema.spaces.values() {
        if space.def.temporary || space.def.engine == "sysview" {
            continue;
        }
        if let Some(pk) = space.primary() {
            out.extend(pk.tuples().map(|t| (space.def.id, space.def.group_id, t.clone())));
        }
    }
    out
}

/// `background = true`: the parent exits, the child carries on in a new session with
/// stdio on /dev/null (the log goes to its file). Done before any box thread starts, so
/// the fork copies only the Lua thread.
fn daemonize() -> LuaResult<()> {
    // Safety: fork/setsid/dup2 on a process whose only running thread is this one (the
    // console's reader thread, if any, is not needed by a background instance).
    unsafe {
        match libc::fork() {
            -1 => return Err(LuaError::runtime(format!("fork: {}", std::io::Error::last_os_error()))),
            0 => {}
            _ => libc::_exit(0),
        }
        libc::setsid();
        let devnull = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if devnull >= 0 {
            for fd in 0..3 {
                libc::dup2(devnull, fd);
            }
            if devnull > 2 {
                libc::close(devnull);
            }
        }
    }
    Ok(())
}

/// `box.cfg{}`'s first call: recover the data directory or bootstrap (alone, or from a
/// replica set master), start the WAL and box, then follow the upstreams
/// (src/replication/bootstrap.rs). It yields while it waits for peers.
async fn start(lua: Lua, cfg: LuaTable) -> LuaResult<()> {
    let lua = &lua;
    if super::lua::is_started() {
        return Ok(());
    }
    status::set_status(Status::Loading);
    crate::replication::cfg::load(&cfg)?;
    let memtx_dir = resolve(cfg_str(&cfg, "memtx_dir")?);
    let wal_dir = resolve(cfg_str(&cfg, "wal_dir")?);
    let mode: WalMode = cfg_str(&cfg, "wal_mode")?
        .unwrap_or_else(|| "write".into())
        .parse()
        .map_err(|e: String| cfg_error("wal_mode", e))?;
    let force_recovery: bool = cfg.get::<Option<bool>>("force_recovery")?.unwrap_or(false);
    if cfg.get::<Option<bool>>("background")?.unwrap_or(false) {
        daemonize()?;
    }
    if let Some(pid_file) = cfg_str(&cfg, "pid_file")? {
        std::fs::write(&pid_file, format!("{}\n", std::process::id()))
            .map_err(|e| cfg_error("pid_file", format!("failed to write '{pid_file}': {e}")))?;
    }
    for (name, dir) in [("memtx_dir", &memtx_dir), ("wal_dir", &wal_dir)] {
        if !dir.is_dir() {
            return Err(cfg_error(name, format!("can't find directory '{}'", dir.display())));
        }
    }

    let mut db = Db::new();
    for p in remove_inprogress(&memtx_dir) {
        crate::modules::log::write(
            lua,
            crate::modules::log::Level::Warn,
            &format!("removed unfinished snapshot {}", p.display()),
        );
    }
    let opts = RecoveryOptions {
        memtx_dir: memtx_dir.clone(),
        wal_dir: wal_dir.clone(),
        force_recovery,
    };
    let mut synchro_rows = Vec::new();
    let mut held = super::synchro::HeldTxns::default();
    let recovered = recover(&opts, |_, row| match row.kind {
        IPROTO_RAFT => {
            let msg = crate::replication::election::decode_message(row.body)?;
            super::lua_election::recovered_raft_state(msg.term, msg.vote);
            Ok(())
        }
        IPROTO_RAFT_PROMOTE | IPROTO_RAFT_CONFIRM | IPROTO_RAFT_ROLLBACK => {
            let req = super::raft::limbo::SynchroRequest::decode(row.kind, row.replica_id, row.body)?;
            let confirm_lsn = match row.kind {
                IPROTO_RAFT_ROLLBACK => None,
                _ => Some(req.lsn),
            };
            if let Some(lsn) = confirm_lsn {
                for txn in held.confirm(req.replica_id, lsn) {
                    for (kind, body) in &txn.rows {
                        db.apply_row(*kind, body).map_err(|e| e.message)?;
                    }
                }
            }
            match row.kind {
                IPROTO_RAFT_ROLLBACK => held.rollback(req.replica_id, req.lsn),
                IPROTO_RAFT_PROMOTE => held.rollback(req.replica_id, req.lsn + 1),
                _ => {}
            }
            synchro_rows.push(req);
            Ok(())
        }
        // Snapshot rows and local rows are never waiting for a quorum.
        _ if row.lsn == 0 || row.replica_id == 0 => db.apply_row(row.kind, row.body).map_err(|e| e.message),
        _ => {
            let is_sync = db.is_sync_row(row.body);
            if is_sync || !held.is_empty() {
                held.hold(row.replica_id, row.tsn, row.lsn, is_sync, row.kind, row.body);
                Ok(())
            } else {
                db.apply_row(row.kind, row.body).map_err(|e| e.message)
            }
        }
    })
    .map_err(|e| LuaError::runtime(e.to_string()))?;
    // Transactions the log has no decision for: applied, and queued in the limbo below until
    // their owner's CONFIRM or ROLLBACK arrives.
    let mut undecided = Vec::new();
    for txn in held.into_rest() {
        let mut stmts = Vec::new();
        for (kind, body) in &txn.rows {
            stmts.extend(db.execute_row(*kind, body).map_err(ClientError::into_lua_err)?);
        }
        undecided.push((txn.origin, txn.lsn, txn.is_sync, stmts));
    }
    for w in &recovered.warnings {
        crate::modules::log::write(lua, crate::modules::log::Level::Warn, w);
    }
    let cfg_uuid = cfg_str(&cfg, "instance_uuid")?
        .map(|s| Uuid::parse_str(&s).map_err(|_| cfg_error("instance_uuid", s.clone())))
        .transpose()?;
    let fresh = recovered.snapshot.is_none() && recovered.wal_rows == 0;
    let info = |msg: &str| crate::modules::log::write(lua, crate::modules::log::Level::Info, msg);
    let instance_uuid = match (recovered.instance_uuid, cfg_uuid) {
        (Some(found), Some(given)) if found != given && !fresh => {
            return Err(LuaError::runtime(format!(
                "Instance UUID mismatch: expected {given}, got {found}"
            )))
        }
        (_, Some(given)) => given,
        (Some(found), None) if !fresh => found,
        _ => Uuid::new_v4(),
    };
    let mut vclock = recovered.vclock;
    info(&format!("instance uuid {instance_uuid}"));
    let cfg_read_only = cfg.get::<Option<bool>>("read_only")?.unwrap_or(false);
    status::set_instance_uuid(instance_uuid);
    status::set_loading_vclock(vclock);
    status::set_cfg_read_only(cfg_read_only);
    let sources = cfg.get::<Option<Vec<String>>>("replication")?.unwrap_or_default();
    let peers = Peers::connect(lua, &sources, fresh)
        .await
        .map_err(ClientError::into_lua_err)?;
    // A fresh instance that joins takes its data from the master.
    let origin = if fresh { peers.choose_origin() } else { Origin::Itself };
    let is_bootstrap_leader = fresh && matches!(origin, Origin::Itself);
    if let Origin::Master(master) = &origin {
        let (joined, at) = peers.join(lua, master).await.map_err(ClientError::into_lua_err)?;
        db = joined;
        vclock = at;
        let cluster = crate::replication::replicaset::replicaset_uuid(&db).unwrap_or_default();
        if let Some(want) = cfg_str(&cfg, "replicaset_uuid")? {
            if want != cluster.to_string() {
                return Err(client_error!(ER_REPLICASET_UUID_MISMATCH, want, cluster.to_string()).into_lua_err());
            }
        }
        if mode != WalMode::None {
            write_snapshot(&memtx_dir, instance_uuid, &vclock, snapshot_tuples(&db))
                .map_err(|e| LuaError::runtime(e.to_string()))?;
        }
    }
    if is_bootstrap_leader {
        info("initializing an empty data directory");
    } else if !fresh {
        info(&format!(
            "recovered {} rows from the snapshot and {} from the WAL",
            recovered.snapshot_rows, recovered.wal_rows
        ));
    }
    if is_bootstrap_leader {
        if cfg_read_only {
            return Err(client_error!(ER_BOOTSTRAP_READONLY).into_lua_err());
        }
        let cluster = cfg_str(&cfg, "replicaset_uuid")?.unwrap_or_else(|| Uuid::new_v4().to_string());
        for (space_id, tuple) in schema::bootstrap_rows(&cluster, &instance_uuid.to_string()) {
            let mut body = Vec::new();
            super::mp::write_map_header(&mut body, 2);
            body.push(super::db::KEY_SPACE_ID);
            super::mp::write_uint(&mut body, space_id as u64);
            body.push(super::db::KEY_TUPLE);
            body.extend_from_slice(&tuple);
            db.apply_row(super::db::IPROTO_INSERT, &body)
                .map_err(ClientError::into_lua_err)?;
        }
        // Every peer reached is registered now, so that all agree on the ids.
        register_peers(&mut db, &peers.others()).map_err(ClientError::into_lua_err)?;
        if mode != WalMode::None {
            // The bootstrap lives in the first snapshot, as in Tarantool.
            write_snapshot(&memtx_dir, instance_uuid, &Vclock::new(), snapshot_tuples(&db))
                .map_err(|e| LuaError::runtime(e.to_string()))?;
        }
        vclock = Vclock::new();
    }
    let registered = db
        .schema
        .cluster
        .iter()
        .find(|(_, u)| **u == instance_uuid.to_string())
        .map(|(id, _)| *id);
    let instance_id = match registered {
        Some(id) => id,
        // A replica must have been registered by its master.
        None if !sources.is_empty() => {
            let cluster = crate::replication::replicaset::replicaset_uuid(&db).unwrap_or_default();
            return Err(
                client_error!(ER_UNKNOWN_REPLICA, instance_uuid.to_string(), cluster.to_string()).into_lua_err(),
            );
        }
        None => 1,
    };
    let wal = if mode == WalMode::None {
        None
    } else {
        let wal_cfg = WalConfig {
            dir: wal_dir.clone(),
            mode,
            instance_uuid,
            max_size: cfg
                .get::<Option<u64>>("wal_max_size")?
                .unwrap_or(WalConfig::DEFAULT_MAX_SIZE),
        };
        Some(WalWriter::start(wal_cfg, vclock).map_err(|e| LuaError::runtime(e.to_string()))?)
    };
    db.set_ro(|r| {
        r.cfg = cfg_read_only;
        r.orphan = status::is_orphan();
    });
    db.schema.version += 1;
    let mut persist = Persistence::new(wal, mode, vclock, instance_id, instance_uuid, memtx_dir, wal_dir);
    persist.checkpoint_count = cfg.get::<Option<usize>>("checkpoint_count")?.unwrap_or(2);
    // The queue's owner and PROMOTE terms as the log left them.
    for req in &synchro_rows {
        persist.limbo.apply(req);
    }
    persist.queue_recovered(undecided);
    let _ = persist.limbo.take_outputs();
    let mut rt = BoxRuntime::new(db, Some(persist));
    rt.memtx_memory = cfg.get::<Option<f64>>("memtx_memory")?.unwrap_or(268435456.0);
    let acks = rt.persist.as_ref().and_then(|p| p.wal.as_ref()).map(|w| w.acks());
    install_runtime(rt);
    status::set_status(if status::is_orphan() {
        Status::Orphan
    } else {
        Status::Running
    });
    info("ready to accept requests");
    if let Some(acks) = acks {
        tokio::task::spawn_local(super::lua::collect_wal_answers(acks));
    }
    crate::runtime::fiber::on_round_end(super::lua::flush_wal);
    crate::runtime::fiber::scheduler(lua).pin();
    // box.stat's rps: the counters once a second, the last 5 seconds kept.
    tokio::task::spawn_local(async {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            let _ = with_box(|rt| {
                let now = rt.db.stats.clone();
                rt.stat_samples.push_back(now);
                if rt.stat_samples.len() > STAT_WINDOW + 1 {
                    rt.stat_samples.pop_front();
                }
                Ok(())
            });
        }
    });
    // The upstreams subscribe now; box.cfg waits for them unless this instance just
    // started the replica set.
    if !peers.appliers.is_empty() {
        crate::replication::replicaset::adopt(peers.appliers);
        if !is_bootstrap_leader {
            crate::replication::replicaset::sync(lua).await;
        }
    }
    Ok(())
}

/// What a snapshot needs: where, whose, at which point, and the tuples.
type SnapshotJob = (PathBuf, Uuid, Vclock, Vec<(u32, u32, Tuple)>);

fn snapshot_path_vclock(rt: &mut BoxRuntime) -> Option<SnapshotJob> {
    let p = rt.persist.as_ref()?;
    Some((p.memtx_dir.clone(), p.instance_uuid, p.vclock, snapshot_tuples(&rt.db)))
}

async fn snapshot(lua: Lua) -> LuaResult<String> {
    let fid = crate::runtime::fiber::current(&lua).id;
    let (dir, uuid, vclock, tuples, rotate) = with_box(|rt| {
        if rt.db.in_txn(fid) {
            return Err(client_error!(ER_ACTIVE_TRANSACTION));
        }
        // Commits of this round still in the outbox go first: the snapshot's tuples include
        // them, so its vclock must too (else recovery would apply them twice).
        if let Some(p) = rt.persist.as_mut() {
            p.flush();
        }
        let rotate = rt.persist.as_ref().and_then(|p| p.wal.as_ref()).map(|w| w.rotate());
        let (dir, uuid, vclock, tuples) =
            snapshot_path_vclock(rt).ok_or_else(|| client_error!(ER_UNSUPPORTED, "box", "snapshot"))?;
        Ok((dir, uuid, vclock, tuples, rotate))
    })?;
    let mut vclock = vclock;
    if let Some(rx) = rotate {
        match rx.await {
            // The point the WAL reached: every row submitted before the tuples were taken.
            Ok(Ok(at)) => vclock = at,
            Ok(Err(e)) => return Err(LuaError::runtime(e.to_string())),
            Err(_) => return Err(LuaError::runtime("WAL writer is shut down")),
        }
    }
    let done = spawn_snapshot(
        dir.clone(),
        uuid,
        vclock,
        tuples,
        super::lua_election::snapshot_trailer(),
    );
    match done.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(LuaError::runtime(e.to_string())),
        Err(_) => return Err(LuaError::runtime("snapshot thread failed")),
    }
    let count = with_box(|rt| Ok(rt.persist.as_ref().map(|p| p.checkpoint_count).unwrap_or(2)))?;
    let gc = super::wal::gc::collect_snapshots(&dir, count);
    if let Ok(report) = gc {
        let oldest = report.oldest_kept.clone();
        let rx = with_box(|rt| {
            // Xlogs a replica has not acknowledged yet stay (Tarantool's gc consumers).
            let cluster = &rt.db.schema.cluster;
            let floor = crate::replication::downstream::gc_floor(|u| cluster.values().any(|c| *c == u.to_string()));
            let keep = |v: Vclock| match &floor {
                Some(f) => crate::replication::downstream::min_ignore0(&v, f),
                None => v,
            };
            Ok(rt
                .persist
                .as_ref()
                .and_then(|p| p.wal.as_ref())
                .zip(oldest.map(|(_, v)| keep(v)))
                .map(|(w, v)| w.collect_garbage(v)))
        })?;
        if let Some(rx) = rx {
            let _ = rx.await;
        }
    }
    Ok("ok".into())
}

/// `box.info` while box.cfg loads (recovers, connects, joins): who, and that it loads.
fn loading_info(lua: &Lua) -> LuaResult<LuaTable> {
    let t = lua.create_table()?;
    if let Some(uuid) = status::instance_uuid() {
        t.set("uuid", uuid.to_string())?;
    }
    t.set("version", super::VERSION)?;
    t.set("status", status::status().name())?;
    t.set("ro", true)?;
    let vclock = status::loading_vclock();
    let vt = lua.create_table()?;
    for (rid, lsn) in vclock.iter() {
        vt.raw_set(rid, lsn)?;
    }
    vt.set_metatable(Some(crate::serialize::map_mt(lua)?))?;
    t.set("vclock", vt)?;
    t.set("signature", vclock.signature())?;
    t.set("pid", std::process::id())?;
    t.set("package", "Tarantool")?;
    t.set("replication", lua.create_table()?)?;
    Ok(t)
}

fn info(lua: &Lua) -> LuaResult<LuaTable> {
    if !super::lua::is_started() && status::status() == Status::Loading {
        return loading_info(lua);
    }
    let t = lua.create_table()?;
    with_box(|rt| {
        let p = rt.persist.as_ref();
        let id = p.map(|p| p.instance_id).unwrap_or(1);
        let vclock = p.map(|p| p.vclock).unwrap_or_default();
        let uuid = p.map(|p| p.instance_uuid.to_string()).unwrap_or_default();
        let ro = rt.db.read_only;
        let uptime = rt.started.elapsed().as_secs();
        let replicaset = rt
            .db
            .schema
            .space(schema::SCHEMA_ID)
            .and_then(|s| s.primary())
            .and_then(|pk| {
                pk.tuples().find_map(|t| {
                    let mut f = t.fields();
                    match (f.next(), f.next()) {
                        (Some(k), Some(v)) if k == b"\xa7cluster" => match super::mp::read(v, 0) {
                            Ok((super::mp::Mp::Str(s), _)) => Some(String::from_utf8_lossy(s).into_owned()),
                            _ => None,
                        },
                        _ => None,
                    }
                })
            })
            .unwrap_or_default();
        Ok((id, vclock, uuid, ro, uptime, rt.db.schema.cluster.clone(), replicaset))
    })
    .and_then(|(id, vclock, uuid, ro, uptime, cluster, replicaset)| {
        t.set("id", id)?;
        t.set("uuid", uuid.as_str())?;
        t.set("version", super::VERSION)?;
        t.set("status", status::status().name())?;
        t.set("ro", ro)?;
        t.set("lsn", vclock.get(id))?;
        t.set("signature", vclock.signature())?;
        let vt = lua.create_table()?;
        for (rid, lsn) in vclock.iter() {
            vt.raw_set(rid, lsn)?;
        }
        // A mapping in every output, as Tarantool marks it ({1: 16}, not a list).
        vt.set_metatable(Some(crate::serialize::map_mt(lua)?))?;
        t.set("vclock", vt)?;
        t.set("pid", std::process::id())?;
        t.set("uptime", uptime)?;
        t.set("package", "Tarantool")?;
        t.set("election", super::lua_election::election_info(lua, ())?)?;
        t.set("synchro", super::lua_election::synchro_info(lua, ())?)?;
        let replication = lua.create_table()?;
        for (rid, ruuid) in cluster {
            let r = lua.create_table()?;
            r.set("id", rid)?;
            r.set("uuid", ruuid.as_str())?;
            r.set("lsn", vclock.get(rid))?;
            if let Some(upstream) = crate::replication::replicaset::upstream_info(lua, &ruuid)? {
                r.set("upstream", upstream)?;
            }
            let downstream = Uuid::parse_str(&ruuid)
                .ok()
                .and_then(|u| downstream_info(lua, &u).transpose());
            if let Some(downstream) = downstream {
                r.set("downstream", downstream?)?;
            }
            replication.raw_set(rid, r)?;
        }
        // Printed as a block mapping by id, as Tarantool's (`__serialize = 'mapping'`).
        let mapping = lua.create_table()?;
        mapping.set("__serialize", "mapping")?;
        replication.set_metatable(Some(mapping))?;
        t.set("replication", replication)?;
        let cluster = lua.create_table()?;
        cluster.set("uuid", replicaset.as_str())?;
        t.set("cluster", cluster)?;
        Ok(())
    })?;
    Ok(t)
}

/// `box.info.replication[id].downstream`: the relay to that replica, once it subscribed.
fn downstream_info(lua: &Lua, uuid: &Uuid) -> LuaResult<Option<LuaTable>> {
    use crate::replication::downstream::{self, RelayState};
    let Some(d) = downstream::get(uuid) else {
        return Ok(None);
    };
    let Some(state) = d.state else { return Ok(None) };
    let t = lua.create_table()?;
    match state {
        RelayState::Follow => {
            t.set("status", "follow")?;
            t.set("idle", d.last_row.elapsed().as_secs_f64())?;
            let v = lua.create_table()?;
            for (id, lsn) in d.vclock.iter() {
                v.raw_set(id, lsn)?;
            }
            // `{1: 7}` in every output, as Tarantool marks it.
            v.set_metatable(Some(crate::serialize::map_mt(lua)?))?;
            t.set("vclock", v)?;
        }
        RelayState::Stopped {
            message,
            system_message,
        } => {
            t.set("status", "stopped")?;
            t.set("message", message)?;
            if let Some(m) = system_message {
                t.set("system_message", m)?;
            }
        }
    }
    Ok(Some(t))
}

/// Seconds over which box.stat averages `rps`, as Tarantool does.
const STAT_WINDOW: usize = 5;

fn counters(s: &super::db::Stats) -> [(&'static str, u64); 10] {
    [
        ("INSERT", s.insert),
        ("DELETE", s.delete),
        ("SELECT", s.select),
        ("REPLACE", s.replace),
        ("UPDATE", s.update),
        ("UPSERT", s.upsert),
        ("BEGIN", s.begin),
        ("COMMIT", s.commit),
        ("ROLLBACK", s.rollback),
        ("ERROR", s.error),
    ]
}

fn stat(lua: &Lua) -> LuaResult<LuaTable> {
    let (now, oldest, seconds) = with_box(|rt| {
        let oldest = rt.stat_samples.front().cloned().unwrap_or_default();
        let newest = rt.stat_samples.back().cloned().unwrap_or_default();
        Ok((newest, oldest, rt.stat_samples.len().saturating_sub(1)))
    })?;
    let totals = with_box(|rt| Ok(rt.db.stats.clone()))?;
    let t = lua.create_table()?;
    for ((name, total), ((_, a), (_, b))) in counters(&totals)
        .into_iter()
        .zip(counters(&oldest).into_iter().zip(counters(&now)))
    {
        let e = lua.create_table()?;
        e.set("total", total)?;
        e.set("rps", if seconds == 0 { 0 } else { (b - a) / seconds as u64 })?;
        t.set(name, e)?;
    }
    // Requests of the binary protocol, which is not served yet.
    for name in ["CALL", "EVAL", "AUTH", "EXECUTE", "PREPARE"] {
        let e = lua.create_table()?;
        e.set("total", 0)?;
        e.set("rps", 0)?;
        t.set(name, e)?;
    }
    Ok(t)
}

fn slab_info(lua: &Lua) -> LuaResult<LuaTable> {
    let (items, index) = with_box(|rt| {
        let mut items = 0usize;
        let mut index = 0usize;
        for space in rt.db.schema.spaces.values() {
            items += space.bsize();
            for (_, ix) in space.indexes.iter().flatten() {
                index += ix.bsize();
            }
        }
        Ok((items, index))
    })?;
    let quota = with_box(|rt| Ok(rt.memtx_memory))?;
    let t = lua.create_table()?;
    let used = (items + index) as f64;
    t.set("items_size", items)?;
    t.set("items_used", items)?;
    t.set("items_used_ratio", "100%")?;
    t.set("quota_size", quota)?;
    t.set("quota_used", used)?;
    t.set("quota_used_ratio", format!("{:.2}%", used / quota * 100.0))?;
    t.set("arena_size", used)?;
    t.set("arena_used", used)?;
    t.set("arena_used_ratio", "100%")?;
    Ok(t)
}

fn cfg_set(_lua: &Lua, (key, value): (String, LuaValue)) -> LuaResult<()> {
    match key.as_str() {
        "read_only" => {
            let read_only = value.as_boolean().unwrap_or(false);
            status::set_cfg_read_only(read_only);
            with_box(|rt| {
                rt.db.set_ro(|r| r.cfg = read_only);
                Ok(())
            })
        }
        "replication_timeout"
        | "replication_connect_timeout"
        | "replication_connect_quorum"
        | "replication_sync_lag"
        | "replication_sync_timeout"
        | "replication_skip_conflict" => {
            crate::replication::cfg::set(&key, &value);
            if key == "replication_connect_quorum" && status::is_configured() {
                crate::replication::replicaset::check_quorum();
            }
            Ok(())
        }
        "checkpoint_count" => with_box(|rt| {
            if let Some(p) = rt.persist.as_mut() {
                p.checkpoint_count = value.as_usize().unwrap_or(2);
            }
            Ok(())
        }),
        _ => Ok(()),
    }
}

pub fn install(lua: &Lua, m: &LuaTable) -> LuaResult<()> {
    m.set("start", lua.create_async_function(start)?)?;
    crate::replication::install(lua, m)?;
    m.set(
        "chdir",
        lua.create_function(|_, dir: String| {
            std::env::set_current_dir(&dir).map_err(|e| cfg_error("work_dir", format!("can't chdir to '{dir}': {e}")))
        })?,
    )?;
    m.set("cfg_set", lua.create_function(cfg_set)?)?;
    m.set("snapshot", lua.create_async_function(|lua, ()| snapshot(lua))?)?;
    m.set("info", lua.create_function(|lua, ()| info(lua))?)?;
    m.set("stat", lua.create_function(|lua, ()| stat(lua))?)?;
    m.set(
        "stat_reset",
        lua.create_function(|_, ()| {
            with_box(|rt| {
                rt.db.stats = Default::default();
                Ok(())
            })
        })?,
    )?;
    m.set("slab_info", lua.create_function(|lua, ()| slab_info(lua))?)?;
    let _ = Path::new(".");
    Ok(())
}
