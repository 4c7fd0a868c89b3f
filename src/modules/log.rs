//! `log`: Tarantool's logger.
//!
//! Lines look like Tarantool's after `box.cfg`:
//! `2026-11-27 22:35:35.661 [7394] main/103/init.lua I> message`: local time with
//! milliseconds, pid, cord name, fiber id and name, and a level letter. `log_format = 'json'`
//! gives one JSON object per line instead. Output goes to stderr unless `log` names a file.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::Write;
use std::rc::Rc;

use mlua::prelude::*;

use crate::runtime::fiber::{self, Fiber};
use crate::runtime::output;

/// Tarantool's log levels, with the numbers `log_level` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Fatal = 0,
    SysError = 1,
    Error = 2,
    Crit = 3,
    Warn = 4,
    Info = 5,
    Verbose = 6,
    Debug = 7,
}

impl Level {
    fn letter(self) -> char {
        match self {
            Level::Fatal => 'F',
            Level::SysError => '!',
            Level::Error => 'E',
            Level::Crit => 'C',
            Level::Warn => 'W',
            Level::Info => 'I',
            Level::Verbose => 'V',
            Level::Debug => 'D',
        }
    }

    fn json_name(self) -> &'static str {
        match self {
            Level::Fatal => "FATAL",
            Level::SysError => "SYSERROR",
            Level::Error => "ERROR",
            Level::Crit => "CRIT",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Verbose => "VERBOSE",
            Level::Debug => "DEBUG",
        }
    }

    /// Parses a level given as a number or as a name (`'info'`, `'debug'`, ...).
    pub fn parse(v: &LuaValue) -> Option<Level> {
        let n = match v {
            LuaValue::Integer(n) => *n,
            LuaValue::Number(n) => *n as i64,
            LuaValue::String(s) => match s.to_str().ok()?.to_ascii_lowercase().as_str() {
                "fatal" => 0,
                "syserror" => 1,
                "error" => 2,
                "crit" => 3,
                "warn" => 4,
                "info" => 5,
                "verbose" => 6,
                "debug" => 7,
                _ => return None,
            },
            _ => return None,
        };
        Some(match n {
            i64::MIN..=0 => Level::Fatal,
            1 => Level::SysError,
            2 => Level::Error,
            3 => Level::Crit,
            4 => Level::Warn,
            5 => Level::Info,
            6 => Level::Verbose,
            _ => Level::Debug,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Plain,
    Json,
}

/// The logger's configuration, shared by `log.cfg` and `box.cfg`.
pub struct Logger {
    level: Cell<Level>,
    format: Cell<Format>,
    file: RefCell<Option<File>>,
}

impl Default for Logger {
    fn default() -> Self {
        Logger {
            level: Cell::new(Level::Info),
            format: Cell::new(Format::Plain),
            file: RefCell::new(None),
        }
    }
}

pub fn logger(lua: &Lua) -> Rc<Logger> {
    if let Some(l) = lua.app_data_ref::<Rc<Logger>>() {
        return l.clone();
    }
    let l = Rc::new(Logger::default());
    lua.set_app_data(l.clone());
    l
}

impl Logger {
    pub fn level(&self) -> Level {
        self.level.get()
    }

    pub fn set_level(&self, level: Level) {
        self.level.set(level);
    }

    pub fn set_format(&self, format: Format) {
        self.format.set(format);
    }

    /// Sends lines to a file (`log = 'file:path'` or a plain path), or back to stderr.
    pub fn set_destination(&self, dest: Option<&str>) -> std::io::Result<()> {
        let file = match dest {
            None | Some("") => None,
            Some(d) => {
                let path = d.strip_prefix("file:").unwrap_or(d);
                Some(std::fs::OpenOptions::new().create(true).append(true).open(path)?)
            }
        };
        *self.file.borrow_mut() = file;
        Ok(())
    }

    fn emit(&self, line: &str) {
        if let Some(f) = self.file.borrow_mut().as_mut() {
            let _ = f.write_all(line.as_bytes());
            return;
        }
        output::stderr(line);
    }
}

/// `YYYY-MM-DD hh:mm:ss.mmm` in local time.
fn timestamp() -> String {
    format_time(false)
}

/// Local time for the two formats: plain `YYYY-MM-DD hh:mm:ss.mmm`, JSON
/// `YYYY-MM-DDThh:mm:ss.mmm+zzzz` (as Tarantool writes them).
fn format_time(iso: bool) -> String {
    let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // Safety: both calls write only into structs we own.
    unsafe {
        libc::gettimeofday(&mut tv, std::ptr::null_mut());
        libc::localtime_r(&tv.tv_sec, &mut tm);
    }
    let date = format!(
        "{:04}-{:02}-{:02}{}{:02}:{:02}:{:02}.{:03}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        if iso { 'T' } else { ' ' },
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        tv.tv_usec / 1000
    );
    if !iso {
        return date;
    }
    let offset_min = tm.tm_gmtoff / 60;
    let sign = if offset_min < 0 { '-' } else { '+' };
    format!("{date}{sign}{:02}{:02}", offset_min.abs() / 60, offset_min.abs() % 60)
}

/// The Lua source position that called the logger, for the JSON format.
fn caller(lua: &Lua) -> Option<(String, usize)> {
    (1..4).find_map(|level| {
        lua.inspect_stack(level, |d| {
            let src = d.source();
            let line = d.current_line()?;
            let file = src.short_src.as_deref()?.to_string();
            Some((file, line))
        })
        .flatten()
    })
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Writes one log line on behalf of `fiber`, if `level` passes the configured level.
pub fn write_as(lua: &Lua, level: Level, fiber: &Fiber, message: &str) {
    let logger = logger(lua);
    if level > logger.level() {
        return;
    }
    let line = match logger.format.get() {
        Format::Plain => format!(
            "{} [{}] main/{}/{} {}> {}\n",
            timestamp(),
            std::process::id(),
            fiber.id,
            fiber.name(),
            level.letter(),
            message
        ),
        Format::Json => {
            // Tarantool's JSON line, including its space before the comma after "pid".
            let mut line = format!(
                "{{\"time\": {}, \"level\": \"{}\", \"message\": {}, \"pid\": {} , \"cord_name\": \"main\", \"fiber_id\": {}, \"fiber_name\": {}",
                json_string(&format_time(true)),
                level.json_name(),
                json_string(message),
                std::process::id(),
                fiber.id,
                json_string(&fiber.name())
            );
            if let Some((file, l)) = caller(lua) {
                line.push_str(&format!(", \"file\": {}, \"line\": {l}", json_string(&file)));
            }
            line.push_str("}\n");
            line
        }
    };
    logger.emit(&line);
}

/// Writes one log line on behalf of the running fiber.
pub fn write(lua: &Lua, level: Level, message: &str) {
    write_as(lua, level, &fiber::current(lua), message);
}

/// Formats `log.info(...)` arguments as Tarantool does: `string.format` when there are
/// several, JSON for a single table, `tostring` otherwise.
/// A Lua function looked up once and kept in the registry: compiling the lookup on every
/// log call cost a chunk compilation per HTTP request with `log_requests` on.
fn cached_function(lua: &Lua, key: &str, source: &str) -> LuaResult<LuaFunction> {
    if let Ok(f) = lua.named_registry_value::<LuaFunction>(key) {
        return Ok(f);
    }
    let f: LuaFunction = lua.load(source).eval()?;
    lua.set_named_registry_value(key, f.clone())?;
    Ok(f)
}

fn format_args(lua: &Lua, args: LuaMultiValue) -> LuaResult<String> {
    let mut it = args.into_iter();
    let Some(first) = it.next() else {
        return Ok(String::new());
    };
    let rest: Vec<LuaValue> = it.collect();
    match first {
        LuaValue::Table(_) if rest.is_empty() => {
            let encode = cached_function(lua, "node.log.json_encode", "return require('json').encode")?;
            encode.call(first)
        }
        LuaValue::String(fmt) if !rest.is_empty() => {
            let format = cached_function(lua, "node.log.string_format", "return string.format")?;
            let mut call_args = vec![LuaValue::String(fmt)];
            call_args.extend(rest);
            format.call(LuaMultiValue::from_iter(call_args))
        }
        other => Ok(crate::runtime::errors::describe(lua, &other)),
    }
}

/// Builds the `log` module table.
pub fn module(lua: &Lua) -> LuaResult<LuaTable> {
    let m = lua.create_table()?;
    for (name, level) in [
        ("error", Level::Error),
        ("warn", Level::Warn),
        ("info", Level::Info),
        ("verbose", Level::Verbose),
        ("debug", Level::Debug),
        ("crit", Level::Crit),
        ("syserror", Level::SysError),
    ] {
        m.set(
            name,
            lua.create_function(move |lua, args: LuaMultiValue| {
                if level > logger(lua).level() {
                    return Ok(());
                }
                let text = format_args(lua, args)?;
                write(lua, level, &text);
                Ok(())
            })?,
        )?;
    }
    m.set(
        "level",
        lua.create_function(|lua, level: Option<LuaValue>| {
            let logger = logger(lua);
            if let Some(v) = level {
                let l = Level::parse(&v).ok_or_else(|| LuaError::runtime("log.level(): bad level"))?;
                logger.set_level(l);
            }
            Ok(logger.level() as u8)
        })?,
    )?;
    m.set(
        "cfg",
        lua.create_function(|lua, opts: Option<LuaTable>| {
            let logger = logger(lua);
            if let Some(opts) = opts {
                for pair in opts.pairs::<String, LuaValue>() {
                    let (k, v) = pair?;
                    match k.as_str() {
                        "level" => {
                            let l = Level::parse(&v).ok_or_else(|| {
                                LuaError::runtime(
                                    "Incorrect value for option 'log_level': should be of type number or string",
                                )
                            })?;
                            logger.set_level(l);
                        }
                        "format" => match &v {
                            LuaValue::String(s) if s == "plain" => logger.set_format(Format::Plain),
                            LuaValue::String(s) if s == "json" => logger.set_format(Format::Json),
                            _ => return Err(LuaError::runtime("log.cfg: 'format' expected json,plain")),
                        },
                        "log" => {
                            let dest = match &v {
                                LuaValue::String(s) => Some(s.to_str()?.to_string()),
                                _ => None,
                            };
                            logger
                                .set_destination(dest.as_deref())
                                .map_err(|e| LuaError::runtime(format!("can't open log: {e}")))?;
                        }
                        // Tarantool ignores options it does not know.
                        _ => {}
                    }
                }
            }
            Ok(())
        })?,
    )?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_from_names_and_numbers() {
        assert_eq!(Level::parse(&LuaValue::Integer(7)), Some(Level::Debug));
        assert_eq!(Level::parse(&LuaValue::Integer(2)), Some(Level::Error));
        assert_eq!(Level::parse(&LuaValue::Boolean(true)), None);
    }

    #[test]
    fn timestamp_has_milliseconds() {
        let t = timestamp();
        assert_eq!(t.len(), "2026-11-27 22:35:35.661".len());
        assert_eq!(&t[19..20], ".");
    }
}
