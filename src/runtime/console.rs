//! The interactive console: `node -i`, `node` on a terminal, `require('console').start()`.
//!
//! The read-eval-print loop itself is Lua (`lua/console.lua`) and runs in the fiber that
//! started it, so a line may sleep or wait on a channel while other fibers go on. Reading
//! is blocking work and lives on its own std thread:
//! - on a terminal, rustyline (history in `~/.node_history`, Tab completion that asks the
//!   Lua thread for candidates, output of other fibers printed above the prompt);
//! - on a pipe, plain line reads, with the prompt and the line echoed as Tarantool does, so
//!   the console can be driven and golden-tested without a terminal.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{BufRead, IsTerminal};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;

use mlua::prelude::*;
use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};
use tokio::sync::mpsc;

use super::{fiber, output};
use crate::box_::session::{self, Session, SessionKind};
use crate::iproto;

const CONSOLE_LUA: &str = include_str!("../../lua/console.lua");

/// The prompt word (the console prints it followed by `> `); golden comparisons with
/// Tarantool normalise it.
pub const PROMPT_WORD: &str = "node";

/// The second line of the text console's greeting (Tarantool's).
const GREETING_HINT: &str = "type 'help' for interactive help";

/// Half of the 128-byte greeting: each line is padded with spaces to 63 bytes plus `\n`.
const GREETING_LINE: usize = iproto::codec::GREETING_SIZE / 2 - 1;

/// What the reader thread tells the Lua thread.
enum Event {
    Line(String),
    Eof,
    /// Ctrl-C: drop the line being typed.
    Interrupted,
    /// Tab: the editor waits on `reply` for `(start, candidates)`.
    Complete {
        line: String,
        reply: std_mpsc::Sender<(usize, Vec<String>)>,
    },
}

/// The Lua thread's handle on the reader thread.
struct Reader {
    tty: bool,
    /// Asks the tty thread to read one line with this prompt; unused on a pipe, whose
    /// thread reads ahead on its own.
    requests: Option<std_mpsc::Sender<String>>,
    events: mpsc::UnboundedReceiver<Event>,
    /// Lines of a multi-line paste not yet evaluated.
    pending: VecDeque<String>,
    eof: bool,
}

thread_local! {
    static READER: RefCell<Option<Rc<RefCell<Reader>>>> = const { RefCell::new(None) };
}

struct LineHelper {
    events: mpsc::UnboundedSender<Event>,
}

impl Completer for LineHelper {
    type Candidate = String;

    fn complete(&self, line: &str, pos: usize, _: &Context<'_>) -> rustyline::Result<(usize, Vec<String>)> {
        let (tx, rx) = std_mpsc::channel();
        let before = line.get(..pos).unwrap_or(line).to_string();
        if self
            .events
            .send(Event::Complete {
                line: before,
                reply: tx,
            })
            .is_err()
        {
            return Ok((pos, Vec::new()));
        }
        Ok(rx.recv().unwrap_or((pos, Vec::new())))
    }
}

impl Hinter for LineHelper {
    type Hint = String;
}
impl Highlighter for LineHelper {}
impl Validator for LineHelper {}
impl Helper for LineHelper {}

fn history_path() -> Option<std::path::PathBuf> {
    std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".node_history"))
}

fn spawn_tty_reader() -> Reader {
    let (req_tx, req_rx) = std_mpsc::channel::<String>();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let (printer_tx, printer_rx) = std_mpsc::channel();
    let helper_events = ev_tx.clone();
    std::thread::Builder::new()
        .name("console".into())
        .spawn(move || {
            let config = rustyline::Config::builder()
                .history_ignore_dups(true)
                .map(|b| b.auto_add_history(false).build())
                .unwrap_or_default();
            let mut editor = match Editor::<LineHelper, rustyline::history::DefaultHistory>::with_config(config) {
                Ok(e) => e,
                Err(_) => {
                    let _ = ev_tx.send(Event::Eof);
                    return;
                }
            };
            editor.set_helper(Some(LineHelper { events: helper_events }));
            let history = history_path();
            if let Some(h) = &history {
                let _ = editor.load_history(h);
            }
            if let Ok(p) = editor.create_external_printer() {
                let _ = printer_tx.send(Box::new(p) as Box<dyn rustyline::ExternalPrinter + Send>);
            }
            while let Ok(prompt) = req_rx.recv() {
                output::IN_READLINE.store(true, Ordering::Release);
                let line = editor.readline(&prompt);
                output::IN_READLINE.store(false, Ordering::Release);
                let event = match line {
                    Ok(l) => {
                        if !l.trim().is_empty() {
                            let _ = editor.add_history_entry(l.as_str());
                            if let Some(h) = &history {
                                let _ = editor.append_history(h);
                            }
                        }
                        Event::Line(l)
                    }
                    Err(ReadlineError::Interrupted) => Event::Interrupted,
                    Err(_) => Event::Eof,
                };
                let done = matches!(event, Event::Eof);
                if ev_tx.send(event).is_err() || done {
                    break;
                }
            }
        })
        .ok();
    if let Ok(p) = printer_rx.recv_timeout(std::time::Duration::from_secs(1)) {
        output::set_console_printer(p);
    }
    Reader {
        tty: true,
        requests: Some(req_tx),
        events: ev_rx,
        pending: VecDeque::new(),
        eof: false,
    }
}

fn spawn_pipe_reader() -> Reader {
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("console".into())
        .spawn(move || {
            let stdin = std::io::stdin();
            let mut lock = stdin.lock();
            loop {
                let mut buf = Vec::new();
                match lock.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = ev_tx.send(Event::Eof);
                        return;
                    }
                    Ok(_) => {
                        if buf.last() == Some(&b'\n') {
                            buf.pop();
                        }
                        if buf.last() == Some(&b'\r') {
                            buf.pop();
                        }
                        if ev_tx
                            .send(Event::Line(String::from_utf8_lossy(&buf).into_owned()))
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
        })
        .ok();
    Reader {
        tty: false,
        requests: None,
        events: ev_rx,
        pending: VecDeque::new(),
        eof: false,
    }
}

fn reader() -> Rc<RefCell<Reader>> {
    READER.with(|r| {
        r.borrow_mut()
            .get_or_insert_with(|| {
                let reader = if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
                    spawn_tty_reader()
                } else {
                    spawn_pipe_reader()
                };
                Rc::new(RefCell::new(reader))
            })
            .clone()
    })
}

/// Reads one line for the console, yielding the fiber meanwhile; nil at end of input.
async fn read_line(lua: Lua, prompt: String) -> LuaResult<Option<String>> {
    let reader = reader();
    if let Some(line) = reader.borrow_mut().pending.pop_front() {
        return Ok(Some(echo(&reader, &prompt, line)));
    }
    if reader.borrow().eof {
        output::stdout(&prompt);
        return Ok(None);
    }
    let tty = reader.borrow().tty;
    if tty {
        if let Some(req) = &reader.borrow().requests {
            if req.send(prompt.clone()).is_err() {
                return Ok(None);
            }
        }
    }
    loop {
        // The reader is only used by one console at a time; holding the RefCell across
        // the await is avoided by taking the receiver out for the wait.
        let event = {
            let mut events = std::mem::replace(&mut reader.borrow_mut().events, mpsc::unbounded_channel().1);
            let ev = fiber::cancellable(&lua, events.recv()).await;
            reader.borrow_mut().events = events;
            ev?
        };
        match event {
            Some(Event::Line(text)) => {
                let mut lines = text.split('\n').map(str::to_string);
                let first = lines.next().unwrap_or_default();
                reader.borrow_mut().pending.extend(lines);
                return Ok(Some(echo(&reader, &prompt, first)));
            }
            Some(Event::Interrupted) => {
                if let Some(req) = &reader.borrow().requests {
                    let _ = req.send(prompt.clone());
                }
            }
            Some(Event::Complete { line, reply }) => {
                let _ = reply.send(complete(&lua, &line).unwrap_or((line.len(), Vec::new())));
            }
            Some(Event::Eof) | None => {
                reader.borrow_mut().eof = true;
                if !tty {
                    output::stdout(&prompt);
                } else {
                    output::stdout("\n");
                }
                return Ok(None);
            }
        }
    }
}

/// On a pipe nothing shows what was typed, so print the prompt and the line like Tarantool.
fn echo(reader: &Rc<RefCell<Reader>>, prompt: &str, line: String) -> String {
    if !reader.borrow().tty {
        output::stdout(&format!("{prompt}{line}\n"));
    }
    line
}

fn console_table(lua: &Lua) -> LuaResult<LuaTable> {
    lua.named_registry_value::<LuaTable>("node.console").or_else(|_| {
        let read = lua.create_async_function(|lua, prompt: String| read_line(lua, prompt))?;
        let write = lua.create_function(|_, text: LuaString| {
            output::stdout_bytes(&text.as_bytes());
            Ok(())
        })?;
        let format = lua.create_function(|lua, values: LuaTable| crate::serialize::console_format(lua, values))?;
        let t: LuaTable = lua.load(CONSOLE_LUA).set_name("=console").call((
            read,
            write,
            format,
            super::cdata::null(lua)?,
            internals(lua)?,
        ))?;
        lua.set_named_registry_value("node.console", t.clone())?;
        Ok(t)
    })
}

/// The text console's greeting: `Tarantool <version> (Lua console)` and the hint, each
/// padded to 63 bytes and ended with `\n`, byte for byte what Tarantool 2.6 sends.
pub fn greeting() -> String {
    // net.box parses `major.minor.patch` out of the first line; the build suffix is not sent.
    let version = crate::box_::VERSION.split('-').next().unwrap_or(crate::box_::VERSION);
    let banner = format!("Tarantool {version} (Lua console)");
    format!("{banner:<GREETING_LINE$}\n{GREETING_HINT:<GREETING_LINE$}\n")
}

/// What console.lua needs from Rust besides reading and writing: the greeting, a greeting
/// parser (the protocol a server speaks), and sessions.
fn internals(lua: &Lua) -> LuaResult<LuaTable> {
    let t = lua.create_table()?;
    t.set("greeting", greeting())?;
    t.set(
        "format_lua",
        lua.create_function(|lua, (values, block): (LuaTable, bool)| {
            crate::serialize::console_format_lua(lua, values, block)
        })?,
    )?;
    t.set(
        "decode_greeting",
        lua.create_function(|_, bytes: LuaString| {
            let bytes = bytes.as_bytes();
            let parsed = <&[u8; iproto::codec::GREETING_SIZE]>::try_from(&bytes[..])
                .map_err(|_| iproto::codec::GreetingError("too short"))
                .and_then(iproto::codec::parse_greeting);
            Ok(match parsed {
                Ok(g) => (Some(g.protocol), None),
                Err(e) => (None, Some(e.to_string())),
            })
        })?,
    )?;
    // A server console's connection: its own session (admin, as Tarantool's console
    // sessions are), bound to the fiber that serves it. Returns the session id.
    t.set(
        "session_open",
        lua.create_function(|_, peer: Option<String>| {
            let s = Session::new(
                SessionKind::Console,
                crate::box_::access::ADMIN,
                peer.unwrap_or_default(),
                None,
            );
            let id = s.id;
            session::bind(fiber::current_id(), s, 0);
            Ok(id)
        })?,
    )?;
    t.set(
        "session_close",
        lua.create_function(|_, ()| {
            session::unbind(fiber::current_id());
            Ok(())
        })?,
    )?;
    // The local console: session 1, of type `repl` in its fiber.
    t.set(
        "repl_session",
        lua.create_function(|_, on: bool| {
            session::set_repl_fiber(on.then(fiber::current_id));
            Ok(())
        })?,
    )?;
    Ok(t)
}

fn complete(lua: &Lua, line: &str) -> LuaResult<(usize, Vec<String>)> {
    let f: LuaFunction = console_table(lua)?.get("complete")?;
    let (start, list): (usize, Vec<String>) = f.call(line)?;
    Ok((start, list))
}

/// Runs the console in the calling fiber until its input ends; true if it ended with
/// `\quit`.
pub async fn run(lua: &Lua) -> LuaResult<bool> {
    start(lua, None).await.map(|(_, quit)| quit)
}

/// `node --connect URI`: the console, connected to `uri`, until its input or the
/// connection ends. Returns why it could not connect, if it could not.
pub async fn run_connected(lua: &Lua, uri: &str) -> LuaResult<Option<String>> {
    start(lua, Some(uri)).await.map(|(failure, _)| failure)
}

async fn start(lua: &Lua, connect: Option<&str>) -> LuaResult<(Option<String>, bool)> {
    let start: LuaFunction = console_table(lua)?.get("start")?;
    let opts = lua.create_table()?;
    opts.set("connect", connect)?;
    let sched = fiber::scheduler(lua);
    sched.pin();
    let result = start.call_async::<(Option<String>, bool)>((PROMPT_WORD, opts)).await;
    sched.unpin();
    result
}

/// Evaluates one console line and returns what the console would print (for tests and
/// the remote console).
pub fn eval_function(lua: &Lua) -> LuaResult<LuaFunction> {
    console_table(lua)?.get("eval")
}

/// True if the console would use the line editor (stdin and stdout are a terminal).
pub fn is_tty() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// Builds the `console` module table.
pub fn module(lua: &Lua) -> LuaResult<LuaTable> {
    let m = lua.create_table()?;
    let api: LuaTable = console_table(lua)?.get("api")?;
    for pair in api.pairs::<LuaValue, LuaValue>() {
        let (name, f) = pair?;
        m.set(name, f)?;
    }
    m.set(
        "start",
        lua.create_async_function(|lua, ()| async move { run(&lua).await.map(|_| ()) })?,
    )?;
    Ok(m)
}
