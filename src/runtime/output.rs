//! The one writer for everything the process prints: Lua `print`, logs and console answers.
//!
//! LuaJIT's own `print`/`io.write` go through C stdio, which is fully buffered on a pipe, so
//! their output would overtake or trail Rust's. `print` is replaced by a function that writes
//! here, and C stdout is made unbuffered, so output keeps its order. While the interactive
//! console waits in its line editor, output goes through rustyline's external printer so that
//! it does not tear the prompt line. Write errors (a closed pipe, `| head`) are ignored: they
//! must never panic the process.

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use rustyline::ExternalPrinter;

/// True while the console thread sits in `readline` with a prompt on screen.
pub static IN_READLINE: AtomicBool = AtomicBool::new(false);

thread_local! {
    static PRINTER: RefCell<Option<Box<dyn ExternalPrinter>>> = const { RefCell::new(None) };
}

/// Routes output through the console's external printer from now on.
pub fn set_console_printer(printer: Box<dyn ExternalPrinter>) {
    PRINTER.with(|p| *p.borrow_mut() = Some(printer));
}

fn via_printer(text: &str) -> bool {
    if !IN_READLINE.load(Ordering::Acquire) {
        return false;
    }
    PRINTER.with(|p| match p.borrow_mut().as_mut() {
        Some(printer) => printer.print(text.to_string()).is_ok(),
        None => false,
    })
}

/// Writes to stdout and flushes.
pub fn stdout(text: &str) {
    if via_printer(text) {
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Writes raw bytes to stdout (Lua strings need not be UTF-8).
pub fn stdout_bytes(bytes: &[u8]) {
    if via_printer(&String::from_utf8_lossy(bytes)) {
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes);
    let _ = out.flush();
}

/// Writes to stderr (logs).
pub fn stderr(text: &str) {
    if via_printer(text) {
        return;
    }
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

/// Flushes everything before the process exits.
pub fn flush() {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}
