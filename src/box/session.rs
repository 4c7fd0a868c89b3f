//! Sessions: who a fiber acts for. As in Tarantool, a fiber serving an IPROTO request is
//! bound to its connection's session (user, effective user, the request's sync, where a
//! `box.session.push` goes); every other fiber acts in the local session, whose users
//! live in `BoxRuntime`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// What `box.session.type()` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    Binary,
    Console,
    /// A replication upstream's fiber (space triggers see replicated rows in it).
    Applier,
}

impl SessionKind {
    pub fn name(self) -> &'static str {
        match self {
            SessionKind::Binary => "binary",
            SessionKind::Console => "console",
            SessionKind::Applier => "applier",
        }
    }
}

/// Sends `box.session.push(value)` (MessagePack) to the session's client as a chunk of
/// the request `sync`.
pub type PushSink = Box<dyn Fn(u64, &[u8])>;

/// One client connection's session.
pub struct Session {
    pub id: u64,
    pub kind: SessionKind,
    /// The authenticated user (guest until AUTH).
    pub uid: Cell<u32>,
    /// `box.session.peer()`: `host:port` or the unix socket path.
    pub peer: String,
    push: Option<PushSink>,
    /// `box.session.storage` was touched: it must be dropped at disconnect.
    pub storage_used: Cell<bool>,
}

impl Session {
    pub fn new(kind: SessionKind, uid: u32, peer: String, push: Option<PushSink>) -> Rc<Session> {
        let id = NEXT_ID.with(|n| {
            let id = n.get();
            n.set(id + 1);
            id
        });
        let s = Rc::new(Session {
            id,
            kind,
            uid: Cell::new(uid),
            peer,
            push,
            storage_used: Cell::new(false),
        });
        LIVE.with(|l| l.borrow_mut().insert(id, Rc::downgrade(&s)));
        s
    }

    /// Pushes `value` to the client; false when the session cannot push.
    pub fn push(&self, sync: u64, value: &[u8]) -> bool {
        match &self.push {
            Some(sink) => {
                sink(sync, value);
                true
            }
            None => false,
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let id = self.id;
        let _ = LIVE.try_with(|l| l.borrow_mut().remove(&id));
    }
}

/// A fiber serving a request of `session`.
struct Binding {
    session: Rc<Session>,
    /// `box.session.su` changes it for the fiber only.
    euid: u32,
    sync: u64,
}

thread_local! {
    static BINDINGS: RefCell<hashbrown::HashMap<u64, Binding>> = RefCell::new(hashbrown::HashMap::new());
    static LIVE: RefCell<hashbrown::HashMap<u64, std::rc::Weak<Session>>> = RefCell::new(hashbrown::HashMap::new());
    /// Session 1 is the local one (the script and the console), as in Tarantool.
    static NEXT_ID: Cell<u64> = const { Cell::new(2) };
    static REPL_FIBER: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Binds fiber `fid` to `session` for the request `sync`.
pub fn bind(fid: u64, session: Rc<Session>, sync: u64) {
    let euid = session.uid.get();
    BINDINGS.with(|b| b.borrow_mut().insert(fid, Binding { session, euid, sync }));
}

pub fn unbind(fid: u64) {
    BINDINGS.with(|b| b.borrow_mut().remove(&fid));
}

/// The session fiber `fid` serves, if it serves one.
pub fn of_fiber(fid: u64) -> Option<Rc<Session>> {
    BINDINGS.with(|b| b.borrow().get(&fid).map(|x| x.session.clone()))
}

/// The effective user of a bound fiber.
pub fn euid(fid: u64) -> Option<u32> {
    BINDINGS.with(|b| {
        let b = b.borrow();
        if b.is_empty() {
            return None;
        }
        b.get(&fid).map(|x| x.euid)
    })
}

/// The session user of a bound fiber.
pub fn uid(fid: u64) -> Option<u32> {
    BINDINGS.with(|b| b.borrow().get(&fid).map(|x| x.session.uid.get()))
}

pub fn sync(fid: u64) -> Option<u64> {
    BINDINGS.with(|b| b.borrow().get(&fid).map(|x| x.sync))
}

/// `box.session.su`: false when the fiber is not bound (the caller changes the local
/// session's users instead). `session_too` also changes the session's user.
pub fn set_euid(fid: u64, uid: u32, session_too: bool) -> bool {
    BINDINGS.with(|b| match b.borrow_mut().get_mut(&fid) {
        Some(x) => {
            x.euid = uid;
            if session_too {
                x.session.uid.set(uid);
            }
            true
        }
        None => false,
    })
}

/// Marks fiber `fid` as the local console's (None: there is none now). It stays in the
/// local session 1, whose type there is `repl`, as in Tarantool.
pub fn set_repl_fiber(fid: Option<u64>) {
    REPL_FIBER.with(|r| r.set(fid));
}

/// `box.session.type()` for fiber `fid`: its session's, `repl` in the local console,
/// `background` in any other fiber (a script, a fiber it started), as in Tarantool.
pub fn kind_name(fid: u64) -> &'static str {
    match of_fiber(fid) {
        Some(s) => s.kind.name(),
        None if REPL_FIBER.with(Cell::get) == Some(fid) => "repl",
        None => "background",
    }
}

/// The live session with this id (not the local one, which has no object).
pub fn by_id(id: u64) -> Option<Rc<Session>> {
    LIVE.with(|l| l.borrow().get(&id).and_then(std::rc::Weak::upgrade))
}

/// `box.session.exists(id)`.
pub fn exists(id: u64) -> bool {
    id == 1 || LIVE.with(|l| l.borrow().get(&id).is_some_and(|w| w.strong_count() > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_fiber_acts_as_its_session_user() {
        let s = Session::new(SessionKind::Binary, 0, "127.0.0.1:1".into(), None);
        assert!(exists(s.id));
        assert_eq!(euid(77), None);
        bind(77, s.clone(), 5);
        assert_eq!((euid(77), uid(77), sync(77)), (Some(0), Some(0), Some(5)));
        assert!(set_euid(77, 1, false));
        assert_eq!((euid(77), uid(77)), (Some(1), Some(0)));
        assert!(!set_euid(78, 1, false));
        unbind(77);
        assert_eq!(euid(77), None);
        let id = s.id;
        drop(s);
        assert!(!exists(id));
        assert!(exists(1));
    }

    #[test]
    fn push_goes_to_the_sink() {
        let got = Rc::new(RefCell::new(Vec::new()));
        let g = got.clone();
        let s = Session::new(
            SessionKind::Binary,
            0,
            String::new(),
            Some(Box::new(move |sync, v| g.borrow_mut().push((sync, v.to_vec())))),
        );
        assert!(s.push(3, b"\x01"));
        assert_eq!(*got.borrow(), vec![(3, vec![1])]);
        let c = Session::new(SessionKind::Console, 1, String::new(), None);
        assert!(!c.push(3, b"\x01"));
    }
}
