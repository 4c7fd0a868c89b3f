//! The seam between the replication transport and the election and synchronous-queue
//! drivers: the relay and the applier report what they hear here, and learn from here
//! what to send and whom to accept rows from. Everything runs on the Lua thread.
//!
//! Until the Raft driver registers itself ([`set_driver`]), Raft is off: no RAFT rows are
//! sent, rows are accepted from every source and acks are only recorded.

use std::cell::RefCell;
use std::rc::Rc;

use tokio::sync::watch;

use crate::box_::wal::vclock::Vclock;

/// What the Raft and limbo driver does with what the transport hears.
pub trait Driver {
    /// A RAFT row (type 30) arrived from the instance `source`; `body` is its MessagePack
    /// body. An error is logged by the applier, which goes on.
    fn on_raft_row(&self, source: u32, body: &[u8]) -> Result<(), String>;
    /// Any row or heartbeat arrived from `source` (the leader's liveness).
    fn on_upstream_traffic(&self, source: u32);
    /// The applier lost its connection to `source`.
    fn on_upstream_lost(&self, source: u32);
    /// Whether rows originating from `source` may be applied now (Raft on: only the leader's).
    fn accepts_rows_from(&self, source: u32) -> bool;
    /// A replica acknowledged everything up to `vclock` (synchronous quorum).
    fn on_replica_ack(&self, replica_id: u32, vclock: &Vclock);
}

struct Hub {
    driver: Option<Rc<dyn Driver>>,
    /// The newest RAFT row from each source heard before the driver started (appliers
    /// subscribe while box.cfg still runs): handed to it when it registers, or a restarted
    /// follower would not learn the leader until the leader's state changes.
    early_raft: Vec<(u32, Vec<u8>)>,
    /// The body of the RAFT row every relay sends on subscribe and whenever it changes.
    raft_state: watch::Sender<Option<Rc<Vec<u8>>>>,
}

thread_local! {
    static HUB: RefCell<Hub> = RefCell::new(Hub {
        driver: None,
        early_raft: Vec::new(),
        raft_state: watch::channel(None).0,
    });
}

fn driver() -> Option<Rc<dyn Driver>> {
    HUB.with(|h| h.borrow().driver.clone())
}

pub fn set_driver(driver: Rc<dyn Driver>) {
    let early = HUB.with(|h| {
        let mut h = h.borrow_mut();
        h.driver = Some(driver.clone());
        std::mem::take(&mut h.early_raft)
    });
    for (source, body) in early {
        let _ = driver.on_raft_row(source, &body);
    }
}

/// Relay: the current RAFT state body (None while Raft has never spoken) and its changes.
pub fn watch_raft_state() -> watch::Receiver<Option<Rc<Vec<u8>>>> {
    HUB.with(|h| h.borrow().raft_state.subscribe())
}

/// Raft driver: a new state for every relay to send.
pub fn publish_raft_state(body: Vec<u8>) {
    HUB.with(|h| h.borrow().raft_state.send_replace(Some(Rc::new(body))));
}

/// Applier: a RAFT row from `source`.
pub fn on_raft_row(source: u32, body: &[u8]) -> Result<(), String> {
    match driver() {
        Some(d) => d.on_raft_row(source, body),
        None => {
            HUB.with(|h| {
                let mut h = h.borrow_mut();
                h.early_raft.retain(|(s, _)| *s != source);
                h.early_raft.push((source, body.to_vec()));
            });
            Ok(())
        }
    }
}

/// Applier: a row or heartbeat from `source`.
pub fn on_upstream_traffic(source: u32) {
    if let Some(d) = driver() {
        d.on_upstream_traffic(source);
    }
}

/// Applier: the connection to `source` is gone.
pub fn on_upstream_lost(source: u32) {
    if let Some(d) = driver() {
        d.on_upstream_lost(source);
    }
}

/// Applier: may rows that originate from `source` be applied?
pub fn accepts_rows_from(source: u32) -> bool {
    driver().is_none_or(|d| d.accepts_rows_from(source))
}

/// Relay: an ACK `{0x26: vclock}` from the replica `replica_id`.
pub fn on_replica_ack(replica_id: u32, vclock: &Vclock) {
    if let Some(d) = driver() {
        d.on_replica_ack(replica_id, vclock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    struct Recorder(RefCell<Vec<(u32, Vec<u8>)>>);

    impl Driver for Recorder {
        fn on_raft_row(&self, source: u32, body: &[u8]) -> Result<(), String> {
            self.0.borrow_mut().push((source, body.to_vec()));
            Ok(())
        }
        fn on_upstream_traffic(&self, _: u32) {}
        fn on_upstream_lost(&self, _: u32) {}
        fn accepts_rows_from(&self, _: u32) -> bool {
            true
        }
        fn on_replica_ack(&self, _: u32, _: &Vclock) {}
    }

    #[test]
    fn raft_rows_heard_before_the_driver_reach_it_newest_per_source() {
        on_raft_row(2, b"old").unwrap();
        on_raft_row(3, b"three").unwrap();
        on_raft_row(2, b"new").unwrap();
        let recorder = Rc::new(Recorder::default());
        set_driver(recorder.clone());
        assert_eq!(*recorder.0.borrow(), [(3, b"three".to_vec()), (2, b"new".to_vec())]);
        on_raft_row(4, b"live").unwrap();
        assert_eq!(recorder.0.borrow().last(), Some(&(4, b"live".to_vec())));
    }
}
