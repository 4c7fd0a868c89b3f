//! Fibers: Tarantool's green threads, built as Lua coroutines run by one scheduler.
//!
//! A fiber is a Lua coroutine kept alive by a registry key. Rust holds its raw `lua_State`
//! pointer, not an mlua handle: every handle held in Rust takes a slot of LuaJIT's
//! 8,000-slot C stack, and 100,000 fibers must be able to live at once.
//!
//! One tokio task runs all fibers. It drives a Lua coroutine (the scheduler coroutine)
//! whose Rust callback pops the ready queue and resumes each fiber with a raw
//! `lua_resume`. Going through tokio and mlua's `AsyncThread` for every switch cost about
//! three times a bare coroutine switch; this way a switch between two fibers never leaves
//! the scheduler's callback.
//!
//! A fiber suspends by yielding a marker: mlua's "poll pending" to park (Lua-level waits in
//! lua/fiber.lua and mlua async functions both use it), or the yield marker to go to the
//! back of the ready queue. Lua-level parks are woken by [`Fiber::wakeup`], which pushes the
//! fiber onto the ready queue; the resume value tells the fiber why it was woken.
//!
//! mlua async functions (sockets, join, the console) poll their futures with the waker
//! that the scheduler coroutine's `AsyncThread` was polled with: the "current fiber" waker.
//! Cloning it yields a per-fiber `Arc` waker, so a socket becoming readable wakes exactly
//! the fiber that waits for it, from any thread.
//!
//! `fiber.create` is eager like Tarantool's: the child runs until its first yield before
//! `create` returns, resumed right there, inside the creator's call.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::ffi::{c_int, c_void};
use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Wake, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use mlua::ffi;
use mlua::prelude::*;
use tokio::sync::Notify;

use super::deadlines::Deadlines;

use super::errors;

/// Tarantool reserves fiber ids up to 100 for its own fibers; user fibers start above.
const FIRST_FIBER_ID: u64 = 101;

/// The id of the scheduler pseudo-fiber that code outside any fiber sees.
const SCHED_ID: u64 = 1;

/// Tarantool's limit on a fiber name (FIBER_NAME_MAX is 255 bytes plus the terminator).
const FIBER_NAME_MAX: usize = 255;

/// The name of fibers made by `fiber.create` and `fiber.new`.
const DEFAULT_NAME: &str = "lua";

/// The text Tarantool gives to a FiberIsCancelled error.
pub const CANCELLED: &str = "fiber is cancelled";

/// Fibers resumed per poll of the scheduler task: past it the task yields to tokio, so
/// sockets and timers are polled even while fibers keep each other busy.
const BUDGET: usize = 512;

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
    /// Most fibers keep the default name, so it is not copied for each.
    name: RefCell<Cow<'static, str>>,
    state: Cell<FiberState>,
    cancelled: Cell<bool>,
    cancel_notify: Notify,
    joinable: Cell<bool>,
    join_notify: Notify,
    /// Someone waits on `join_notify`: waking nobody still costs a lock per fiber.
    join_watched: Cell<bool>,
    result: RefCell<Option<JoinResult>>,
    /// `fiber.self().storage`, created on first use.
    storage: RefCell<Option<LuaRegistryKey>>,
    /// Context switches, reported by `fiber.info()`.
    csw: Cell<u64>,
    /// The fiber's coroutine, which Lua keeps alive (see `TRAMPOLINE_LUA`); null once
    /// the fiber is dead.
    co: Cell<*mut ffi::lua_State>,
    /// False until the first resume, which passes the arguments pushed at spawn.
    started: Cell<bool>,
    /// The fiber last yielded from its own coroutine in lua/fiber.lua, which takes the
    /// park outcome as the resume value. Elsewhere (an mlua future, a plain coroutine, a
    /// Lua call Rust drives) the outcome must stay for `park_status` to read.
    takes_outcome: Cell<bool>,
    /// On the ready queue: a second wakeup must not queue it twice.
    queued: Cell<bool>,
    /// The waker given to futures polled in this fiber, made on first use.
    waker: RefCell<Option<Waker>>,
    /// Set by `wakeup`; read and cleared when the fiber is resumed.
    woken: Cell<bool>,
    /// When a Lua-level park times out; the scheduler's timer heap holds it too.
    deadline: Cell<Option<Instant>>,
    /// Replaces the error log line (the main script exits instead).
    on_error: RefCell<Option<OnError>>,
}

impl Fiber {
    fn new(id: u64, name: &str) -> Fiber {
        let name = match name {
            DEFAULT_NAME => Cow::Borrowed(DEFAULT_NAME),
            _ => Cow::Owned(name.to_string()),
        };
        Fiber {
            id,
            name: RefCell::new(name),
            state: Cell::new(FiberState::Suspended),
            cancelled: Cell::new(false),
            cancel_notify: Notify::new(),
            joinable: Cell::new(false),
            join_notify: Notify::new(),
            join_watched: Cell::new(false),
            result: RefCell::new(None),
            storage: RefCell::new(None),
            csw: Cell::new(0),
            co: Cell::new(std::ptr::null_mut()),
            started: Cell::new(false),
            takes_outcome: Cell::new(false),
            queued: Cell::new(false),
            waker: RefCell::new(None),
            woken: Cell::new(false),
            deadline: Cell::new(None),
            on_error: RefCell::new(None),
        }
    }

    pub fn name(&self) -> String {
        self.name.borrow().to_string()
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.get()
    }

    fn is_dead(&self) -> bool {
        self.state.get() == FiberState::Dead
    }

    /// Marks the fiber cancelled and wakes it if it waits at a yield point.
    pub fn cancel(self: &Rc<Self>) {
        self.cancelled.set(true);
        self.cancel_notify.notify_one();
        SCHEDULER.with(|s| s.schedule(self));
    }

    /// Wakes the fiber from a Lua-level park (`fiber_object:wakeup()`, channels, conds).
    pub fn wakeup(self: &Rc<Self>) {
        self.woken.set(true);
        SCHEDULER.with(|s| s.schedule(self));
    }

    /// The waker for futures that this fiber awaits.
    fn waker(&self) -> Waker {
        self.waker
            .borrow_mut()
            .get_or_insert_with(|| {
                let remote = SCHEDULER.with(|s| s.remote.clone());
                Waker::from(Arc::new(FiberWaker { id: self.id, remote }))
            })
            .clone()
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

/// Wakeups that arrive through `Waker`s, which may be called from any thread.
struct Remote {
    ids: Mutex<Vec<u64>>,
    /// Lets the scheduler check for wakeups without taking the lock.
    pending: AtomicBool,
    /// The scheduler task's waker.
    task: Mutex<Option<Waker>>,
}

impl Remote {
    fn push(&self, id: u64) {
        self.ids.lock().unwrap_or_else(|e| e.into_inner()).push(id);
        self.pending.store(true, AtomicOrdering::Release);
        self.wake_task();
    }

    fn wake_task(&self) {
        if let Some(w) = &*self.task.lock().unwrap_or_else(|e| e.into_inner()) {
            w.wake_by_ref();
        }
    }
}

/// The waker of one fiber: it queues the fiber's id for the scheduler.
struct FiberWaker {
    id: u64,
    remote: Arc<Remote>,
}

impl Wake for FiberWaker {
    fn wake(self: Arc<Self>) {
        self.remote.push(self.id);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.remote.push(self.id);
    }
}

/// The waker mlua hands to every future polled inside a fiber. Waking it wakes the running
/// fiber; cloning it (which is what a future does to be woken later) gives the running
/// fiber's own waker, so each future remembers the fiber that awaits it.
static CURRENT_FIBER_WAKER_VTABLE: RawWakerVTable =
    RawWakerVTable::new(current_clone, current_wake, current_wake, current_drop);

// Safety of the waker functions: the data pointer is unused (null); they only touch this
// thread's scheduler, and the waker is only reachable while mlua polls a future on it.
unsafe fn current_clone(_: *const ()) -> RawWaker {
    let waker = SCHEDULER
        .try_with(|s| s.current().waker())
        .unwrap_or_else(|_| Waker::noop().clone());
    let waker = ManuallyDrop::new(waker);
    RawWaker::new(waker.data(), waker.vtable())
}

unsafe fn current_wake(_: *const ()) {
    let _ = SCHEDULER.try_with(|s| {
        let f = s.current();
        s.schedule(&f);
    });
}

unsafe fn current_drop(_: *const ()) {}

fn current_fiber_waker() -> &'static Waker {
    static WAKER: Waker = unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &CURRENT_FIBER_WAKER_VTABLE)) };
    &WAKER
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
    ready: RefCell<VecDeque<Rc<Fiber>>>,
    /// Lua-level parks' deadlines.
    timers: RefCell<Deadlines<Instant, Rc<Fiber>>>,
    remote: Arc<Remote>,
    /// The scheduler callback is running fibers: a wakeup needs no task wake.
    running: Cell<bool>,
    task_spawned: Cell<bool>,
    /// The fibers that ran when `spawn_begin` entered a new fiber, innermost last.
    spawning: RefCell<Vec<Rc<Fiber>>>,
    /// The fiber `spawn_end` reported alive, until `spawn_attach` gives it its coroutine.
    last_spawned: RefCell<Option<Rc<Fiber>>>,
}

impl Scheduler {
    fn new() -> Scheduler {
        let sched = Rc::new(Fiber::new(SCHED_ID, "sched"));
        sched.state.set(FiberState::Running);
        Scheduler {
            fibers: RefCell::new(HashMap::default()),
            current: RefCell::new(sched),
            next_id: Cell::new(FIRST_FIBER_ID),
            pins: Cell::new(0),
            started: Instant::now(),
            ready: RefCell::new(VecDeque::new()),
            timers: RefCell::new(Deadlines::new()),
            remote: Arc::new(Remote {
                ids: Mutex::new(Vec::new()),
                pending: AtomicBool::new(false),
                task: Mutex::new(None),
            }),
            running: Cell::new(false),
            task_spawned: Cell::new(false),
            spawning: RefCell::new(Vec::new()),
            last_spawned: RefCell::new(None),
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

    /// Puts a fiber on the ready queue (once, however often it is woken).
    fn schedule(&self, f: &Rc<Fiber>) {
        if f.id == SCHED_ID {
            self.remote.wake_task();
            return;
        }
        if f.queued.get() || f.is_dead() {
            return;
        }
        f.queued.set(true);
        let mut ready = self.ready.borrow_mut();
        let was_empty = ready.is_empty();
        ready.push_back(f.clone());
        drop(ready);
        // Fibers queued while the scheduler is not running mean its task is woken already
        // (by the push that found the queue empty, or by itself when out of budget): a
        // burst of wakeups (a WAL group's commits) wakes it once.
        if was_empty && !self.running.get() {
            self.remote.wake_task();
        }
    }

    fn add_timer(&self, fiber: &Rc<Fiber>, at: Instant) {
        let top = self.timers.borrow().next();
        self.timers.borrow_mut().push(at, fiber.clone());
        if !self.running.get() && top.is_none_or(|t| at < t) {
            self.remote.wake_task();
        }
    }

    /// Moves fibers whose park deadline passed to the ready queue.
    fn expire_timers(&self) {
        if self.timers.borrow().is_empty() {
            return;
        }
        let now = Instant::now();
        loop {
            let Some((at, fiber)) = self.timers.borrow_mut().pop_due(now) else {
                break;
            };
            // Entries of parks that ended another way stay in the heap until due.
            if fiber.deadline.get() == Some(at) {
                self.schedule(&fiber);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.timers.borrow().next()
    }

    /// Takes the wakeups that came through wakers.
    fn drain_remote(&self) {
        // A load first: the swap would dirty the cache line on every switch.
        if !self.remote.pending.load(AtomicOrdering::Relaxed)
            || !self.remote.pending.swap(false, AtomicOrdering::Acquire)
        {
            return;
        }
        let ids = std::mem::take(&mut *self.remote.ids.lock().unwrap_or_else(|e| e.into_inner()));
        for id in ids {
            if let Some(f) = self.find(id) {
                self.schedule(&f);
            }
        }
    }

    fn enter(&self, fiber: &Rc<Fiber>) -> Rc<Fiber> {
        fiber.state.set(FiberState::Running);
        fiber.csw.set(fiber.csw.get() + 1);
        let prev = std::mem::replace(&mut *self.current.borrow_mut(), fiber.clone());
        if prev.state.get() == FiberState::Running && prev.id != SCHED_ID {
            prev.state.set(FiberState::Suspended);
        }
        prev
    }

    fn leave(&self, fiber: &Rc<Fiber>, prev: Rc<Fiber>) {
        if YIELD_WATCH.with(|w| w.get()) == fiber.id {
            YIELD_WATCH.with(|w| w.set(0));
            if let Some(hook) = YIELD_HOOK.with(|h| h.get()) {
                hook(fiber.id);
            }
        }
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
    /// The fiber whose next yield must be reported (box: a yield aborts its transaction).
    static YIELD_WATCH: Cell<u64> = const { Cell::new(0) };
    static YIELD_HOOK: Cell<Option<fn(u64)>> = const { Cell::new(None) };
    static ROUND_HOOK: Cell<Option<fn()>> = const { Cell::new(None) };
}

/// Calls `hook` after every round of the scheduler (box: hand the round's commits to the
/// WAL thread at once).
pub fn on_round_end(hook: fn()) {
    ROUND_HOOK.with(|h| h.set(Some(hook)));
}

/// Registry key of the Lua-level park without deadline (lua/fiber.lua), for Rust modules
/// whose fibers wait for a wakeup (box commits).
pub const PARK_UNTIL_WOKEN: &str = "node.fiber_park_until_woken";

/// Wakes fiber `id` from a Lua-level park, if it still exists.
pub fn wakeup_by_id(id: u64) {
    let fiber = SCHEDULER.with(|s| s.fibers.borrow().get(&id).cloned());
    if let Some(f) = fiber {
        f.wakeup();
    }
}

/// Calls `hook(fiber id)` when fiber `fid` next gives up control (yields or ends); one
/// fiber is watched at a time, the last one asked for.
pub fn watch_next_yield(fid: u64, hook: fn(u64)) {
    YIELD_WATCH.with(|w| w.set(fid));
    YIELD_HOOK.with(|h| h.set(Some(hook)));
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

/// The id of the fiber that is running now (cheap: no reference is taken).
pub fn current_id() -> u64 {
    SCHEDULER.with(|s| s.current.borrow().id)
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
/// coroutines saves a `lua_newthread` and garbage per fiber.
///
/// Lua owns the coroutines: `fids` (coroutine -> fiber id) holds a fiber's coroutine while
/// it lives and `pool` holds it afterwards, so Rust keeps only the raw `lua_State` pointer
/// and no registry slot per fiber.
const TRAMPOLINE_LUA: &str = r#"
local convert, traceback, finish_ok, finish, fids, PENDING, POOL_MAX = ...
local select = select
local raw_xpcall, type, co_running, co_yield, co_create =
    xpcall, type, coroutine.running, coroutine.yield, coroutine.create
local pool, pooled = {}, 0
local last_traceback
local function handler(e)
    if type(e) == 'userdata' then e = convert(e) end
    last_traceback = traceback('', 2)
    return e
end
local function done(co, ok, ...)
    if ok then
        if select('#', ...) == 0 then finish_ok() else finish(true, ...) end
    else
        local tb = last_traceback
        last_traceback = nil
        finish(false, (...), tb)
    end
    fids[co] = nil
    if pooled < POOL_MAX then
        pooled = pooled + 1
        pool[pooled] = co
    end
end
local body
body = function(fid, fn, ...)
    done(co_running(), raw_xpcall(fn, handler, ...))
    return body(co_yield(PENDING))
end
-- A coroutine for a new fiber: pooled (suspended in `co_yield` above) or new.
local function take()
    if pooled == 0 then return co_create(body) end
    local co = pool[pooled]
    pool[pooled] = nil
    pooled = pooled - 1
    return co
end
local function acquire(fid)
    local co = take()
    fids[co] = fid
    return co
end
return take, acquire
"#;

/// The scheduler coroutine's body: `run` resumes ready fibers; between batches the
/// coroutine parks, and its driver arms the timer and waits for wakeups.
const SCHEDULER_LUA: &str = r#"
local run, yield, PENDING = ...
return function()
    while true do
        run()
        yield(PENDING)
    end
end
"#;

/// Coroutines kept for reuse; past this many, finished coroutines are left to the GC.
const POOL_MAX: usize = 4096;

struct FiberLua {
    /// Lua: `() -> coroutine`, a coroutine for a new fiber.
    take: LuaRegistryKey,
    /// Lua: `(fid) -> coroutine`, `take` that also registers the fiber id.
    acquire: LuaRegistryKey,
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
        // Most fibers end with no results: skip packing an empty result list.
        let finish_ok = lua.create_function(|lua, ()| {
            let mut values = LuaMultiValue::new();
            values.push_back(LuaValue::Boolean(true));
            self::finish(lua, &current(lua), values);
            Ok(())
        })?;
        let (take, acquire): (LuaFunction, LuaFunction) = lua.load(TRAMPOLINE_LUA).set_name("=fiber").call((
            errors::converter(lua)?,
            traceback,
            finish_ok,
            finish,
            fids.clone(),
            LuaValue::LightUserData(Lua::poll_pending()),
            POOL_MAX,
        ))?;
        lua.set_app_data(FiberLua {
            take: lua.create_registry_value(take)?,
            acquire: lua.create_registry_value(acquire)?,
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
    let fiber = create(lua, &sched, name, func, args, on_error)?;
    match start {
        Start::Eager => {
            resume(lua, &sched, &fiber, true);
        }
        Start::Deferred => sched.schedule(&fiber),
    }
    Ok(fiber)
}

/// A new fiber for `func(args...)`, registered but not yet run.
fn create(
    lua: &Lua,
    sched: &Rc<Scheduler>,
    name: &str,
    func: LuaFunction,
    args: LuaMultiValue,
    on_error: Option<OnError>,
) -> LuaResult<Rc<Fiber>> {
    ensure_task(lua, sched)?;
    let id = sched.next_id.get();
    sched.next_id.set(id + 1);
    let fiber = Rc::new(Fiber::new(id, name));
    *fiber.on_error.borrow_mut() = on_error;

    let acquire: LuaFunction = lua.registry_value(&fiber_lua(lua)?.acquire)?;
    let thread: LuaThread = acquire.call(id)?;
    fiber.co.set(thread.state());
    let mut call_args = LuaMultiValue::with_capacity(args.len() + 2);
    call_args.push_back(LuaValue::Integer(id as i64));
    call_args.push_back(LuaValue::Function(func));
    call_args.extend(args);
    // For a new coroutine these are the trampoline's arguments; for a pooled one they are
    // what its pending `coroutine.yield` returns. With recycle off, dropping the AsyncThread
    // leaves them on the coroutine's stack for the first resume.
    drop(thread.into_async::<()>(call_args)?);
    sched.fibers.borrow_mut().insert(id, fiber.clone());
    Ok(fiber)
}

/// The Rust half of `fiber.create`'s fast path in lua/fiber.lua, which resumes the child
/// itself with `coroutine.resume`: this registers the fiber for the coroutine `co` and
/// makes it the running one; [`spawn_end`] undoes that after the child's first yield.
fn spawn_begin(lua: &Lua) -> LuaResult<u64> {
    let sched = scheduler(lua);
    ensure_task(lua, &sched)?;
    let id = sched.next_id.get();
    sched.next_id.set(id + 1);
    let fiber = Rc::new(Fiber::new(id, DEFAULT_NAME));
    fiber.started.set(true);
    sched.fibers.borrow_mut().insert(id, fiber.clone());
    let prev = sched.enter(&fiber);
    sched.spawning.borrow_mut().push(prev);
    Ok(id)
}

/// See [`spawn_begin`]: `ok, marker` is what `coroutine.resume` of the child returned.
/// Returns true if the child is still alive: lua/fiber.lua then hands over its coroutine
/// with [`spawn_attach`] (a child that finished at once never needs it, which saves
/// passing a coroutine to Rust for every short fiber).
fn spawn_end(lua: &Lua, ok: bool, marker: LuaValue) -> LuaResult<bool> {
    let sched = scheduler(lua);
    let f = sched.current();
    let Some(prev) = sched.spawning.borrow_mut().pop() else {
        return Err(LuaError::runtime("fiber spawn_end without spawn_begin"));
    };
    sched.leave(&f, prev);
    let outcome = match marker {
        _ if !ok => Resumed::Failed(errors::describe(lua, &marker)),
        LuaValue::LightUserData(p) => Resumed::Yielded(p.0),
        _ => Resumed::Yielded(std::ptr::null_mut()),
    };
    after_resume(lua, &sched, &f, outcome, true);
    let alive = !f.is_dead();
    if alive {
        *sched.last_spawned.borrow_mut() = Some(f);
    }
    Ok(alive)
}

/// Gives the fiber that [`spawn_end`] reported alive its coroutine.
fn spawn_attach(lua: &Lua, co: LuaThread) -> LuaResult<()> {
    let sched = scheduler(lua);
    let f = sched.last_spawned.borrow_mut().take();
    match f {
        Some(f) => {
            f.co.set(co.state());
            Ok(())
        }
        None => Err(LuaError::runtime("fiber spawn_attach without spawn_end")),
    }
}

/// Starts the task that runs the scheduler coroutine, once per thread.
fn ensure_task(lua: &Lua, sched: &Scheduler) -> LuaResult<()> {
    if sched.task_spawned.get() {
        return Ok(());
    }
    let run = lua.create_function(|lua, ()| {
        run_ready(lua);
        Ok(())
    })?;
    let body: LuaFunction = lua.load(SCHEDULER_LUA).set_name("=scheduler").call((
        run,
        lua.globals()
            .get::<LuaTable>("coroutine")?
            .get::<LuaFunction>("yield")?,
        LuaValue::LightUserData(Lua::poll_pending()),
    ))?;
    let thread = lua.create_thread(body)?;
    let driver = thread.into_async::<()>(())?;
    tokio::task::spawn_local(scheduler_task(driver));
    sched.task_spawned.set(true);
    Ok(())
}

/// The one tokio task that runs fibers. It polls the scheduler coroutine with the
/// current-fiber waker, which mlua then gives to every future polled inside a fiber.
async fn scheduler_task(mut driver: LuaAsyncThread<()>) {
    let sched = SCHEDULER.with(Rc::clone);
    let mut timer = Box::pin(tokio::time::sleep_until(Instant::now()));
    let mut timer_armed = false;
    let outcome = std::future::poll_fn(|cx| {
        {
            let mut task = sched.remote.task.lock().unwrap_or_else(|e| e.into_inner());
            if !task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        loop {
            let mut fiber_cx = Context::from_waker(current_fiber_waker());
            if let Poll::Ready(r) = Pin::new(&mut driver).poll(&mut fiber_cx) {
                return Poll::Ready(r);
            }
            if !sched.ready.borrow().is_empty() || sched.remote.pending.load(AtomicOrdering::Acquire) {
                // Out of budget: let tokio poll sockets and timers, then go on.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let Some(at) = sched.next_deadline() else {
                return Poll::Pending;
            };
            if !timer_armed || timer.deadline() != at {
                timer.as_mut().reset(at);
                timer_armed = true;
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            timer_armed = false;
        }
    })
    .await;
    if let Err(e) = outcome {
        super::output::stderr(&format!("fiber scheduler failed: {}\n", errors::message(&e)));
    }
}

/// Resumes ready fibers until the queue is empty or the budget is spent.
fn run_ready(lua: &Lua) {
    let sched = SCHEDULER.with(Rc::clone);
    sched.running.set(true);
    sched.drain_remote();
    sched.expire_timers();
    for _ in 0..BUDGET {
        let next = sched.ready.borrow_mut().pop_front();
        let Some(f) = next else { break };
        f.queued.set(false);
        resume(lua, &sched, &f, false);
        sched.drain_remote();
    }
    if let Some(hook) = ROUND_HOOK.with(|h| h.get()) {
        hook();
    }
    sched.running.set(false);
}

/// How a resumed fiber gave control back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Suspend {
    /// Parked by lua/fiber.lua: a wakeup, cancel or deadline resumes it.
    Parked,
    /// Parked inside an mlua async function, or in a plain coroutine: the future's
    /// waker, or a wakeup, resumes it.
    ParkedInRust,
    /// Back on the ready queue (`fiber.yield`, a plain `coroutine.yield`).
    Yielded,
    /// Finished, or not resumable.
    Done,
}

fn yield_marker_ptr() -> *mut c_void {
    static YIELD_MARKER: u8 = 0;
    &YIELD_MARKER as *const u8 as *mut c_void
}

/// What lua/fiber.lua yields for a park from a fiber's own coroutine. Parks from anywhere
/// else (a plain coroutine, a Lua call that Rust drives with its own `AsyncThread`) yield
/// mlua's "poll pending", which every `AsyncThread` on the way understands.
fn park_marker_ptr() -> *mut c_void {
    static PARK_MARKER: u8 = 0;
    &PARK_MARKER as *const u8 as *mut c_void
}

/// Runs a fiber until its next yield. `eager` is set for the first run inside
/// `fiber.create`.
fn resume(lua: &Lua, sched: &Scheduler, f: &Rc<Fiber>, eager: bool) -> Suspend {
    let co = f.co.get();
    if co.is_null() || f.is_dead() || f.state.get() == FiberState::Running {
        return Suspend::Done;
    }
    // Safety: while the fiber lives, `fids` in Lua holds its coroutine, and only the
    // scheduler resumes it, never while it runs (its fiber would be Running).
    let outcome = unsafe {
        let nargs = if f.started.get() {
            ffi::lua_settop(co, 0);
            if f.takes_outcome.get() {
                ffi::lua_pushinteger(co, park_outcome(f) as ffi::lua_Integer);
                1
            } else {
                0
            }
        } else {
            f.started.set(true);
            // A new coroutine has the trampoline below the arguments; a pooled one was
            // left yielded with only the arguments on its stack.
            let top = ffi::lua_gettop(co);
            if ffi::lua_status(co) == ffi::LUA_YIELD {
                top
            } else {
                top - 1
            }
        };
        run(sched, f, co, nargs)
    };
    after_resume(lua, sched, f, outcome, eager)
}

/// Resumes `f`'s coroutine `co` with the `nargs` values on top of its stack.
///
/// # Safety
/// `co` is `f`'s live coroutine, suspended, with `nargs` values on its stack.
unsafe fn run(sched: &Scheduler, f: &Rc<Fiber>, co: *mut ffi::lua_State, nargs: c_int) -> Resumed {
    let prev = sched.enter(f);
    let mut nres = 0;
    let ret = ffi::lua_resume(co, std::ptr::null_mut(), nargs, &mut nres);
    sched.leave(f, prev);
    match ret {
        ffi::LUA_YIELD if nres > 0 => Resumed::Yielded(ffi::lua_touserdata(co, -1)),
        ffi::LUA_YIELD => Resumed::Yielded(std::ptr::null_mut()),
        _ => Resumed::Failed(error_text(co)),
    }
}

/// Hands work to a fiber parked in Lua on [`park_marker`]: its `coroutine.yield` returns
/// the values `push` puts on its stack (it returns how many), and it runs at once, until
/// its next yield, as a new fiber would. Errors from `push` leave the fiber parked. For
/// pools of fibers that serve one thing after another (the IPROTO server's).
pub fn resume_with(
    lua: &Lua,
    f: &Rc<Fiber>,
    push: impl FnOnce(*mut ffi::lua_State) -> LuaResult<c_int>,
) -> LuaResult<()> {
    let co = f.co.get();
    if co.is_null() || f.state.get() != FiberState::Suspended || !f.started.get() {
        return Err(LuaError::runtime("fiber is not parked"));
    }
    let sched = SCHEDULER.with(Rc::clone);
    // Safety: a live, started, suspended fiber's coroutine is suspended in a yield (`fids`
    // in Lua holds it); what `push` leaves on its stack becomes that yield's results.
    let outcome = unsafe {
        if ffi::lua_status(co) != ffi::LUA_YIELD {
            return Err(LuaError::runtime("fiber is not parked"));
        }
        ffi::lua_settop(co, 0);
        let nargs = match push(co) {
            Ok(n) => n,
            Err(e) => {
                ffi::lua_settop(co, 0);
                return Err(e);
            }
        };
        f.woken.set(false);
        f.deadline.set(None);
        run(&sched, f, co, nargs)
    };
    after_resume(lua, &sched, f, outcome, true);
    Ok(())
}

/// The light userdata a fiber yields from its own coroutine to park until a wakeup, a
/// cancel or [`resume_with`]; a wakeup or cancel resumes it with the park outcome
/// (0 woken, 1 timeout, 2 cancelled).
pub fn park_marker() -> LuaLightUserData {
    LuaLightUserData(park_marker_ptr())
}

/// Makes a pooled fiber look new before its next piece of work: named `name`, no
/// `fiber.self().storage`, no pending wakeup. False if it was cancelled (it must end, as
/// Tarantool's pooled fibers do).
pub fn reset_for_reuse(lua: &Lua, f: &Fiber, name: &'static str) -> bool {
    if f.cancelled.get() {
        return false;
    }
    if *f.name.borrow() != name {
        *f.name.borrow_mut() = Cow::Borrowed(name);
    }
    if let Some(key) = f.storage.borrow_mut().take() {
        let _ = lua.remove_registry_value(key);
    }
    f.woken.set(false);
    f.deadline.set(None);
    true
}

/// True if the fiber can be handed work with [`resume_with`] now: alive, not cancelled,
/// parked, and not on the ready queue (a wakeup is on its way to it).
pub fn is_idle(f: &Fiber) -> bool {
    !f.is_dead() && !f.cancelled.get() && !f.queued.get() && f.state.get() == FiberState::Suspended
}

/// How a resume of a fiber's coroutine ended.
enum Resumed {
    /// It yielded this value (null unless a light userdata marker).
    Yielded(*mut c_void),
    /// It died: the runtime failed (the trampoline catches the fiber's own errors).
    Failed(String),
}

fn after_resume(lua: &Lua, sched: &Scheduler, f: &Rc<Fiber>, outcome: Resumed, eager: bool) -> Suspend {
    if f.is_dead() {
        // The trampoline has finished the fiber and pooled its coroutine, which must
        // reach its next fiber with an empty stack (it still holds the yielded marker
        // when Rust resumed it).
        let co = f.co.replace(std::ptr::null_mut());
        if !co.is_null() {
            // Safety: the pool holds the coroutine, which is suspended.
            unsafe { ffi::lua_settop(co, 0) };
        }
        return Suspend::Done;
    }
    f.takes_outcome
        .set(matches!(outcome, Resumed::Yielded(p) if p == park_marker_ptr() || p == yield_marker_ptr()));
    match outcome {
        Resumed::Yielded(p) if p == park_marker_ptr() => {
            // A fiber cancelled earlier parks again: the cancel will not wake it twice,
            // so it is resumed at once and its wait raises.
            if f.cancelled.get() {
                sched.schedule(f);
            }
            Suspend::Parked
        }
        Resumed::Yielded(p) if p == Lua::poll_pending().0 => {
            if eager {
                // The future was polled with the waker of whatever ran `create`, which
                // need not be the scheduler's; one more poll from the scheduler
                // registers the fiber's own waker.
                sched.schedule(f);
            }
            Suspend::ParkedInRust
        }
        Resumed::Yielded(_) => {
            // `fiber.yield`, or a plain `coroutine.yield` at the fiber's top level.
            sched.schedule(f);
            Suspend::Yielded
        }
        Resumed::Failed(text) => {
            // The coroutine is dead and stays out of the pool. (Its `fids` entry stays
            // too: this only happens when the runtime itself fails, e.g. out of memory.)
            f.co.set(std::ptr::null_mut());
            let mut values = LuaMultiValue::new();
            values.push_back(LuaValue::Boolean(false));
            if let Ok(s) = lua.create_string(&text) {
                values.push_back(LuaValue::String(s));
            }
            finish(lua, f, values);
            Suspend::Done
        }
    }
}

/// The error a coroutine died with, as text.
///
/// Safety: `co` must be a live coroutine whose resume has just failed.
unsafe fn error_text(co: *mut ffi::lua_State) -> String {
    let mut len = 0;
    let p = ffi::lua_tolstring(co, -1, &mut len);
    if p.is_null() {
        return "fiber failed".to_string();
    }
    String::from_utf8_lossy(std::slice::from_raw_parts(p as *const u8, len)).into_owned()
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
    if fiber.join_watched.get() {
        fiber.join_notify.notify_waiters();
    }
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

/// A fiber by id for the object methods of lua/fiber.lua: a finished fiber is gone from
/// the table, which Tarantool reports as `the fiber is dead`.
fn live_by_id(id: u64) -> LuaResult<Rc<Fiber>> {
    match SCHEDULER.with(|s| s.find(id)) {
        Some(f) if !f.is_dead() => Ok(f),
        _ => Err(LuaError::runtime("the fiber is dead")),
    }
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
    *f.name.borrow_mut() = Cow::Owned(name);
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
        f.join_watched.set(true);
        let notified = f.join_notify.notified();
        if f.result.borrow().is_some() {
            break;
        }
        // Tarantool's join does not react to a cancel of the joining fiber.
        notified.await;
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

/// The Rust halves of the fiber object's methods (the object itself is a Lua proxy made by
/// lua/fiber.lua: a plain userdata without a finalizer is much cheaper to create for every
/// `fiber.create` than an mlua userdata).
fn object_primitives(lua: &Lua, p: &LuaTable) -> LuaResult<()> {
    p.set(
        "obj_name",
        lua.create_function(|lua, (id, name): (u64, Option<LuaValue>)| {
            let f = live_by_id(id)?;
            match name {
                Some(name) => {
                    set_name(&f, name)?;
                    Ok(LuaMultiValue::new())
                }
                None => Ok(LuaMultiValue::from_iter([LuaValue::String(
                    lua.create_string(f.name())?,
                )])),
            }
        })?,
    )?;
    p.set(
        "obj_status",
        lua.create_function(|lua, id: u64| {
            Ok(match SCHEDULER.with(|s| s.find(id)) {
                Some(f) => status_name(lua, &f),
                None => "dead",
            })
        })?,
    )?;
    p.set(
        "obj_cancel",
        lua.create_function(|lua, id: u64| {
            live_by_id(id)?.cancel();
            // A fiber that cancels itself stops at once, as Tarantool's does.
            if id == current_id() {
                testcancel(lua)?;
            }
            Ok(())
        })?,
    )?;
    p.set(
        "obj_wakeup",
        lua.create_function(|_, id: u64| {
            live_by_id(id)?.wakeup();
            Ok(())
        })?,
    )?;
    p.set(
        "obj_set_joinable",
        lua.create_function(|_, (id, yes): (u64, bool)| {
            live_by_id(id)?.joinable.set(yes);
            Ok(())
        })?,
    )?;
    p.set(
        "obj_join",
        lua.create_async_function(|lua, id: u64| async move {
            let f = SCHEDULER
                .with(|s| s.find(id))
                .ok_or_else(|| LuaError::runtime("the fiber is dead"))?;
            join(lua, f).await
        })?,
    )?;
    p.set(
        "obj_storage",
        lua.create_function(|lua, id: u64| storage(lua, &*live_by_id(id)?))?,
    )?;
    Ok(())
}

/// The Lua object for a fiber, made by lua/fiber.lua's constructor.
fn fiber_object(lua: &Lua, f: Rc<Fiber>) -> LuaResult<LuaValue> {
    let make: LuaFunction = lua.named_registry_value("node.fiber_object")?;
    make.call(f.id)
}

/// Reads a fiber argument: lua/fiber.lua turns fiber objects into their ids first.
fn fiber_arg(lua: &Lua, v: &LuaValue, _fname: &str) -> LuaResult<Option<Rc<Fiber>>> {
    match v {
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
            let fiber = spawn(lua, DEFAULT_NAME, f, rest, Start::Eager)?;
            fiber_object(lua, fiber)
        })?,
    )?;
    m.set(
        "new",
        lua.create_function(|lua, args: LuaMultiValue| {
            let (f, rest) = create_args("fiber.new", args)?;
            let fiber = spawn(lua, DEFAULT_NAME, f, rest, Start::Deferred)?;
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
                if f.id == current_id() {
                    testcancel(lua)?;
                }
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
    let fiber_lua: LuaFunction = lua.load(FIBER_LUA).set_name("@builtin/fiber.lua").into_function()?;
    let prims = primitives(lua)?;
    let make_object: LuaFunction = fiber_lua.call((
        m.clone(),
        prims.clone(),
        LuaValue::LightUserData(Lua::poll_pending()),
        yield_marker(lua)?,
        LuaLightUserData(park_marker_ptr()),
        lua.named_registry_value::<LuaFunction>(RAW_RESUME)?,
    ))?;
    lua.set_named_registry_value("node.fiber_object", make_object)?;
    lua.set_named_registry_value(PARK_UNTIL_WOKEN, prims.get::<LuaFunction>("park_until_woken")?)?;
    Ok(m)
}

const FIBER_LUA: &str = include_str!("../../lua/fiber.lua");

/// Where the prelude leaves the original `coroutine.resume` (registry name).
pub const RAW_RESUME: &str = "node.raw_coroutine_resume";

/// The value a fiber yields to go to the back of the ready queue (`fiber.yield`), unlike
/// mlua's "poll pending" marker, which parks it until it is woken. The prelude passes both
/// markers through plain coroutines.
pub fn yield_marker(_lua: &Lua) -> LuaResult<LuaLightUserData> {
    Ok(LuaLightUserData(yield_marker_ptr()))
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
/// resumed when `wakeup` or `cancel` queues it, or when its deadline passes.
fn primitives(lua: &Lua) -> LuaResult<LuaTable> {
    let p = lua.create_table()?;
    object_primitives(lua, &p)?;
    p.set(
        "self_id",
        lua.create_function(|_, ()| Ok(SCHEDULER.with(|s| s.current.borrow().id)))?,
    )?;
    p.set("now", lua.create_function(|_, ()| Ok(monotonic_secs()))?)?;
    p.set(
        "park_prepare",
        lua.create_function(|_, deadline: Option<f64>| {
            Ok(SCHEDULER.with(|s| {
                let f = s.current();
                f.woken.set(false);
                let at = deadline.map(|d| s.started + duration_from_secs(d));
                f.deadline.set(at);
                if let Some(at) = at {
                    s.add_timer(&f, at);
                }
                f.id
            }))
        })?,
    )?;
    p.set("fids", lua.registry_value::<LuaTable>(&fiber_lua(lua)?.fids)?)?;
    p.set("take", lua.registry_value::<LuaFunction>(&fiber_lua(lua)?.take)?)?;
    p.set("spawn_begin", lua.create_function(|lua, ()| spawn_begin(lua))?)?;
    p.set(
        "spawn_end",
        lua.create_function(|lua, (ok, marker): (bool, LuaValue)| spawn_end(lua, ok, marker))?,
    )?;
    p.set(
        "spawn_attach",
        lua.create_function(|lua, co: LuaThread| spawn_attach(lua, co))?,
    )?;
    p.set(
        "park_status",
        lua.create_function(|_, ()| Ok(SCHEDULER.with(|s| park_outcome(&s.current.borrow()))))?,
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
    f.join_watched.set(true);
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
