//! `fiber.channel`: Tarantool's bounded message queue between fibers.
//!
//! Semantics follow Tarantool's `fiber_channel`: a `put` hands its message straight to a
//! waiting reader when there is one, otherwise buffers it, otherwise waits. With capacity 0
//! nothing is ever buffered, so `put` waits until a reader takes the message (rendezvous).
//! `close` wakes every waiter; later `put`s return false and `get`s return nil, and buffered
//! messages are dropped. Messages are kept as registry keys, never as mlua handles (see
//! `fiber.rs` for why).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use mlua::prelude::*;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::fiber;

/// A fiber parked in `put` or `get`.
struct Waiter {
    /// For a writer: the message it offers. For a reader: the message handed to it.
    slot: RefCell<Option<LuaRegistryKey>>,
    /// Set when the other side completed the exchange.
    done: Cell<bool>,
    wake: Notify,
}

impl Waiter {
    fn new(slot: Option<LuaRegistryKey>) -> Rc<Waiter> {
        Rc::new(Waiter {
            slot: RefCell::new(slot),
            done: Cell::new(false),
            wake: Notify::new(),
        })
    }
}

struct Channel {
    capacity: usize,
    buffer: RefCell<VecDeque<LuaRegistryKey>>,
    closed: Cell<bool>,
    readers: RefCell<VecDeque<Rc<Waiter>>>,
    writers: RefCell<VecDeque<Rc<Waiter>>>,
}

#[derive(Clone)]
struct ChannelObject(Rc<Channel>);

fn timeout_arg(v: Option<LuaValue>, usage: &str) -> LuaResult<Option<Instant>> {
    let secs = match v {
        None | Some(LuaValue::Nil) => return Ok(None),
        Some(LuaValue::Integer(i)) => i as f64,
        Some(LuaValue::Number(n)) => n,
        Some(_) => return Err(LuaError::runtime(usage.to_string())),
    };
    if secs.is_infinite() && secs > 0.0 {
        return Ok(None);
    }
    Ok(Some(Instant::now() + fiber::duration_from_secs(secs)))
}

/// Waits for `waiter` to be completed by the other side, up to `deadline`.
/// Returns true if it was completed.
async fn park(lua: &Lua, waiter: &Rc<Waiter>, deadline: Option<Instant>) -> LuaResult<bool> {
    while !waiter.done.get() {
        let notified = waiter.wake.notified();
        let woke = match deadline {
            None => {
                fiber::cancellable(lua, notified).await?;
                true
            }
            Some(d) => fiber::cancellable(lua, tokio::time::timeout_at(d, notified))
                .await?
                .is_ok(),
        };
        if !woke {
            return Ok(waiter.done.get());
        }
    }
    Ok(true)
}

fn remove_waiter(queue: &RefCell<VecDeque<Rc<Waiter>>>, waiter: &Rc<Waiter>) {
    queue.borrow_mut().retain(|w| !Rc::ptr_eq(w, waiter));
}

impl Channel {
    /// Takes a message without waiting, if one can be had.
    fn try_take(&self) -> Option<LuaRegistryKey> {
        let from_buffer = self.buffer.borrow_mut().pop_front();
        // A writer blocked on a full buffer (or on a rendezvous) can move in now.
        let writer = self.writers.borrow_mut().pop_front();
        match (from_buffer, writer) {
            (Some(msg), Some(w)) => {
                if let Some(m) = w.slot.borrow_mut().take() {
                    self.buffer.borrow_mut().push_back(m);
                }
                w.done.set(true);
                w.wake.notify_one();
                Some(msg)
            }
            (Some(msg), None) => Some(msg),
            (None, Some(w)) => {
                let msg = w.slot.borrow_mut().take();
                w.done.set(true);
                w.wake.notify_one();
                msg
            }
            (None, None) => None,
        }
    }

    /// Delivers a message without waiting if possible; gives it back otherwise.
    fn try_give(&self, msg: LuaRegistryKey) -> Result<(), LuaRegistryKey> {
        if let Some(reader) = self.readers.borrow_mut().pop_front() {
            *reader.slot.borrow_mut() = Some(msg);
            reader.done.set(true);
            reader.wake.notify_one();
            return Ok(());
        }
        if self.buffer.borrow().len() < self.capacity {
            self.buffer.borrow_mut().push_back(msg);
            return Ok(());
        }
        Err(msg)
    }

    fn close(&self, lua: &Lua) {
        if self.closed.replace(true) {
            return;
        }
        for key in self.buffer.borrow_mut().drain(..) {
            let _ = lua.remove_registry_value(key);
        }
        for w in self
            .readers
            .borrow_mut()
            .drain(..)
            .chain(self.writers.borrow_mut().drain(..))
        {
            w.wake.notify_one();
        }
    }
}

async fn put(lua: Lua, ch: Rc<Channel>, value: LuaValue, deadline: Option<Instant>) -> LuaResult<bool> {
    fiber::testcancel(&lua)?;
    if ch.closed.get() {
        return Ok(false);
    }
    let msg = lua.create_registry_value(value)?;
    let msg = match ch.try_give(msg) {
        Ok(()) => return Ok(true),
        Err(msg) => msg,
    };
    if deadline.is_some_and(|d| d <= Instant::now()) {
        let _ = lua.remove_registry_value(msg);
        return Ok(false);
    }
    let waiter = Waiter::new(Some(msg));
    ch.writers.borrow_mut().push_back(waiter.clone());
    let outcome = park(&lua, &waiter, deadline).await;
    if !waiter.done.get() {
        remove_waiter(&ch.writers, &waiter);
        if let Some(msg) = waiter.slot.borrow_mut().take() {
            let _ = lua.remove_registry_value(msg);
        }
    }
    let delivered = outcome?;
    Ok(delivered && !(ch.closed.get() && waiter.slot.borrow().is_some()))
}

async fn get(lua: Lua, ch: Rc<Channel>, deadline: Option<Instant>) -> LuaResult<LuaValue> {
    fiber::testcancel(&lua)?;
    if ch.closed.get() {
        return Ok(LuaValue::Nil);
    }
    if let Some(msg) = ch.try_take() {
        let v = lua.registry_value(&msg)?;
        let _ = lua.remove_registry_value(msg);
        return Ok(v);
    }
    if deadline.is_some_and(|d| d <= Instant::now()) {
        return Ok(LuaValue::Nil);
    }
    let waiter = Waiter::new(None);
    ch.readers.borrow_mut().push_back(waiter.clone());
    let outcome = park(&lua, &waiter, deadline).await;
    let msg = waiter.slot.borrow_mut().take();
    if !waiter.done.get() {
        remove_waiter(&ch.readers, &waiter);
    }
    if let Err(e) = outcome {
        // Cancelled after a writer handed over a message: give it back to the channel so
        // nothing is lost.
        if let Some(msg) = msg {
            if let Err(msg) = ch.try_give(msg) {
                ch.buffer.borrow_mut().push_front(msg);
            }
        }
        return Err(e);
    }
    match msg {
        Some(msg) => {
            let v = lua.registry_value(&msg)?;
            let _ = lua.remove_registry_value(msg);
            Ok(v)
        }
        None => Ok(LuaValue::Nil),
    }
}

const PUT_USAGE: &str = "usage: channel:put(var [, timeout])";
const GET_USAGE: &str = "usage: channel:get([timeout])";

impl LuaUserData for ChannelObject {
    fn add_methods<M: LuaUserDataMethods<Self>>(methods: &mut M) {
        methods.add_async_method("put", |lua, this, args: LuaMultiValue| {
            let ch = this.0.clone();
            drop(this);
            async move {
                let mut args = args.into_iter();
                let value = args.next().ok_or_else(|| LuaError::runtime(PUT_USAGE))?;
                let deadline = timeout_arg(args.next(), PUT_USAGE)?;
                put(lua, ch, value, deadline).await
            }
        });
        methods.add_async_method("get", |lua, this, timeout: Option<LuaValue>| {
            let ch = this.0.clone();
            drop(this);
            async move {
                let deadline = timeout_arg(timeout, GET_USAGE)?;
                get(lua, ch, deadline).await
            }
        });
        methods.add_method("close", |lua, this, ()| {
            this.0.close(lua);
            Ok(())
        });
        methods.add_method("is_closed", |_, this, ()| Ok(this.0.closed.get()));
        methods.add_method("count", |_, this, ()| Ok(this.0.buffer.borrow().len()));
        methods.add_method("size", |_, this, ()| Ok(this.0.capacity));
        methods.add_method("is_full", |_, this, ()| {
            Ok(this.0.buffer.borrow().len() >= this.0.capacity)
        });
        methods.add_method("is_empty", |_, this, ()| Ok(this.0.buffer.borrow().is_empty()));
        methods.add_method("has_readers", |_, this, ()| Ok(!this.0.readers.borrow().is_empty()));
        methods.add_method("has_writers", |_, this, ()| Ok(!this.0.writers.borrow().is_empty()));
        methods.add_meta_method(LuaMetaMethod::ToString, |_, this, ()| {
            Ok(format!("channel: {}", this.0.buffer.borrow().len()))
        });
    }
}

/// `fiber.channel([size])`.
pub fn new_channel(lua: &Lua, size: Option<LuaValue>) -> LuaResult<LuaAnyUserData> {
    let capacity = match size {
        None | Some(LuaValue::Nil) => 0,
        Some(LuaValue::Integer(n)) if n < 0 => return Err(LuaError::runtime("fiber.channel(size): negative size")),
        Some(LuaValue::Integer(n)) => n as usize,
        Some(LuaValue::Number(n)) if n < 0.0 => return Err(LuaError::runtime("fiber.channel(size): negative size")),
        Some(LuaValue::Number(n)) => n as usize,
        Some(_) => return Err(LuaError::runtime("fiber.channel(size): bad arguments")),
    };
    lua.create_userdata(ChannelObject(Rc::new(Channel {
        capacity,
        buffer: RefCell::new(VecDeque::new()),
        closed: Cell::new(false),
        readers: RefCell::new(VecDeque::new()),
        writers: RefCell::new(VecDeque::new()),
    })))
}
