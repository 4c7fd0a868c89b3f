//! What box is doing (`box.info.status`: loading, running, orphan) and who the instance is,
//! known from the start of `box.cfg{}`: while it bootstraps or recovers, the IPROTO server
//! already listens (peers read the ballot there and must see the instance's own UUID in the
//! greeting), yet the box runtime does not exist until recovery and bootstrap are done.

use std::cell::RefCell;

use uuid::Uuid;

use super::wal::vclock::Vclock;

/// `box.info.status` as Tarantool 2.6 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Status {
    /// Before `box.cfg{}`, and while it recovers, bootstraps or joins.
    #[default]
    Unconfigured,
    Loading,
    Running,
    /// Synchronised with fewer upstreams than `replication_connect_quorum`: read-only.
    Orphan,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            // Tarantool's title before box.cfg{} ("unknown" is its initial status).
            Status::Unconfigured => "unknown",
            Status::Loading => "loading",
            Status::Running => "running",
            Status::Orphan => "orphan",
        }
    }
}

#[derive(Default)]
struct State {
    status: Status,
    instance_uuid: Option<Uuid>,
    /// The vclock of what is recovered or joined so far, while loading.
    loading_vclock: Vclock,
    /// `box.cfg.read_only` as configured (the ballot's `is_ro`).
    cfg_read_only: bool,
    /// Too few upstreams are synced: read-only whatever `box.cfg.read_only` says (set
    /// before the status shows it while box.cfg reconnects).
    orphan: bool,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

pub fn status() -> Status {
    STATE.with(|s| s.borrow().status)
}

pub fn set_status(status: Status) {
    STATE.with(|s| s.borrow_mut().status = status);
}

/// True once `box.cfg{}` has finished loading (running or orphan).
pub fn is_configured() -> bool {
    matches!(status(), Status::Running | Status::Orphan)
}

/// The instance UUID, from the moment `box.cfg{}` has chosen it.
pub fn instance_uuid() -> Option<Uuid> {
    STATE.with(|s| s.borrow().instance_uuid)
}

pub fn set_instance_uuid(uuid: Uuid) {
    STATE.with(|s| s.borrow_mut().instance_uuid = Some(uuid));
}

/// While loading: the vclock recovered or joined so far (a ballot's vclock).
pub fn loading_vclock() -> Vclock {
    STATE.with(|s| s.borrow().loading_vclock)
}

pub fn set_loading_vclock(vclock: Vclock) {
    STATE.with(|s| s.borrow_mut().loading_vclock = vclock);
}

/// `box.cfg.read_only` as configured, whatever else makes the instance read-only.
pub fn cfg_read_only() -> bool {
    STATE.with(|s| s.borrow().cfg_read_only)
}

pub fn set_cfg_read_only(read_only: bool) {
    STATE.with(|s| s.borrow_mut().cfg_read_only = read_only);
}

/// Read-only for want of synced upstreams (`box_is_orphan`).
pub fn is_orphan() -> bool {
    STATE.with(|s| s.borrow().orphan)
}

pub fn set_orphan(orphan: bool) {
    STATE.with(|s| s.borrow_mut().orphan = orphan);
}
