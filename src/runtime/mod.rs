//! The runtime: one thread, one Lua state, fibers on a tokio current-thread `LocalSet`.
//!
//! [`run`] is the whole life of the process, shaped after Tarantool's `main.cc`: run the
//! main chunk as a fiber; when it returns, stay in the event loop only if something is
//! pending (a live fiber, a listener, a console, swim, box), and then for good, until
//! `os.exit` or SIGINT/SIGTERM; otherwise exit 0.

pub mod cdata;
pub mod console;
pub(crate) mod deadlines;
pub mod errors;
pub mod fiber;
pub mod output;
pub mod state;

use std::cell::Cell;
use std::rc::Rc;

use mlua::prelude::*;

pub use state::ScriptArgs;

const MAIN_LUA: &str = include_str!("../../lua/main.lua");

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The binary's path, for `arg[-1]`.
    pub binary: String,
    /// The script; `-` runs stdin as a script.
    pub script: Option<String>,
    /// The script's arguments (`arg[1..]`, and `...` in the main chunk).
    pub args: Vec<String>,
    /// `-e` chunks, run before the script.
    pub eval: Vec<String>,
    /// `-i`: open the console after the script.
    pub interactive: bool,
    /// `--connect URI`: only a console attached to the instance at `URI`.
    pub connect: Option<String>,
}

/// Exit code for a script that fails to load or raises (Tarantool's).
const EXIT_SCRIPT_ERROR: i32 = 1;
/// Exit code when the script file cannot be opened (Tarantool's).
const EXIT_NO_SCRIPT: i32 = 2;
/// Exit code of `--connect` when the instance cannot be reached (nothing special in it).
const EXIT_NO_CONNECTION: i32 = 1;

/// A server holds a socket per client: the soft limit on open files (often 1024) goes up to
/// the hard one.
pub fn raise_open_files_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // Safety: plain system calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Runs the process; returns its exit code.
pub fn run(opts: Options) -> i32 {
    if let Some(script) = &opts.script {
        if script != "-" {
            if let Err(e) = std::fs::metadata(script) {
                output::stderr(&format!("Can't open script {script}: {}\n", io_error_text(&e)));
                return EXIT_NO_SCRIPT;
            }
        }
    }
    raise_open_files_limit();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            output::stderr(&format!("can't start the event loop: {e}\n"));
            return 1;
        }
    };
    let local = tokio::task::LocalSet::new();
    let code = local.block_on(&rt, async move {
        match main_fiber(opts).await {
            Ok(code) => code,
            Err(e) => {
                output::stderr(&format!("{}\n", errors::message(&e)));
                1
            }
        }
    });
    output::flush();
    code
}

/// `strerror` text without Rust's " (os error N)" suffix.
fn io_error_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

async fn main_fiber(opts: Options) -> LuaResult<i32> {
    let lua = state::new_lua(&ScriptArgs {
        binary: opts.binary.clone(),
        script: opts.script.clone(),
        args: opts.args.clone(),
    })?;
    watch_signals();

    let lua_opts = lua.create_table()?;
    if let Some(script) = &opts.script {
        lua_opts.set("script", script.as_str())?;
    }
    lua_opts.set("args", lua.create_sequence_from(opts.args.iter().map(String::as_str))?)?;
    lua_opts.set("eval", lua.create_sequence_from(opts.eval.iter().map(String::as_str))?)?;
    lua_opts.set("interactive", opts.interactive)?;
    if opts.interactive && console::is_tty() {
        output::stderr(&format!(
            "node {} (Tarantool 2.6 Lua API)\ntype 'help' for interactive help\n",
            env!("CARGO_PKG_VERSION")
        ));
    }
    if let Some(uri) = &opts.connect {
        return connect_main(&lua, uri).await;
    }
    let console_start = lua.create_async_function(|lua, ()| async move { console::run(&lua).await })?;
    let main: LuaFunction = lua.load(MAIN_LUA).set_name("=main").call((lua_opts, console_start))?;

    let failed: Rc<Cell<bool>> = Rc::new(Cell::new(false));
    let failed_flag = failed.clone();
    let on_error: fiber::OnError = Box::new(move |lua, _fiber, err, traceback| {
        failed_flag.set(true);
        let mut text = format!("LuajitError: {}\n", errors::describe(lua, &err));
        if let Some(tb) = traceback {
            let tb = tb.trim_start_matches('\n');
            if !tb.is_empty() {
                text.push_str(tb);
                text.push('\n');
            }
        }
        text.push_str("fatal error, exiting the event loop\n");
        output::stderr(&text);
    });
    let name = match &opts.script {
        Some(s) if s != "-" => std::path::Path::new(s)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| s.clone()),
        Some(_) => "stdin".to_string(),
        None => "main".to_string(),
    };
    let main_fiber = fiber::spawn_with(
        &lua,
        &name,
        main,
        LuaMultiValue::new(),
        fiber::Start::Deferred,
        Some(on_error),
    )?;
    wait_dead(&lua, &main_fiber).await;
    if failed.get() {
        return Ok(EXIT_SCRIPT_ERROR);
    }
    let sched = fiber::scheduler(&lua);
    if sched.has_pending_work() {
        crate::modules::log::write(&lua, crate::modules::log::Level::Info, "entering the event loop");
        std::future::pending::<()>().await;
    }
    Ok(0)
}

/// `node --connect URI`: the console runs in a fiber, attached to `URI`, until stdin or
/// the connection ends; then the process exits, whatever else the console started.
async fn connect_main(lua: &Lua, uri: &str) -> LuaResult<i32> {
    let outcome: Rc<std::cell::RefCell<Option<LuaResult<Option<String>>>>> = Rc::default();
    let sink = outcome.clone();
    let uri = uri.to_string();
    let body = lua.create_async_function(move |lua, ()| {
        let sink = sink.clone();
        let uri = uri.clone();
        async move {
            let result = console::run_connected(&lua, &uri).await;
            *sink.borrow_mut() = Some(result);
            Ok(())
        }
    })?;
    let f = fiber::spawn(lua, "console", body, LuaMultiValue::new(), fiber::Start::Deferred)?;
    wait_dead(lua, &f).await;
    let result = outcome.borrow_mut().take();
    match result {
        Some(Ok(None)) => Ok(0),
        Some(Ok(Some(why))) => {
            output::stderr(&format!("node: {why}\n"));
            Ok(EXIT_NO_CONNECTION)
        }
        Some(Err(e)) => {
            output::stderr(&format!("node: {}\n", errors::message(&e)));
            Ok(EXIT_SCRIPT_ERROR)
        }
        None => Ok(EXIT_SCRIPT_ERROR),
    }
}

/// Waits until the given fiber has finished.
async fn wait_dead(lua: &Lua, f: &Rc<fiber::Fiber>) {
    let _ = lua;
    while !fiber::is_dead(f) {
        fiber::wait_finished(f).await;
    }
}

/// SIGINT and SIGTERM end the process cleanly, as in Tarantool (exit code 0).
fn watch_signals() {
    use tokio::signal::unix::{signal, SignalKind};
    for kind in [SignalKind::interrupt(), SignalKind::terminate()] {
        if let Ok(mut s) = signal(kind) {
            tokio::task::spawn_local(async move {
                if s.recv().await.is_some() {
                    output::flush();
                    std::process::exit(0);
                }
            });
        }
    }
}
