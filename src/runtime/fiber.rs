//! Fibers: Tarantool's green threads, built as Lua coroutines driven by tokio tasks.
//!
//! A fiber is a Lua coroutine parked in the Lua registry plus one `spawn_local` task that
//! resumes it. The task re-fetches the coroutine from the registry on every poll instead of
//! holding an mlua handle, because every handle held in Rust takes a slot of LuaJIT's
//! 8,000-slot C stack and 100,000 fibers must be able to live at once.
//!
//! Yield points are async Rust functions (`fiber.sleep`, channel and socket waits). They
//! run through [`cancellable`], so that `fiber:cancel()` wakes a waiting fiber and makes the
//! wait raise `fiber is cancelled`, as in Tarantool, and pcall/cleanup code runs.
//!
//! `fiber.create` is eager like Tarantool's: the child runs until its first yield before
//! `create` returns. That is done by polling the child's driver once, right there, with a
//! no-op waker; the spawned task polls it again and registers the real waker.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use mlua::prelude::*;
use tokio::sync::Notify;

use super::errors;

/// Tarantool reserves fiber ids up to 100 for its own fibers; user fibers start above.
const FIRST_FIBER_ID: u64 = 101;

/// Tarantool's limit on a fiber name (FIBER_NAME_MAX is 255 bytes plus the terminator).
const FIBER_NAME_MAX: usize = 255;

/// The text Tarantool gives to a FiberIsCancelled error.
pub const CANCELLED: &str = "fiber is cancelled";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FiberState {
    /// Created and waiting for its first run, or parked at a yield point.
    Suspended,
    Running,
    Dead,
}

/// What a finished fiber left behind for `join`: a packed table `{n = k, ...}` whose first
/// value is the success flag, as `join` returns it.
type JoinResult = LuaRegistryKey;

/// One fiber's bookkeeping. The Lua coroutine itself lives in the registry.
pub struct Fiber {
    pub id: u64,
    name: RefCell<String>,
    state: Cell<FiberState>,
    cancelled: Cell<bool>,
    cancel_notify: Notify,
    joinable: Cell<bool>,
    join_notify: Notify,
    result: RefCell<Option<JoinResult>>,
    /// `fiber.self().storage`, created on first use.
    storage: RefCell<Option<LuaRegistryKey>>,
    /// Context switches, reported by `fiber.info()`.
    csw: Cell<u64>,
    /// The waker of the fiber's task, refreshed on every poll: Lua-level parking
    /// (`park` in lua/fiber.lua) is woken through it.
    waker: RefCell<Waker>,
    /// Set by `wakeup`; read and cleared by the parked fiber.
    woken: Cell<bool>,
    /// When a Lua-level park times out; the fiber's driver arms a timer for it.
    deadline: Cell<Option<Instant>>,
    /// The park outcome computed on the latest resume (see `park_status`).
    last_outcome: Cell<u8>,
    /// Replaces the error log line (the main script exits instead).
    on_error: RefCell<Option<OnError>>,
}

impl Fiber {
    fn new(id: u64, name: String) -> Fiber {
        Fiber {
            id,
            name: RefCell::new(name),
            state: Cell::new(FiberState::Suspended),
            cancelled: Cell::new(false),
            cancel_notify: Notify::new(),
            joinable: Cell::new(false),
            join_notify: Notify::new(),
            result: RefCell::new(None),
            storage: RefCell::new(None),
            csw: Cell::new(0),
            waker: RefCell::new(Waker::noop().clone()),
            woken: Cell::new(false),
            deadline: Cell::new(None),
            on_error: RefCell::new(None),
            last_outcome: Cell::new(PARK_WAITING),
        }
    }

    pub fn name(&self) -> String {
        self.name.borrow().clone()
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.get()
    }

    fn is_dead(&self) -> bool {
        self.state.get() == FiberState::Dead
    }

    /// Marks the fiber cancelled and wakes it if it waits at a yield point.
    pub fn cancel(&self) {
        self.cancelled.set(true);
        self.cancel_notify.notify_one();
        self.waker.borrow().wake_by_ref();
    }

    /// Wakes the fiber from a Lua-level park (`fiber_object:wakeup()`, channels, conds).
    pub fn wakeup(&self) {
        self.woken.set(true);
        self.waker.borrow().wake_by_ref();
    }
}

/// Fiber ids are unique counters: hashing them is a waste, so the map uses them as is.
#[derive(Default, Clone, Copy)]
struct IdHash;

impl std::hash::BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The fiber scheduler's shared state (one per thread).
pub struct Scheduler {
    fibers: RefCell<HashMap<u64, Rc<Fiber>, IdHash>>,
    current: RefCell<Rc<Fiber>>,
    next_id: Cell<u64>,
    /// Things other than fibers that keep the process running after the main chunk:
    /// listeners, consoles, swim instances, box.
    pins: Cell<usize>,
    started: Instant,
}

impl Scheduler {
    fn new() -> Scheduler {
        // Id 1 is the scheduler itself: code that runs outside any fiber sees it.
        let sched = Rc::new(Fiber::new(1, "sched".into()));
        sched.state.set(FiberState::Running);
        Scheduler {
            fibers: RefCell::new(HashMap::default()),
            current: RefCell::new(sched),
            next_id: Cell::new(FIRST_FIBER_ID),
            pins: Cell::new(0),
            started: Instant::now(),
        }
    }

    /// The running fiber (the scheduler pseudo-fiber outside any fiber).
    pub fn current(&self) -> Rc<Fiber> {
        self.current.borrow().clone()
    }

    /// Fibers created and not yet finished.
    pub fn live(&self) -> usize {
        self.fibers.borrow().values().filter(|f| !f.is_dead()).count()
    }

    /// Keeps the process alive after the main chunk (a listener, a console, ...).
    pub fn pin(&self) {
        self.pins.set(self.pins.get() + 1);
    }

    pub fn unpin(&self) {
        self.pins.set(self.pins.get().saturating_sub(1));
    }

    /// True if the process must stay in the event loop after the main chunk returns.
    pub fn has_pending_work(&self) -> bool {
        self.pins.get() > 0 || self.live() > 0
    }

    fn find(&self, id: u64) -> Option<Rc<Fiber>> {
        self.fibers.borrow().get(&id).cloned()
    }

    fn enter(&self, fiber: &Rc<Fiber>) -> Rc<Fiber> {
        fiber.state.set(FiberState::Running);
        fiber.csw.set(fiber.csw.get() + 1);
        let prev = std::mem::replace(&mut *self.current.borrow_mut(), fiber.clone());
        if prev.state.get() == FiberState::Running && prev.id != 1 {
            prev.state.set(FiberState::Suspended);
        }
        prev
    }

    fn leave(&self, fiber: &Rc<Fiber>, prev: Rc<Fiber>) {
        if fiber.state.get() == FiberState::Running {
            fiber.state.set(FiberState::Suspended);
        }
        if !prev.is_dead() {
            prev.state.set(FiberState::Running);
        }
        *self.current.borrow_mut() = prev;
    }
}

thread_local! {
    // One Lua state per thread, so one scheduler per thread; a thread-local is much
    // cheaper than the app-data map on the paths every switch takes.
    static SCHEDULER: Rc<Scheduler> = Rc::new(Scheduler::new());
}

/// The scheduler of this thread's Lua state.
pub fn scheduler(_lua: &Lua) -> Rc<Scheduler> {
    SCHEDULER.with(Rc::clone)
}

/// The fiber that is running now.
pub fn current(_lua: &Lua) -> Rc<Fiber> {
    SCHEDULER.with(|s| s.current())
}

/// Raises `fiber is cancelled` if the running fiber was cancelled.
pub fn testcancel(lua: &Lua) -> LuaResult<()> {
    if current(lua).is_cancelled() {
        return Err(errors::fiber_is_cancelled());
    }
    Ok(())
}

/// Awaits `fut` as a yield point of the running fiber: a cancel wakes the fiber and turns
/// the wait into a `fiber is cancelled` error, which is also raised if the fiber was
/// cancelled before. Every blocking Lua call (sleep, channel, socket) goes through this.
pub async fn cancellable<F: Future>(lua: &Lua, fut: F) -> LuaResult<F::Output> {
    let fiber = current(lua);
    if fiber.is_cancelled() {
        return Err(errors::fiber_is_cancelled());
    }
    tokio::select! {
        biased;
        _ = fiber.cancel_notify.notified() => Err(errors::fiber_is_cancelled()),
        out = fut => {
            if fiber.is_cancelled() {
                return Err(errors::fiber_is_cancelled());
            }
            Ok(out)
        }
    }
}

/// Yields the running fiber once: it goes to the back of the ready queue.
pub async fn yield_now() {
    struct YieldNow(bool);
    impl Future for YieldNow {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                return Poll::Ready(());
            }
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
    YieldNow(false).await
}

// ===== Spawning =====

/// Lua glue at the bottom of every fiber's coroutine. It runs a fiber's function under
/// xpcall, so that an error value (a string, a table, a box.error) reaches Rust intact with
/// its traceback, then hands the results to Rust and parks the coroutine in the pool, from
/// which the next fiber takes it (Tarantool recycles its fibers the same way). Reusing
/// coroutines saves a `lua_newthread`, a registry slot and garbage per fiber.
const TRAMPOLINE_LUA: &str = r#"
local convert, traceback, finish, fids, PENDING = ...
local raw_xpcall, type, co_running, co_yield = xpcall, type, coroutine.running, coroutine.yield
local last_traceback
local function handler(e)
    if type(e) == 'userdata' then e = convert(e) end
    last_traceback = traceback('', 2)
    return e
end
local function done(co, ok, ...)
    fids[co] = nil
    if ok then return finish(true, ...) end
    local tb = last_traceback
    last_traceback = nil
    return finish(false, (...), tb)
end
local body
body = function(fid, fn, ...)
    local co = co_running()
    fids[co] = fid
    done(co, raw_xpcall(fn, handler, ...))
    return body(co_yield(PENDING))
end
return body
"#;

/// Coroutines kept for reuse; past this many, finished coroutines are left to the GC.
const POOL_MAX: usize = 4096;

struct FiberLua {
    trampoline: LuaRegistryKey,
    /// Coroutines parked in the trampoline, waiting for their next fiber.
    pool: RefCell<Vec<LuaRegistryKey>>,
    /// Lua table: coroutine -> fiber id, for the fast paths of lua/fiber.lua.
    fids: LuaRegistryKey,
}

fn fiber_lua(lua: &Lua) -> LuaResult<mlua::AppDataRef<'_, FiberLua>> {
    if lua.app_data_ref::<FiberLua>().is_none() {
        let traceback: LuaFunction = lua.load("return debug.traceback").eval()?;
        let fids = lua.create_table()?;
        let finish = lua.create_function(|lua, values: LuaMultiValue| {
            finish(lua, &current(lua), values);
            Ok(())
        })?;
        let f: LuaFunction = lua.load(TRAMPOLINE_LUA).set_name("=fiber").call((
            errors::converter(lua)?,
            traceback,
            finish,
            fids.clone(),
            LuaValue::LightUserData(Lua::poll_pending()),
        ))?;
        lua.set_app_data(FiberLua {
            trampoline: lua.create_registry_value(f)?,
            pool: RefCell::new(Vec::new()),
            fids: lua.create_registry_value(fids)?,
        });
    }
    lua.app_data_ref::<FiberLua>()
        .ok_or_else(|| LuaError::runtime("fiber runtime is not installed"))
}

/// How a fiber should start.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Run the child now, until its first yield (`fiber.create`).
    Eager,
    /// Only schedule it (`fiber.new`, triggers, handlers).
    Deferred,
}

/// What happens when a fiber's function ends with an error.
pub type OnError = Box<dyn Fn(&Lua, &Fiber, LuaValue, Option<String>)>;

/// Creates a fiber running `func(args...)`. Its errors are logged like Tarantool's.
pub fn spawn(lua: &Lua, name: &str, func: LuaFunction, args: LuaMultiValue, start: Start) -> LuaResult<Rc<Fiber>> {
    spawn_with(lua, name, func, args, start, None)
}

/// [`spawn`] with a custom error handler (used by the main script, which exits on error).
pub fn spawn_with(
    lua: &Lua,
    name: &str,
    func: LuaFunction,
    args: LuaMultiValue,
    start: Start,
    on_error: Option<OnError>,
) -> LuaResult<Rc<Fiber>> {
    let sched = scheduler(lua);
    let id = sched.next_id.get();
    sched.next_id.set(id + 1);
    let fiber = Rc::new(Fiber::new(id, name.to_string()));
    *fiber.on_error.borrow_mut() = on_error;

    let key = {
        let fl = fiber_lua(lua)?;
        let pooled = fl.pool.borrow_mut().pop();
        match pooled {
            Some(key) => key,
            None => lua.create_registry_value(lua.create_thread(lua.registry_value(&fl.trampoline)?)?)?,
        }
    };
    let thread: LuaThread = lua.registry_value(&key)?;
    let mut call_args = LuaMultiValue::with_capacity(args.len() + 2);
    call_args.push_back(LuaValue::Integer(id as i64));
    call_args.push_back(LuaValue::Function(func));
    call_args.extend(args);
    // For a new coroutine these are the trampoline's arguments; for a pooled one they are
    // what its pending `coroutine.yield` returns. With recycle off, dropping the AsyncThread
    // leaves the coroutine as it is.
    drop(thread.into_async::<()>(call_args)?);
    sched.fibers.borrow_mut().insert(id, fiber.clone());

    let mut driver = Box::pin(drive(lua.clone(), fiber.clone(), key));
    if start == Start::Eager {
        let mut cx = Context::from_waker(Waker::noop());
        if driver.as_mut().poll(&mut cx).is_ready() {
            return Ok(fiber);
        }
    }
    tokio::task::spawn_local(driver);
    Ok(fiber)
}

/// What a resumed fiber is told about its Lua-level park (see `park` in lua/fiber.lua).
fn park_outcome(fiber: &Fiber) -> u8 {
    let status = if fiber.cancelled.get() {
        PARK_CANCELLED
    } else if fiber.woken.get() {
        PARK_WOKEN
    } else if fiber.deadline.get().is_some_and(|d| d <= Instant::now()) {
        PARK_TIMEOUT
    } else {
        PARK_WAITING
    };
    if status != PARK_WAITING {
        fiber.woken.set(false);
        fiber.deadline.set(None);
    }
    status
}

async fn drive(lua: Lua, fiber: Rc<Fiber>, key: LuaRegistryKey) {
    let sched = scheduler(&lua);
    let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let mut started = false;
    let outcome = std::future::poll_fn(|cx| loop {
        if !fiber.waker.borrow().will_wake(cx.waker()) {
            *fiber.waker.borrow_mut() = cx.waker().clone();
        }
        let prev = sched.enter(&fiber);
        let polled = match lua.registry_value::<LuaThread>(&key) {
            Ok(thread) => {
                // The first resume passes the arguments pushed at spawn; later ones pass the
                // park outcome, which the pending `coroutine.yield` returns.
                let running = if started {
                    let outcome = park_outcome(&fiber);
                    fiber.last_outcome.set(outcome);
                    thread.into_async::<()>(outcome)
                } else {
                    thread.into_async::<()>(())
                };
                started = true;
                match running {
                    Ok(mut running) => Pin::new(&mut running).poll(cx),
                    Err(e) => Poll::Ready(Err(e)),
                }
            }
            Err(e) => Poll::Ready(Err(e)),
        };
        sched.leave(&fiber, prev);
        if polled.is_ready() {
            return polled;
        }
        if fiber.is_dead() {
            // The trampoline finished the fiber and parked the coroutine for reuse.
            return Poll::Ready(Ok(()));
        }
        // A Lua-level park with a deadline: the timer wakes the task, and the fiber, when
        // resumed, is told that its deadline passed.
        match fiber.deadline.get() {
            None => timer = None,
            Some(deadline) => {
                let t = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if t.deadline() != deadline {
                    t.as_mut().reset(deadline);
                }
                if t.as_mut().poll(cx).is_ready() {
                    timer = None;
                    continue;
                }
            }
        }
        return Poll::Pending;
    })
    .await;
    match outcome {
        Ok(()) if fiber.is_dead() => {
            if let Ok(fl) = fiber_lua(&lua) {
                let mut pool = fl.pool.borrow_mut();
                if pool.len() < POOL_MAX {
                    pool.push(key);
                    return;
                }
            }
            let _ = lua.remove_registry_value(key);
        }
        Ok(()) => {
            // The trampoline itself returned: cannot happen, it loops forever.
            let _ = lua.remove_registry_value(key);
        }
        Err(e) => {
            // The trampoline catches Lua errors, so this is an error of mlua itself.
            let _ = lua.remove_registry_value(key);
            let mut values = LuaMultiValue::new();
            values.push_back(LuaValue::Boolean(false));
            values.push_back(LuaValue::String(lua.create_string(errors::message(&e)).unwrap_or_else(
                |_| {
                    lua.create_string("fiber failed")
                        .unwrap_or_else(|_| unreachable!("small strings can be created"))
                },
            )));
            if !fiber.is_dead() {
                finish(&lua, &fiber, values);
            }
        }
    }
}

/// Ends a fiber: `values` are `true, results...` or `false, error, traceback`.
fn finish(lua: &Lua, fiber: &Rc<Fiber>, mut values: LuaMultiValue) {
    let sched = scheduler(lua);
    fiber.state.set(FiberState::Dead);
    let ok = matches!(values.front(), Some(LuaValue::Boolean(true)));
    if !ok {
        let err = values.get(1).cloned().unwrap_or(LuaValue::Nil);
        let traceback = match values.get(2) {
            Some(LuaValue::String(s)) => Some(s.to_string_lossy()),
            _ => None,
        };
        match &*fiber.on_error.borrow() {
            Some(handler) => handler(lua, fiber, err.clone(), traceback),
            None => {
                if !errors::is_fiber_cancelled(lua, &err) {
                    log_fiber_error(lua, fiber, &err, traceback.as_deref());
                }
            }
        }
        values.truncate(2);
    }
    if fiber.joinable.get() {
        if let Ok(packed) = pack(lua, values) {
            if let Ok(key) = lua.create_registry_value(packed) {
                *fiber.result.borrow_mut() = Some(key);
            }
        }
    } else {
        sched.fibers.borrow_mut().remove(&fiber.id);
    }
    if let Some(key) = fiber.storage.borrow_mut().take() {
        let _ = lua.remove_registry_value(key);
    }
    fiber.join_notify.notify_waiters();
}

fn pack(lua: &Lua, values: LuaMultiValue) -> LuaResult<LuaTable> {
    let n = values.len();
    let t = lua.create_table_with_capacity(n, 1)?;
    for (i, v) in values.into_iter().enumerate() {
        t.raw_set(i + 1, v)?;
    }
    t.raw_set("n", n)?;
    Ok(t)
}

/// Tarantool's line for an error that ends a fiber; internal frames are left out of the
/// traceback, which ends at the fiber's own function.
fn log_fiber_error(lua: &Lua, fiber: &Fiber, err: &LuaValue, traceback: Option<&str>) {
    let mut text = format!("LuajitError: {}", errors::describe(lua, err));
    if let Some(tb) = traceback.map(clean_traceback) {
        if !tb.is_empty() {
            text.push('\n');
            text.push_str(&tb);
        }
    }
    crate::modules::log::write_as(lua, crate::modules::log::Level::Error, fiber, &text);
}

/// Drops the frames of node's own glue (the fiber trampoline, the main chunk runner) from a
/// Lua traceback.
pub fn clean_traceback(tb: &str) -> String {
    tb.trim_start_matches('\n')
        .lines()
        .take_while(|l| {
            !l.contains("in function 'raw_xpcall'") && !l.trim_start().starts_with("[C]: in function 'xpcall'")
        })
        .filter(|l| !l.trim_start().starts_with("fiber:") && !l.trim_start().starts_with("main:"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ===== Lua API =====

/// The fiber object a script holds (`fiber.self()`, what `fiber.create` returns).
#[derive(Clone)]
struct FiberObject(Rc<Fiber>);

fn live(f: &FiberObject) -> LuaResult<&Rc<Fiber>> {
    if f.0.is_dead() {
        return Err(LuaError::runtime("the fiber is dead"));
    }
    Ok(&f.0)
}

fn status_name(lua: &Lua, f: &Fiber) -> &'static str {
    match f.state.get() {
        FiberState::Dead => "dead",
        _ if current(lua).id == f.id => "running",
        _ => "suspended",
    }
}

fn set_name(f: &Fiber, name: LuaValue) -> LuaResult<()> {
    let name = match name {
        LuaValue::String(s) => s.to_string_lossy(),
        LuaValue::Integer(i) => i.to_string(),
        LuaValue::Number(n) => n.to_string(),
        other => {
            return Err(LuaError::runtime(format!(
                "bad argument #2 to 'name' (string expected, got {})",
                other.type_name()
            )))
        }
    };
    if name.len() > FIBER_NAME_MAX {
        return Err(LuaError::runtime("Fiber name is too long"));
    }
    *f.name.borrow_mut() = name;
    Ok(())
}

fn storage(lua: &Lua, f: &Fiber) -> LuaResult<LuaTable> {
    if let Some(key) = &*f.storage.borrow() {
        return lua.registry_value(key);
    }
    let t = lua.create_table()?;
    *f.storage.borrow_mut() = Some(lua.create_registry_value(t.clone())?);
    Ok(t)
}

async fn join(lua: Lua, f: Rc<Fiber>) -> LuaResult<LuaMultiValue> {
    if !f.joinable.get() {
        return Err(LuaError::runtime("the fiber is not joinable"));
    }
    if f.is_dead() && f.result.borrow().is_none() {
        return Err(LuaError::runtime("the fiber is dead"));
    }
    while f.result.borrow().is_none() {
        if f.is_dead() && f.result.borrow().is_none() {
            return Err(LuaError::runtime("the fiber is dead"));
        }
        let notified = f.join_notify.notified();
        if f.result.borrow().is_some() {
            break;
        }
        cancellable(&lua, notified).await?;
    }
    let key = f.result.borrow_mut().take();
    // Joined fibers are gone: a second join says the fiber is dead, as in Tarantool.
    scheduler(&lua).fibers.borrow_mut().remove(&f.id);
    let Some(key) = key else {
        return Err(LuaError::runtime("the fiber is dead"));
    };
    let packed: LuaTable = lua.registry_value(&key)?;
    let _ = lua.remove_registry_value(key);
    let n: usize = packed.raw_get("n")?;
    let mut out = LuaMultiValue::new();
    for i in 1..=n {
        out.push_back(packed.raw_get(i)?);
    }
    Ok(out)
}

impl LuaUserData for FiberObject {
    fn add_methods<M: LuaUserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("id", |_, this, ()| Ok(this.0.id));
        methods.add_method("name", |lua, this, name: Option<LuaValue>| {
            let f = live(this)?;
            match name {
                Some(name) => {
                    set_name(f, name)?;
                    Ok(LuaMultiValue::new())
                }
                None => Ok(LuaMultiValue::from_iter([LuaValue::String(
                    lua.create_string(f.name())?,
                )])),
            }
        });
        methods.add_method("status", |lua, this, ()| Ok(status_name(lua, &this.0)));
        methods.add_method("cancel", |_, this, ()| {
            live(this)?.cancel();
            Ok(())
        });
        methods.add_method("wakeup", |_, this, ()| {
            live(this)?.wakeup();
            Ok(())
        });
        methods.add_method("set_joinable", |_, this, yes: bool| {
            live(this)?.joinable.set(yes);
            Ok(())
        });
        methods.add_async_method("join", |lua, this, ()| {
            let f = this.0.clone();
            drop(this);
            join(lua, f)
        });
        methods.add_meta_method(LuaMetaMethod::ToString, |_, this, ()| {
            Ok(format!("fiber: {}", this.0.id))
        });
        methods.add_meta_method(LuaMetaMethod::Eq, |_, this, other: LuaAnyUserData| {
            Ok(other
                .borrow::<FiberObject>()
                .map(|o| o.0.id == this.0.id)
                .unwrap_or(false))
        });
        methods.add_meta_method(LuaMetaMethod::Index, |lua, this, key: LuaString| {
            match &*key.as_bytes() {
                b"storage" => Ok(LuaValue::Table(storage(lua, live(this)?)?)),
                _ => Ok(LuaValue::Nil),
            }
        });
    }
}

fn fiber_object(lua: &Lua, f: Rc<Fiber>) -> LuaResult<LuaAnyUserData> {
    lua.create_userdata(FiberObject(f))
}

/// Reads a fiber argument given as an object or as an id.
fn fiber_arg(lua: &Lua, v: &LuaValue, fname: &str) -> LuaResult<Option<Rc<Fiber>>> {
    match v {
        LuaValue::UserData(ud) => match ud.borrow::<FiberObject>() {
            Ok(f) => Ok(Some(f.0.clone())),
            Err(_) => Err(LuaError::runtime(format!(
                "bad argument #1 to '{fname}' (fiber expected, got userdata)"
            ))),
        },
        LuaValue::Integer(id) => Ok(scheduler(lua).find(*id as u64)),
        LuaValue::Number(id) => Ok(scheduler(lua).find(*id as u64)),
        other => Err(LuaError::runtime(format!(
            "bad argument #1 to '?' (fiber expected, got {})",
            other.type_name()
        ))),
    }
}

/// Converts a Lua timeout in seconds to a Duration; negative and NaN mean zero.
pub fn duration_from_secs(secs: f64) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        Duration::ZERO
    } else if secs > 1e9 {
        Duration::from_secs(1_000_000_000)
    } else {
        Duration::from_secs_f64(secs)
    }
}

/// Sleeps the running fiber; zero seconds is a plain yield.
pub async fn sleep(lua: &Lua, secs: f64) -> LuaResult<()> {
    let d = duration_from_secs(secs);
    if d.is_zero() {
        cancellable(lua, yield_now()).await
    } else {
        cancellable(lua, tokio::time::sleep(d)).await
    }
}

fn wall_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn monotonic_micros() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // Safety: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

fn create_args(fname: &str, args: LuaMultiValue) -> LuaResult<(LuaFunction, LuaMultiValue)> {
    let mut args = args;
    match args.pop_front() {
        Some(LuaValue::Function(f)) => Ok((f, args)),
        Some(LuaValue::Table(t))
            if t.metatable()
                .map(|m| m.contains_key("__call").unwrap_or(false))
                .unwrap_or(false) =>
        {
            let call: LuaFunction = t
                .metatable()
                .and_then(|m| m.get("__call").ok())
                .ok_or_else(|| LuaError::runtime(format!("{fname}(function, ...): bad arguments")))?;
            let mut with_self = LuaMultiValue::new();
            with_self.push_back(LuaValue::Table(t));
            with_self.extend(args);
            Ok((call, with_self))
        }
        _ => Err(LuaError::runtime(format!("{fname}(function, ...): bad arguments"))),
    }
}

/// Builds the `fiber` module table.
pub fn module(lua: &Lua) -> LuaResult<LuaTable> {
    let m = lua.create_table()?;
    m.set(
        "create",
        lua.create_function(|lua, args: LuaMultiValue| {
            let (f, rest) = create_args("fiber.create", args)?;
            let fiber = spawn(lua, "lua", f, rest, Start::Eager)?;
            fiber_object(lua, fiber)
        })?,
    )?;
    m.set(
        "new",
        lua.create_function(|lua, args: LuaMultiValue| {
            let (f, rest) = create_args("fiber.new", args)?;
            let fiber = spawn(lua, "lua", f, rest, Start::Deferred)?;
            fiber_object(lua, fiber)
        })?,
    )?;
    m.set("self", lua.create_function(|lua, ()| fiber_object(lua, current(lua)))?)?;
    m.set("id", lua.create_function(|lua, ()| Ok(current(lua).id))?)?;
    m.set(
        "find",
        lua.create_function(|lua, id: LuaValue| {
            let id = match id {
                LuaValue::Integer(i) => i as u64,
                LuaValue::Number(n) => n as u64,
                _ => return Ok(None),
            };
            match scheduler(lua).find(id) {
                Some(f) if !f.is_dead() => Ok(Some(fiber_object(lua, f)?)),
                _ => Ok(None),
            }
        })?,
    )?;
    m.set(
        "status",
        lua.create_function(|lua, f: Option<LuaValue>| match f {
            None => Ok(status_name(lua, &current(lua))),
            Some(v) => match fiber_arg(lua, &v, "status")? {
                Some(f) => Ok(status_name(lua, &f)),
                None => Err(LuaError::runtime("the fiber is dead")),
            },
        })?,
    )?;
    m.set(
        "name",
        lua.create_function(|lua, args: LuaMultiValue| {
            let f = current(lua);
            match args.front() {
                None | Some(LuaValue::Nil) => Ok(LuaMultiValue::from_iter([LuaValue::String(
                    lua.create_string(f.name())?,
                )])),
                Some(v) => {
                    set_name(&f, v.clone())?;
                    Ok(LuaMultiValue::new())
                }
            }
        })?,
    )?;
    m.set(
        "kill",
        lua.create_function(|lua, v: LuaValue| match fiber_arg(lua, &v, "kill")? {
            Some(f) if !f.is_dead() => {
                f.cancel();
                Ok(())
            }
            _ => Err(LuaError::runtime("the fiber is dead")),
        })?,
    )?;
    m.set("testcancel", lua.create_function(|lua, ()| testcancel(lua))?)?;
    m.set(
        "info",
        lua.create_function(|lua, ()| {
            let sched = scheduler(lua);
            let out = lua.create_table()?;
            let mut fibers: Vec<Rc<Fiber>> = sched.fibers.borrow().values().cloned().collect();
            fibers.retain(|f| !f.is_dead());
            fibers.sort_by_key(|f| f.id);
            for f in fibers {
                let t = lua.create_table()?;
                t.set("fid", f.id)?;
                t.set("name", f.name())?;
                t.set("csw", f.csw.get())?;
                let mem = lua.create_table()?;
                mem.set("total", 0)?;
                mem.set("used", 0)?;
                t.set("memory", mem)?;
                t.set("backtrace", lua.create_table()?)?;
                out.set(f.id, t)?;
            }
            Ok(out)
        })?,
    )?;
    m.set("time", lua.create_function(|_, ()| Ok(wall_micros() as f64 / 1e6))?)?;
    m.set(
        "time64",
        lua.create_function(|lua, ()| super::cdata::push_u64(lua, wall_micros()))?,
    )?;
    m.set(
        "clock",
        lua.create_function(|_, ()| Ok(monotonic_micros() as f64 / 1e6))?,
    )?;
    m.set(
        "clock64",
        lua.create_function(|lua, ()| super::cdata::push_u64(lua, monotonic_micros()))?,
    )?;
    let _ = scheduler(lua).started;
    let fiber_lua: LuaFunction = lua.load(FIBER_LUA).set_name("@builtin/fiber.lua").into_function()?;
    fiber_lua.call::<()>((
        m.clone(),
        primitives(lua)?,
        LuaValue::LightUserData(Lua::poll_pending()),
        yield_marker(lua)?,
    ))?;
    Ok(m)
}

const FIBER_LUA: &str = include_str!("../../lua/fiber.lua");

/// The value a fiber yields to go to the back of the ready queue (`fiber.yield`): the
/// driver reschedules the task at once, unlike mlua's "poll pending" marker, which parks
/// it until its waker is called. The prelude passes both markers through plain coroutines.
pub fn yield_marker(lua: &Lua) -> LuaResult<LuaTable> {
    if let Ok(t) = lua.named_registry_value::<LuaTable>("node.yield_marker") {
        return Ok(t);
    }
    let t = lua.create_table()?;
    lua.set_named_registry_value("node.yield_marker", t.clone())?;
    Ok(t)
}

/// Outcomes of a Lua-level park, as `park_status` reports them.
const PARK_WOKEN: u8 = 0;
const PARK_TIMEOUT: u8 = 1;
const PARK_CANCELLED: u8 = 2;
const PARK_WAITING: u8 = 3;

/// Seconds on the monotonic clock that park deadlines use.
fn monotonic_secs() -> f64 {
    SCHEDULER.with(|s| s.started.elapsed().as_secs_f64())
}

/// The Rust half of Lua-level parking, used by lua/fiber.lua for sleep, yield, channels and
/// conds. A fiber parks by yielding mlua's "poll pending" marker after `park_prepare`; it is
/// resumed when `wakeup` or `cancel` calls its task's waker, or when its deadline passes.
fn primitives(lua: &Lua) -> LuaResult<LuaTable> {
    let p = lua.create_table()?;
    p.set(
        "self_id",
        lua.create_function(|_, ()| Ok(SCHEDULER.with(|s| s.current.borrow().id)))?,
    )?;
    p.set("now", lua.create_function(|_, ()| Ok(monotonic_secs()))?)?;
    p.set(
        "park_prepare",
        lua.create_function(|_, deadline: Option<f64>| {
            Ok(SCHEDULER.with(|s| {
                let f = s.current.borrow();
                f.woken.set(false);
                let at = deadline.map(|d| s.started + duration_from_secs(d));
                f.deadline.set(at);
                f.id
            }))
        })?,
    )?;
    p.set("fids", lua.registry_value::<LuaTable>(&fiber_lua(lua)?.fids)?)?;
    p.set(
        "park_status",
        // A park nested in a coroutine that mlua resumes (e.g. the console's evaluation) does
        // not receive the outcome the driver computed on this resume: it asks for it here.
        lua.create_function(|_, ()| Ok(SCHEDULER.with(|s| s.current.borrow().last_outcome.get())))?,
    )?;
    p.set(
        "wakeup",
        lua.create_function(|_, id: u64| {
            if let Some(f) = SCHEDULER.with(|s| s.find(id)) {
                f.wakeup();
            }
            Ok(())
        })?,
    )?;
    p.set(
        "is_cancelled",
        lua.create_function(|_, ()| Ok(SCHEDULER.with(|s| s.current.borrow().cancelled.get())))?,
    )?;
    p.set(
        "raise_cancelled",
        lua.create_function(|_, ()| -> LuaResult<()> { Err(errors::fiber_is_cancelled()) })?,
    )?;
    Ok(p)
}

/// True once the fiber's function has returned or raised.
pub fn is_dead(f: &Fiber) -> bool {
    f.is_dead()
}

/// Waits for the fiber to finish (used by the runtime for the main fiber).
pub async fn wait_finished(f: &Rc<Fiber>) {
    let notified = f.join_notify.notified();
    if f.is_dead() {
        return;
    }
    notified.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_clamp_bad_values_to_zero() {
        assert_eq!(duration_from_secs(-1.0), Duration::ZERO);
        assert_eq!(duration_from_secs(f64::NAN), Duration::ZERO);
        assert_eq!(duration_from_secs(0.5), Duration::from_millis(500));
        assert_eq!(duration_from_secs(1e300), Duration::from_secs(1_000_000_000));
    }
}
