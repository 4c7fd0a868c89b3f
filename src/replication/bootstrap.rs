//! The first `box.cfg{}` of an instance with `replication` (Tarantool 2.6's `bootstrap` and
//! `bootstrap_from_master` in box.cc, paraphrased).
//!
//! The instance listens first, so that its peers can read its ballot, then connects to
//! every peer ([`replicaset::connect`]). On an empty data directory it waits for all of
//! them up to `replication_connect_timeout` and chooses the bootstrap master among those it
//! reached and itself ([`replicaset::choose_leader`]): a writable one, the newest vclock,
//! the lowest UUID. If that is the instance itself it bootstraps a new replica set and
//! registers every peer it reached in `_cluster` (ids 2, 3, ... in UUID order, so that all
//! agree); otherwise it joins the master: the master's snapshot and the rows that register
//! it arrive through the master's applier into a [`Joining`], which becomes the database.
//! Either way the result is written as the first snapshot before the WAL starts.
//!
//! An instance with data recovers it and connects only for the quorum, an orphan meanwhile;
//! then, once box runs, every applier subscribes and box.cfg waits for them to sync.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use mlua::prelude::*;
use tokio::sync::Notify;
use uuid::Uuid;

use super::applier::{Applier, Gate, State};
use super::replica_proto::Ballot;
use super::replicaset::{self, Candidate};
use crate::box_::db::{Db, IPROTO_INSERT, KEY_SPACE_ID, KEY_TUPLE};
use crate::box_::errcode::*;
use crate::box_::error::ClientError;
use crate::box_::mp;
use crate::box_::schema;
use crate::box_::status;
use crate::box_::wal::row::{Row, IPROTO_NOP};
use crate::box_::wal::vclock::Vclock;
use crate::client_error;
use crate::modules::log::{self, Level};

/// The peers of the first box.cfg, connected and waiting at their gates.
pub struct Peers {
    pub appliers: Vec<Rc<Applier>>,
}

/// Where the data of a fresh instance comes from.
pub enum Origin {
    /// This instance starts the replica set.
    Itself,
    /// It joins the replica set through this applier's peer.
    Master(Rc<Applier>),
}

impl Peers {
    /// Starts an applier per source and waits for them (all of them on an empty directory,
    /// the quorum otherwise, orphan meanwhile).
    pub async fn connect(lua: &Lua, sources: &[String], fresh: bool) -> Result<Peers, ClientError> {
        let mut appliers = Vec::new();
        for s in sources {
            appliers.push(
                Applier::new(s)
                    .ok_or_else(|| client_error!(ER_CFG, "replication", "expected host:service or /unix.socket"))?,
            );
        }
        if appliers.is_empty() {
            return Ok(Peers { appliers });
        }
        if !fresh {
            replicaset::set_orphan(lua, true, false);
        }
        if let Err(e) = replicaset::connect(lua, &appliers, fresh).await {
            for a in &appliers {
                a.stop().await;
            }
            return Err(e);
        }
        Ok(Peers { appliers })
    }

    /// The instances reached, with their ballots; this instance with its own facts (its
    /// server may not answer VOTE while it loads).
    fn candidates(&self) -> Vec<(Candidate, Option<Rc<Applier>>)> {
        let me = status::instance_uuid();
        let mut out = Vec::new();
        for a in self.appliers.iter().filter(|a| a.state() == State::Connected) {
            let (Some(uuid), Some(ballot)) = (a.uuid(), a.ballot()) else {
                continue;
            };
            if Some(uuid) == me {
                continue;
            }
            out.push((Candidate { uuid, ballot }, Some(a.clone())));
        }
        if let Some(uuid) = me {
            let ballot = Ballot {
                is_ro: status::cfg_read_only(),
                is_loading: true,
                vclock: status::loading_vclock(),
                ..Ballot::default()
            };
            let listed = self.appliers.iter().any(|a| a.uuid() == Some(uuid));
            if listed || out.is_empty() {
                out.push((Candidate { uuid, ballot }, None));
            }
        }
        out
    }

    /// Chooses where a fresh instance's data comes from.
    pub fn choose_origin(&self) -> Origin {
        let candidates = self.candidates();
        let list: Vec<Candidate> = candidates.iter().map(|(c, _)| *c).collect();
        match replicaset::choose_leader(&list).and_then(|i| candidates[i].1.clone()) {
            Some(master) => Origin::Master(master),
            None => Origin::Itself,
        }
    }

    /// The peers this instance registers when it starts the replica set: every instance
    /// reached but itself, in UUID order (`bootstrap_master`).
    pub fn others(&self) -> Vec<Uuid> {
        let me = status::instance_uuid();
        let mut uuids: Vec<Uuid> = self
            .appliers
            .iter()
            .filter(|a| a.was_connected())
            .filter_map(|a| a.uuid())
            .filter(|u| Some(*u) != me)
            .collect();
        uuids.sort();
        uuids.dedup();
        uuids
    }

    /// Joins through `master`: its snapshot and final rows become the database. Fails if the
    /// master's applier stops for good.
    pub async fn join(&self, lua: &Lua, master: &Rc<Applier>) -> Result<(Db, Vclock), ClientError> {
        log::write(
            lua,
            Level::Info,
            &format!(
                "bootstrapping replica from {} at {}",
                master.uuid().unwrap_or_default(),
                master.address()
            ),
        );
        let target = Rc::new(Joining::default());
        master.set_gate(Gate::Join(target.clone()));
        loop {
            if target.done.get() {
                break;
            }
            if matches!(master.state(), State::Stopped | State::Off) {
                let why = master
                    .message()
                    .unwrap_or_else(|| "the master's applier stopped".into());
                return Err(client_error!(ER_PROTOCOL, why));
            }
            tokio::select! {
                _ = target.changed.notified() => {}
                _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
            }
        }
        // It goes on to subscribe once box runs.
        master.set_gate(Gate::Hold);
        let db = target.db.borrow_mut().take().unwrap_or_default();
        Ok((db, target.vclock.get()))
    }
}

/// Registers `peers` in `_cluster` after this instance (id 1): ids 2, 3, ...
pub fn register_peers(db: &mut Db, peers: &[Uuid]) -> Result<(), ClientError> {
    for (i, uuid) in peers.iter().enumerate() {
        let mut tuple = Vec::new();
        mp::write_array_header(&mut tuple, 2);
        mp::write_uint(&mut tuple, i as u64 + 2);
        mp::write_str(&mut tuple, uuid.to_string().as_bytes());
        let mut body = Vec::new();
        mp::write_map_header(&mut body, 2);
        body.push(KEY_SPACE_ID);
        mp::write_uint(&mut body, schema::CLUSTER_ID as u64);
        body.push(KEY_TUPLE);
        body.extend_from_slice(&tuple);
        db.apply_row(IPROTO_INSERT, &body)?;
    }
    Ok(())
}

/// The database a join builds: the master's snapshot rows, then the final rows with their
/// LSNs. A join that breaks off and starts again starts from nothing.
#[derive(Default)]
pub struct Joining {
    db: RefCell<Option<Db>>,
    vclock: Cell<Vclock>,
    rows: Cell<u64>,
    done: Cell<bool>,
    changed: Notify,
}

/// Every this many rows a join logs its progress, as Tarantool does.
const PROGRESS_ROWS: u64 = 100_000;

impl Joining {
    /// The initial join starts: the snapshot sent stands at `vclock`.
    pub fn begin(&self, vclock: Vclock) {
        *self.db.borrow_mut() = Some(Db::new());
        self.vclock.set(vclock);
        self.rows.set(0);
        status::set_loading_vclock(vclock);
    }

    fn apply(&self, row: &Row) -> Result<(), ClientError> {
        if row.kind == IPROTO_NOP {
            return Ok(());
        }
        let mut db = self.db.borrow_mut();
        let db = db
            .as_mut()
            .ok_or_else(|| client_error!(ER_PROTOCOL, "join rows before the join began"))?;
        db.apply_row(row.kind, &row.body)?;
        let n = self.rows.get() + 1;
        self.rows.set(n);
        Ok(())
    }

    /// A snapshot row (no LSN).
    pub fn snapshot_row(&self, row: &Row) -> Result<(), ClientError> {
        self.apply(row)
    }

    /// A row of the final join: it moves the vclock. CONFIRM and ROLLBACK rows only do that.
    pub fn final_row(&self, row: &Row) -> Result<(), ClientError> {
        let mut v = self.vclock.get();
        v.follow(row.replica_id, row.lsn);
        self.vclock.set(v);
        status::set_loading_vclock(v);
        if matches!(
            row.kind,
            crate::box_::apply::IPROTO_CONFIRM
                | crate::box_::apply::IPROTO_ROLLBACK
                | crate::box_::apply::IPROTO_PROMOTE
        ) {
            return Ok(());
        }
        self.apply(row)
    }

    /// Rows received so far (for the progress log).
    pub fn progress(&self) -> Option<u64> {
        let n = self.rows.get();
        (n > 0 && n.is_multiple_of(PROGRESS_ROWS)).then_some(n)
    }

    pub fn done(&self) {
        self.done.set(true);
        self.changed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::box_::db::KEY_SPACE_ID;

    fn insert(space_id: u32, tuple: &[u8]) -> Row {
        let mut body = Vec::new();
        mp::write_map_header(&mut body, 2);
        body.push(KEY_SPACE_ID);
        mp::write_uint(&mut body, space_id as u64);
        body.push(KEY_TUPLE);
        body.extend_from_slice(tuple);
        Row {
            kind: IPROTO_INSERT,
            body,
            ..Row::default()
        }
    }

    fn snapshot(j: &Joining) {
        let me = Uuid::from_bytes([1; 16]).to_string();
        for (space_id, tuple) in schema::bootstrap_rows(&Uuid::from_bytes([9; 16]).to_string(), &me) {
            j.snapshot_row(&insert(space_id, &tuple)).unwrap();
        }
    }

    fn vclock(pairs: &[(u32, i64)]) -> Vclock {
        let mut v = Vclock::new();
        for &(id, lsn) in pairs {
            v.follow(id, lsn);
        }
        v
    }

    #[test]
    fn a_join_builds_the_database_and_the_vclock() {
        let j = Joining::default();
        assert!(j
            .snapshot_row(&insert(schema::CLUSTER_ID, &[0x92, 0x05, 0xa1, b'x']))
            .is_err());
        j.begin(vclock(&[(1, 7)]));
        snapshot(&j);
        // The final join: the master registers this instance (id 2) at LSN 8.
        let mut register = insert(schema::CLUSTER_ID, &{
            let mut t = Vec::new();
            mp::write_array_header(&mut t, 2);
            mp::write_uint(&mut t, 2);
            mp::write_str(&mut t, Uuid::from_bytes([2; 16]).to_string().as_bytes());
            t
        });
        register.replica_id = 1;
        register.lsn = 8;
        j.final_row(&register).unwrap();
        let mut confirm = Row {
            kind: crate::box_::apply::IPROTO_CONFIRM,
            replica_id: 1,
            lsn: 9,
            body: vec![0x82, 0x02, 0x01, 0x03, 0x08],
            ..Row::default()
        };
        j.final_row(&confirm).unwrap();
        j.done();
        assert!(j.done.get());
        assert_eq!(j.vclock.get(), vclock(&[(1, 9)]));
        let db = j.db.borrow_mut().take().unwrap();
        assert_eq!(
            db.schema.cluster.get(&2).map(String::as_str),
            Some(Uuid::from_bytes([2; 16]).to_string().as_str())
        );
        // A join that starts over starts from nothing.
        let again = Joining::default();
        again.begin(vclock(&[(1, 7)]));
        snapshot(&again);
        again.begin(vclock(&[(1, 7)]));
        snapshot(&again);
        confirm.lsn = 10;
        again.final_row(&confirm).unwrap();
        assert_eq!(again.vclock.get(), vclock(&[(1, 10)]));
    }

    #[test]
    fn peers_are_registered_after_the_instance_in_order() {
        let j = Joining::default();
        j.begin(Vclock::new());
        snapshot(&j);
        let mut db = j.db.borrow_mut().take().unwrap();
        let peers = [Uuid::from_bytes([3; 16]), Uuid::from_bytes([5; 16])];
        register_peers(&mut db, &peers).unwrap();
        let ids: Vec<(u32, String)> = db.schema.cluster.iter().map(|(id, u)| (*id, u.clone())).collect();
        assert_eq!(
            ids,
            [
                (1, Uuid::from_bytes([1; 16]).to_string()),
                (2, peers[0].to_string()),
                (3, peers[1].to_string())
            ]
        );
    }
}
