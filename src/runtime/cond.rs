//! `fiber.cond`: a condition variable for fibers, as Tarantool's `fiber_cond`.
//! `wait` returns true when signalled and false on timeout; a cancel raises.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use mlua::prelude::*;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::fiber;

struct Waiter {
    signalled: Cell<bool>,
    wake: Notify,
}

#[derive(Default)]
struct Cond {
    waiters: RefCell<VecDeque<Rc<Waiter>>>,
}

impl Cond {
    fn signal(&self) {
        if let Some(w) = self.waiters.borrow_mut().pop_front() {
            w.signalled.set(true);
            w.wake.notify_one();
        }
    }

    fn broadcast(&self) {
        for w in self.waiters.borrow_mut().drain(..) {
            w.signalled.set(true);
            w.wake.notify_one();
        }
    }
}

const WAIT_USAGE: &str = "usage: cond:wait([timeout])";

async fn wait(lua: Lua, cond: Rc<Cond>, deadline: Option<Instant>) -> LuaResult<bool> {
    let waiter = Rc::new(Waiter {
        signalled: Cell::new(false),
        wake: Notify::new(),
    });
    cond.waiters.borrow_mut().push_back(waiter.clone());
    let outcome = match deadline {
        None => fiber::cancellable(&lua, waiter.wake.notified()).await.map(|_| true),
        Some(d) => fiber::cancellable(&lua, tokio::time::timeout_at(d, waiter.wake.notified()))
            .await
            .map(|r| r.is_ok()),
    };
    if !waiter.signalled.get() {
        cond.waiters.borrow_mut().retain(|w| !Rc::ptr_eq(w, &waiter));
    }
    outcome.map(|_| waiter.signalled.get())
}

#[derive(Clone)]
struct CondObject(Rc<Cond>);

impl LuaUserData for CondObject {
    fn add_methods<M: LuaUserDataMethods<Self>>(methods: &mut M) {
        methods.add_async_method("wait", |lua, this, timeout: Option<LuaValue>| {
            let cond = this.0.clone();
            drop(this);
            async move {
                let deadline = match timeout {
                    None | Some(LuaValue::Nil) => None,
                    Some(LuaValue::Integer(i)) => Some(Instant::now() + fiber::duration_from_secs(i as f64)),
                    Some(LuaValue::Number(n)) if n.is_infinite() && n > 0.0 => None,
                    Some(LuaValue::Number(n)) => Some(Instant::now() + fiber::duration_from_secs(n)),
                    Some(_) => return Err(LuaError::runtime(WAIT_USAGE)),
                };
                wait(lua, cond, deadline).await
            }
        });
        methods.add_method("signal", |_, this, ()| {
            this.0.signal();
            Ok(())
        });
        methods.add_method("broadcast", |_, this, ()| {
            this.0.broadcast();
            Ok(())
        });
        methods.add_meta_method(LuaMetaMethod::ToString, |_, _, ()| Ok("cond"));
    }
}

/// `fiber.cond()`.
pub fn new_cond(lua: &Lua, _: ()) -> LuaResult<LuaAnyUserData> {
    lua.create_userdata(CondObject(Rc::new(Cond::default())))
}
