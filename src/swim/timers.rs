//! The timers of all swim instances of a thread, on one task and one tokio sleep.
//!
//! Every instance must be woken at its core's next deadline (a round step, an ack
//! timeout): a hundred instances with the benchmark's 0.1 s heartbeat need a thousand
//! wakeups a second. With a task and a tokio timer each, every wakeup paid for a task
//! wake and poll, a timer wheel entry and a `Notify` registration, which together cost
//! about as much as the round step they ran. Here one task sleeps until the earliest
//! deadline of all and runs every instance that is due.
//!
//! An instance arms its timer only when its next deadline comes earlier than the armed one
//! (most inputs do not move it); an entry left behind by a re-arm or a delete is skipped
//! when it comes up, and one that fires early is harmless (the core runs what is due).

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::udp::{now_us, Instance};
use crate::runtime::deadlines::Deadlines;

#[derive(Default)]
struct Timers {
    /// Deadlines in µs of [`now_us`], with the instance each wakes.
    heap: RefCell<Deadlines<u64, Weak<Instance>>>,
    /// The deadline the task sleeps until; `None` while it waits for an entry.
    sleeping_until: Cell<Option<u64>>,
    /// Wakes the task when an entry earlier than its sleep arrives.
    kick: Notify,
    task: RefCell<Option<JoinHandle<()>>>,
}

thread_local! {
    static TIMERS: Rc<Timers> = Rc::new(Timers::default());
}

/// Wakes `inst` at `at`, by calling [`Instance::on_timer`] once [`Instance::timer_armed`]
/// still says `at` then. The caller sets `timer_armed` to `at`.
pub(super) fn arm(inst: &Weak<Instance>, at: u64) {
    TIMERS.with(|timers| {
        timers.heap.borrow_mut().push(at, inst.clone());
        if timers.sleeping_until.get().is_none_or(|until| at < until) {
            timers.kick.notify_one();
        }
        // A task of a runtime that is gone (tests build several per thread) is finished.
        let mut task = timers.task.borrow_mut();
        if task.as_ref().is_none_or(JoinHandle::is_finished) {
            *task = Some(tokio::task::spawn_local(run(timers.clone())));
        }
    });
}

async fn run(timers: Rc<Timers>) {
    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);
    let mut due = Vec::new();
    loop {
        let now = now_us();
        {
            let mut heap = timers.heap.borrow_mut();
            while let Some(entry) = heap.pop_due(now) {
                due.push(entry);
            }
        }
        // Not borrowed here: an instance's input re-arms its timer.
        for (at, inst) in due.drain(..) {
            let Some(inst) = inst.upgrade() else { continue };
            if inst.timer_armed.get() == Some(at) {
                inst.timer_armed.set(None);
                inst.on_timer();
            }
        }
        let next = timers.heap.borrow().next();
        timers.sleeping_until.set(next);
        match next {
            Some(at) => {
                let now = now_us();
                if at <= now {
                    continue;
                }
                sleep
                    .as_mut()
                    .reset(tokio::time::Instant::now() + Duration::from_micros(at - now));
                tokio::select! {
                    _ = &mut sleep => {}
                    _ = timers.kick.notified() => {}
                }
            }
            None => timers.kick.notified().await,
        }
    }
}
