//! `fio`: Tarantool's file I/O module.
//!
//! Rust provides thin syscall wrappers (the `internal` table below); the Lua half gives
//! them Tarantool's shape: argument checks with its exact texts, `nil, err` / `false, err`
//! results with errno set, and file handles that are `struct fio_handle` cdata as in
//! Tarantool 2.6.
//!
//! Tarantool runs these calls in its thread pool (coio) so a slow disk stalls only the
//! calling fiber. Here they block the Lua thread for now: local file operations are short,
//! and moving them to `spawn_blocking` later changes no Lua-visible behaviour.

use std::ffi::{CStr, CString};
use std::io;

use mlua::prelude::*;

use super::errno;
use crate::runtime::errors::{BoxError, ErrorObject};

/// `nil, err` (or `false, err`) with errno set: how fio reports a failure. As in Tarantool,
/// `err` is a SystemError object whose message is `fio: <strerror>`.
fn fail<T>(lua: &Lua, e: io::Error, first: T) -> LuaResult<LuaMultiValue>
where
    T: IntoLua,
{
    let code = e.raw_os_error().unwrap_or(libc::EIO);
    let err = ErrorObject(BoxError::system(format!("fio: {}", errno::strerror(code)), code));
    let err = lua.create_userdata(err)?;
    // Set last: creating the userdata may allocate and clobber errno.
    errno::set(code);
    (first, err).into_lua_multi(lua)
}

/// Result of a libc call returning -1 on failure.
fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn cpath(p: &LuaString) -> io::Result<CString> {
    CString::new(p.as_bytes().to_vec()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Reports `true` or `false, err`.
fn done(lua: &Lua, r: io::Result<libc::c_int>) -> LuaResult<LuaMultiValue> {
    match r {
        Ok(_) => true.into_lua_multi(lua),
        Err(e) => fail(lua, e, false),
    }
}

fn timespec_secs(sec: i64, nsec: i64) -> f64 {
    sec as f64 + nsec as f64 / 1e9
}

fn stat_table(lua: &Lua, st: &libc::stat) -> LuaResult<LuaTable> {
    let t = lua.create_table()?;
    t.set("dev", st.st_dev as f64)?;
    t.set("inode", st.st_ino as f64)?;
    t.set("mode", st.st_mode)?;
    t.set("nlink", st.st_nlink as f64)?;
    t.set("uid", st.st_uid)?;
    t.set("gid", st.st_gid)?;
    t.set("rdev", st.st_rdev as f64)?;
    t.set("size", st.st_size as f64)?;
    t.set("blksize", st.st_blksize as f64)?;
    t.set("blocks", st.st_blocks as f64)?;
    t.set("atime", timespec_secs(st.st_atime, st.st_atime_nsec))?;
    t.set("mtime", timespec_secs(st.st_mtime, st.st_mtime_nsec))?;
    t.set("ctime", timespec_secs(st.st_ctime, st.st_ctime_nsec))?;
    Ok(t)
}

enum StatKind {
    Follow,
    NoFollow,
}

fn do_stat(lua: &Lua, path: &LuaString, kind: StatKind) -> LuaResult<LuaMultiValue> {
    let r = cpath(path).and_then(|p| {
        // Safety: an all-zero `stat` is a valid value; the path is NUL-terminated.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let rc = match kind {
            StatKind::Follow => unsafe { libc::stat(p.as_ptr(), &mut st) },
            StatKind::NoFollow => unsafe { libc::lstat(p.as_ptr(), &mut st) },
        };
        check(rc).map(|_| st)
    });
    match r {
        Ok(st) => stat_table(lua, &st)?.into_lua_multi(lua),
        Err(e) => fail(lua, e, LuaNil),
    }
}

/// Reads up to `size` bytes (or to end of file when `size` is None), retrying short reads.
fn read_fd(fd: i32, size: Option<usize>, mut offset: Option<i64>) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut chunk = vec![0u8; size.unwrap_or(64 * 1024).clamp(1, 1 << 20)];
    loop {
        let want = match size {
            Some(s) => (s - out.len()).min(chunk.len()),
            None => chunk.len(),
        };
        if want == 0 {
            break;
        }
        // Safety: `chunk` is writable for `want` <= its length bytes.
        let n = unsafe {
            match offset {
                Some(off) => libc::pread(fd, chunk.as_mut_ptr().cast(), want, off),
                None => libc::read(fd, chunk.as_mut_ptr().cast(), want),
            }
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n as usize]);
        if let Some(off) = offset.as_mut() {
            *off += n as i64;
        }
    }
    Ok(out)
}

fn write_fd(fd: i32, mut data: &[u8], mut offset: Option<i64>) -> io::Result<()> {
    while !data.is_empty() {
        // Safety: `data` is readable for its length.
        let n = unsafe {
            match offset {
                Some(off) => libc::pwrite(fd, data.as_ptr().cast(), data.len(), off),
                None => libc::write(fd, data.as_ptr().cast(), data.len()),
            }
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        data = &data[n as usize..];
        if let Some(off) = offset.as_mut() {
            *off += n as i64;
        }
    }
    Ok(())
}

fn listdir(path: &[u8]) -> io::Result<Vec<Vec<u8>>> {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut names = Vec::new();
    for entry in std::fs::read_dir(std::ffi::OsStr::from_bytes(path))? {
        names.push(entry?.file_name().into_vec());
    }
    Ok(names)
}

fn glob(pattern: &str) -> Vec<String> {
    // C glob semantics: `*` does not match a leading dot or a slash.
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    match glob::glob_with(pattern, opts) {
        Ok(paths) => paths
            .filter_map(Result::ok)
            .map(|p| p.to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn tempdir() -> io::Result<String> {
    let base = std::env::var("TMPDIR").ok().filter(|d| !d.is_empty());
    let template = format!("{}/XXXXXX", base.as_deref().unwrap_or("/tmp").trim_end_matches('/'));
    let mut buf = CString::new(template)
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?
        .into_bytes_with_nul();
    // Safety: `buf` is a writable NUL-terminated template ending in XXXXXX.
    let p = unsafe { libc::mkdtemp(buf.as_mut_ptr().cast()) };
    if p.is_null() {
        return Err(io::Error::last_os_error());
    }
    buf.pop();
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// glibc's dirname, without its habit of writing into the argument.
fn dirname(path: &[u8]) -> Vec<u8> {
    let mut buf = path.to_vec();
    buf.push(0);
    // Safety: `buf` is writable and NUL-terminated; the result points into it or to a
    // static string, and is copied before `buf` is dropped.
    unsafe {
        let p = libc::dirname(buf.as_mut_ptr().cast());
        CStr::from_ptr(p).to_bytes().to_vec()
    }
}

fn internal(lua: &Lua) -> LuaResult<LuaTable> {
    let t = lua.create_table()?;
    t.set(
        "open",
        lua.create_function(|lua, (path, flags, mode): (LuaString, i32, u32)| {
            let r = cpath(&path).and_then(|p| {
                // Safety: NUL-terminated path; open has no other memory arguments.
                check(unsafe { libc::open(p.as_ptr(), flags, mode as libc::c_uint) })
            });
            match r {
                Ok(fd) => fd.into_lua_multi(lua),
                Err(e) => fail(lua, e, LuaNil),
            }
        })?,
    )?;
    t.set(
        "close",
        lua.create_function(|lua, fd: i32| {
            // Safety: closing an arbitrary descriptor is memory-safe.
            done(lua, check(unsafe { libc::close(fd) }))
        })?,
    )?;
    t.set(
        "read",
        lua.create_function(|lua, (fd, size): (i32, Option<f64>)| {
            match read_fd(fd, size.map(|s| s.max(0.0) as usize), None) {
                Ok(data) => lua.create_string(data)?.into_lua_multi(lua),
                Err(e) => fail(lua, e, LuaNil),
            }
        })?,
    )?;
    t.set(
        "pread",
        lua.create_function(|lua, (fd, size, offset): (i32, f64, f64)| {
            match read_fd(fd, Some(size.max(0.0) as usize), Some(offset as i64)) {
                Ok(data) => lua.create_string(data)?.into_lua_multi(lua),
                Err(e) => fail(lua, e, LuaNil),
            }
        })?,
    )?;
    t.set(
        "write",
        lua.create_function(|lua, (fd, data): (i32, LuaString)| {
            done(lua, write_fd(fd, &data.as_bytes(), None).map(|_| 0))
        })?,
    )?;
    t.set(
        "pwrite",
        lua.create_function(|lua, (fd, data, offset): (i32, LuaString, f64)| {
            done(lua, write_fd(fd, &data.as_bytes(), Some(offset as i64)).map(|_| 0))
        })?,
    )?;
    t.set(
        "lseek",
        lua.create_function(|_, (fd, offset, whence): (i32, f64, i32)| {
            // Safety: lseek has no memory arguments.
            let r = unsafe { libc::lseek(fd, offset as libc::off_t, whence) };
            if r < 0 {
                errno::set_from(&io::Error::last_os_error());
            }
            Ok(r as f64)
        })?,
    )?;
    t.set(
        "ftruncate",
        lua.create_function(|lua, (fd, len): (i32, f64)| {
            // Safety: no memory arguments.
            done(lua, check(unsafe { libc::ftruncate(fd, len as libc::off_t) }))
        })?,
    )?;
    t.set(
        "fsync",
        lua.create_function(|lua, fd: i32| done(lua, check(unsafe { libc::fsync(fd) })))?,
    )?;
    t.set(
        "fdatasync",
        lua.create_function(|lua, fd: i32| done(lua, check(unsafe { libc::fdatasync(fd) })))?,
    )?;
    t.set(
        "fstat",
        lua.create_function(|lua, fd: i32| {
            // Safety: an all-zero `stat` is valid and writable.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            match check(unsafe { libc::fstat(fd, &mut st) }) {
                Ok(_) => stat_table(lua, &st)?.into_lua_multi(lua),
                Err(e) => fail(lua, e, LuaNil),
            }
        })?,
    )?;
    t.set(
        "stat",
        lua.create_function(|lua, p: LuaString| do_stat(lua, &p, StatKind::Follow))?,
    )?;
    t.set(
        "lstat",
        lua.create_function(|lua, p: LuaString| do_stat(lua, &p, StatKind::NoFollow))?,
    )?;
    t.set(
        "mkdir",
        lua.create_function(|lua, (p, mode): (LuaString, u32)| {
            let r = cpath(&p).and_then(|p| check(unsafe { libc::mkdir(p.as_ptr(), mode) }));
            done(lua, r)
        })?,
    )?;
    t.set(
        "rmdir",
        lua.create_function(|lua, p: LuaString| {
            done(lua, cpath(&p).and_then(|p| check(unsafe { libc::rmdir(p.as_ptr()) })))
        })?,
    )?;
    t.set(
        "unlink",
        lua.create_function(|lua, p: LuaString| {
            done(lua, cpath(&p).and_then(|p| check(unsafe { libc::unlink(p.as_ptr()) })))
        })?,
    )?;
    t.set(
        "rename",
        lua.create_function(|lua, (a, b): (LuaString, LuaString)| {
            let r = cpath(&a).and_then(|a| cpath(&b).map(|b| (a, b)));
            done(
                lua,
                r.and_then(|(a, b)| check(unsafe { libc::rename(a.as_ptr(), b.as_ptr()) })),
            )
        })?,
    )?;
    t.set(
        "symlink",
        lua.create_function(|lua, (a, b): (LuaString, LuaString)| {
            let r = cpath(&a).and_then(|a| cpath(&b).map(|b| (a, b)));
            done(
                lua,
                r.and_then(|(a, b)| check(unsafe { libc::symlink(a.as_ptr(), b.as_ptr()) })),
            )
        })?,
    )?;
    t.set(
        "link",
        lua.create_function(|lua, (a, b): (LuaString, LuaString)| {
            let r = cpath(&a).and_then(|a| cpath(&b).map(|b| (a, b)));
            done(
                lua,
                r.and_then(|(a, b)| check(unsafe { libc::link(a.as_ptr(), b.as_ptr()) })),
            )
        })?,
    )?;
    t.set(
        "readlink",
        lua.create_function(|lua, p: LuaString| {
            use std::os::unix::ffi::{OsStrExt, OsStringExt};
            match std::fs::read_link(std::ffi::OsStr::from_bytes(&p.as_bytes())) {
                Ok(target) => lua
                    .create_string(target.into_os_string().into_vec())?
                    .into_lua_multi(lua),
                Err(e) => fail(lua, e, LuaNil),
            }
        })?,
    )?;
    t.set(
        "chmod",
        lua.create_function(|lua, (p, mode): (LuaString, u32)| {
            done(
                lua,
                cpath(&p).and_then(|p| check(unsafe { libc::chmod(p.as_ptr(), mode) })),
            )
        })?,
    )?;
    t.set(
        "truncate",
        lua.create_function(|lua, (p, len): (LuaString, f64)| {
            let r = cpath(&p).and_then(|p| check(unsafe { libc::truncate(p.as_ptr(), len as libc::off_t) }));
            done(lua, r)
        })?,
    )?;
    t.set(
        "listdir",
        lua.create_function(|lua, p: LuaString| match listdir(&p.as_bytes()) {
            Ok(names) => {
                let t = lua.create_table_with_capacity(names.len(), 0)?;
                for (i, n) in names.into_iter().enumerate() {
                    t.raw_set(i + 1, lua.create_string(n)?)?;
                }
                t.into_lua_multi(lua)
            }
            Err(e) => fail(lua, e, LuaNil),
        })?,
    )?;
    t.set(
        "copyfile",
        lua.create_function(|lua, (a, b): (LuaString, LuaString)| {
            use std::os::unix::ffi::OsStrExt;
            let r = std::fs::copy(
                std::ffi::OsStr::from_bytes(&a.as_bytes()),
                std::ffi::OsStr::from_bytes(&b.as_bytes()),
            );
            done(lua, r.map(|_| 0))
        })?,
    )?;
    t.set("glob", lua.create_function(|_, p: String| Ok(glob(&p)))?)?;
    t.set(
        "tempdir",
        lua.create_function(|lua, ()| match tempdir() {
            Ok(d) => d.into_lua_multi(lua),
            Err(e) => fail(lua, e, LuaNil),
        })?,
    )?;
    t.set(
        "cwd",
        lua.create_function(|lua, ()| match std::env::current_dir() {
            Ok(d) => {
                use std::os::unix::ffi::OsStringExt;
                lua.create_string(d.into_os_string().into_vec())?.into_lua_multi(lua)
            }
            Err(e) => fail(lua, e, LuaNil),
        })?,
    )?;
    t.set(
        "chdir",
        lua.create_function(|_, p: LuaString| {
            let r = cpath(&p).and_then(|p| check(unsafe { libc::chdir(p.as_ptr()) }));
            if let Err(e) = &r {
                errno::set_from(e);
            }
            Ok(r.is_ok())
        })?,
    )?;
    t.set(
        "umask",
        lua.create_function(|_, mask: Option<u32>| {
            // Safety: umask has no memory arguments. Reading it means setting it twice.
            let old = unsafe { libc::umask(mask.unwrap_or(0) as libc::mode_t) };
            if mask.is_none() {
                unsafe { libc::umask(old) };
            }
            Ok(old)
        })?,
    )?;
    t.set(
        "sync",
        lua.create_function(|_, ()| {
            // Safety: no arguments.
            unsafe { libc::sync() };
            Ok(true)
        })?,
    )?;
    t.set(
        "dirname",
        lua.create_function(|lua, p: LuaString| lua.create_string(dirname(&p.as_bytes())))?,
    )?;
    Ok(t)
}

const FLAGS: &[(&str, i32)] = &[
    ("O_APPEND", libc::O_APPEND),
    ("O_ASYNC", libc::O_ASYNC),
    ("O_CLOEXEC", libc::O_CLOEXEC),
    ("O_CREAT", libc::O_CREAT),
    ("O_DIRECT", libc::O_DIRECT),
    ("O_DIRECTORY", libc::O_DIRECTORY),
    ("O_EXCL", libc::O_EXCL),
    // Tarantool reports 0: off_t is 64-bit everywhere it runs.
    ("O_LARGEFILE", 0),
    ("O_NDELAY", libc::O_NDELAY),
    ("O_NOATIME", libc::O_NOATIME),
    ("O_NOCTTY", libc::O_NOCTTY),
    ("O_NOFOLLOW", libc::O_NOFOLLOW),
    ("O_NONBLOCK", libc::O_NONBLOCK),
    ("O_PATH", libc::O_PATH),
    ("O_RDONLY", libc::O_RDONLY),
    ("O_RDWR", libc::O_RDWR),
    ("O_SYNC", libc::O_SYNC),
    ("O_TMPFILE", libc::O_TMPFILE),
    ("O_TRUNC", libc::O_TRUNC),
    ("O_WRONLY", libc::O_WRONLY),
];

const MODES: &[(&str, u32)] = &[
    ("S_IRGRP", libc::S_IRGRP),
    ("S_IROTH", libc::S_IROTH),
    ("S_IRUSR", libc::S_IRUSR),
    ("S_IRWXG", libc::S_IRWXG),
    ("S_IRWXO", libc::S_IRWXO),
    ("S_IRWXU", libc::S_IRWXU),
    ("S_IWGRP", libc::S_IWGRP),
    ("S_IWOTH", libc::S_IWOTH),
    ("S_IWUSR", libc::S_IWUSR),
    ("S_IXGRP", libc::S_IXGRP),
    ("S_IXOTH", libc::S_IXOTH),
    ("S_IXUSR", libc::S_IXUSR),
];

const SEEKS: &[(&str, i32)] = &[
    ("SEEK_SET", libc::SEEK_SET),
    ("SEEK_CUR", libc::SEEK_CUR),
    ("SEEK_END", libc::SEEK_END),
    ("SEEK_DATA", libc::SEEK_DATA),
    ("SEEK_HOLE", libc::SEEK_HOLE),
];

const FIO_LUA: &str = r#"
local internal, c = ...
local ffi = require('ffi')
local bit = require('bit')
local fio = { c = c }

local type, tostring, tonumber, error, select = type, tostring, tonumber, error, select
local format = string.format

-- C functions in Tarantool take numbers as paths too (lua_tostring).
local function pathlike(v)
    local t = type(v)
    if t == 'string' then
        return v
    elseif t == 'number' then
        return tostring(v)
    end
    return nil
end

local function usage(text)
    error(text, 0)
end

-- Stat objects: plain tables of fields plus is_* methods.
local S_IFMT = 0xF000
local stat_methods = {}
for name, bits in pairs({ is_reg = 0x8000, is_dir = 0x4000, is_chr = 0x2000, is_blk = 0x6000,
    is_fifo = 0x1000, is_link = 0xA000, is_sock = 0xC000 }) do
    stat_methods[name] = function(st)
        if type(st) ~= 'table' then
            usage('usage: stat:' .. name .. '()')
        end
        return bit.band(tonumber(st.mode) or 0, S_IFMT) == bits
    end
end
local stat_mt = { __index = stat_methods }

local function wrap_stat(st, err)
    if st == nil then
        return nil, err
    end
    return setmetatable(st, stat_mt)
end

fio.stat = function(path)
    local p = pathlike(path)
    if p == nil then
        usage('Usage: fio.stat(pathname)')
    end
    return wrap_stat(internal.stat(p))
end

fio.lstat = function(path)
    local p = pathlike(path)
    if p == nil then
        usage('pathname is absent')
    end
    return wrap_stat(internal.lstat(p))
end

-- File handles: `struct fio_handle` cdata, as in Tarantool 2.6.
pcall(ffi.cdef, 'struct fio_handle { int fh; };')
local handle_t = ffi.typeof('struct fio_handle')

local function buffer_error(v)
    usage("builtin/buffer.lua:124: attempt to perform arithmetic on 'char *' and '" .. type(v) .. "'")
end

local methods = {}

methods.read = function(self, size)
    if size ~= nil and type(size) ~= 'number' then
        buffer_error(size)
    end
    return internal.read(self.fh, size)
end

methods.write = function(self, data)
    return internal.write(self.fh, tostring(data))
end

methods.pread = function(self, size, offset)
    if type(size) ~= 'number' then
        buffer_error(size)
    end
    return internal.pread(self.fh, size, tonumber(offset) or 0)
end

methods.pwrite = function(self, data, offset)
    return internal.pwrite(self.fh, tostring(data), tonumber(offset) or 0)
end

methods.seek = function(self, offset, whence)
    if whence == nil then
        whence = c.seek.SEEK_SET
    elseif type(whence) == 'string' then
        local w = c.seek[whence]
        if w == nil then
            usage('builtin/fio.lua:136: fio.seek(): unknown whence: ' .. whence)
        end
        whence = w
    else
        whence = tonumber(whence) or 0
    end
    return internal.lseek(self.fh, tonumber(offset) or 0, whence)
end

methods.truncate = function(self, len)
    return internal.ftruncate(self.fh, tonumber(len) or 0)
end

methods.fsync = function(self)
    return internal.fsync(self.fh)
end

methods.fdatasync = function(self)
    return internal.fdatasync(self.fh)
end

methods.stat = function(self)
    return wrap_stat(internal.fstat(self.fh))
end

methods.close = function(self)
    local ok, err = internal.close(self.fh)
    -- Never close a descriptor number that may have been reused since.
    self.fh = -1
    return ok, err
end

ffi.metatype(handle_t, {
    __index = methods,
    __gc = function(self)
        if self.fh >= 0 then
            internal.close(self.fh)
        end
    end,
})

local function or_flags(list, names, what)
    local acc = 0
    for _, v in pairs(list) do
        if type(v) == 'number' then
            acc = bit.bor(acc, v)
        else
            local n = names[v]
            if n == nil then
                usage(format('builtin/fio.lua:%d: fio.open(): unknown %s: %s',
                    what == 'flag' and 204 or 213, what, tostring(v)))
            end
            acc = bit.bor(acc, n)
        end
    end
    return acc
end

fio.open = function(path, flags, mode)
    if type(path) ~= 'string' then
        usage('builtin/fio.lua:189: Usage: fio.open(path[, flags[, mode]])')
    end
    if flags == nil then
        flags = 0
    end
    if type(flags) ~= 'table' then
        flags = { flags }
    end
    -- Tarantool 2.6 passes mode 0 when none is given.
    if type(mode) ~= 'table' then
        mode = { mode or 0 }
    end
    local iflags = or_flags(flags, c.flag, 'flag')
    local imode = or_flags(mode, c.mode, 'mode')
    local fd, err = internal.open(path, iflags, imode)
    if fd == nil then
        return nil, err
    end
    return handle_t(fd)
end

local function join_parts(first_line, ...)
    local n = select('#', ...)
    local parts = {}
    for i = 1, n do
        local v = select(i, ...)
        if v == nil then
            usage(format('builtin/fio.lua:%d: fio.pathjoin(): undefined path part %d',
                #parts == 0 and first_line or 261, i))
        end
        v = tostring(v)
        if v ~= '' then
            parts[#parts + 1] = v
        end
    end
    if #parts == 0 then
        return '.'
    end
    local path = table.concat(parts, '/'):gsub('/+', '/')
    if path ~= '/' then
        path = path:gsub('/$', '')
    end
    return path
end

fio.pathjoin = function(...)
    return join_parts(241, ...)
end

fio.basename = function(path, suffix)
    if type(path) ~= 'string' then
        usage('builtin/fio.lua:282: Usage: fio.basename(path[, suffix])')
    end
    path = path:gsub('.*/', '')
    if suffix ~= nil then
        suffix = tostring(suffix)
        if #suffix > 0 then
            -- Tarantool brackets every character, so most of them match literally.
            path = path:gsub((suffix:gsub('(.)', '[%1]')), '')
        end
    end
    return path
end

fio.dirname = function(path)
    if type(path) ~= 'string' then
        usage('builtin/fio.lua:301: Usage: fio.dirname(path)')
    end
    return internal.dirname(path)
end

fio.cwd = internal.cwd

fio.abspath = function(path)
    if path == nil then
        usage('builtin/fio.lua:329: Usage: fio.abspath(path)')
    end
    path = tostring(path)
    local joined
    if path:sub(1, 1) == '/' then
        joined = path
    else
        joined = join_parts(241, fio.cwd(), path)
    end
    local parts = {}
    for part in joined:gmatch('[^/]+') do
        if part == '..' then
            parts[#parts] = nil
        elseif part ~= '.' then
            parts[#parts + 1] = part
        end
    end
    return '/' .. table.concat(parts, '/')
end

fio.chdir = function(path)
    if type(path) ~= 'string' then
        usage('builtin/fio.lua:351: Usage: fio.chdir(path)')
    end
    return internal.chdir(path)
end

fio.umask = function(mask)
    if mask == nil then
        return internal.umask()
    end
    return internal.umask(tonumber(mask) or 0)
end

fio.mkdir = function(path, mode)
    local p = pathlike(path)
    if p == nil then
        usage('Usage fio.mkdir(pathname[, mode])')
    end
    return internal.mkdir(p, tonumber(mode) or 511)
end

local function one_path(name, usage_text)
    fio[name] = function(path)
        local p = pathlike(path)
        if p == nil then
            usage(usage_text)
        end
        return internal[name](p)
    end
end
one_path('rmdir', 'Usage: fio.rmdir(pathname)')
one_path('unlink', 'Usage: fio.unlink(pathname)')
one_path('readlink', 'Usage: fio.readlink(pathname)')

local function two_paths(name, usage_text)
    fio[name] = function(a, b)
        local pa, pb = pathlike(a), pathlike(b)
        if pa == nil or pb == nil then
            usage(usage_text)
        end
        return internal[name](pa, pb)
    end
end
two_paths('rename', 'Usage: fio.rename(oldpath, newpath)')
two_paths('symlink', 'Usage: fio.symlink(target, linkpath)')
two_paths('link', 'Usage: fio.link(target, linkpath)')

fio.chmod = function(path, mode)
    local p = pathlike(path)
    if p == nil or tonumber(mode) == nil then
        usage('Usage: fio.chmod(pathname, mode)')
    end
    return internal.chmod(p, tonumber(mode))
end

fio.truncate = function(path, len)
    local p = pathlike(path)
    if p == nil then
        usage('Usage: fio.truncate(pathname[, newlen])')
    end
    return internal.truncate(p, tonumber(len) or 0)
end

fio.sync = internal.sync

fio.tempdir = function()
    return internal.tempdir()
end

fio.glob = function(pattern)
    local p = pathlike(pattern)
    if p == nil then
        usage('Usage: fio.glob(pattern)')
    end
    return internal.glob(p)
end

fio.listdir = function(path)
    if type(path) ~= 'string' then
        usage('builtin/fio.lua:358: Usage: fio.listdir(path)')
    end
    local list, err = internal.listdir(path)
    if list == nil then
        return nil, format("can't listdir %s: %s", path, tostring(err))
    end
    return list
end

fio.mktree = function(path, mode)
    if type(path) ~= 'string' then
        usage('builtin/fio.lua:377: Usage: fio.mktree(path[, mode])')
    end
    path = fio.abspath(path)
    local current = ''
    for dir in path:gmatch('[^/]+') do
        current = current .. '/' .. dir
        local st = fio.stat(current)
        if st == nil then
            local ok, err = fio.mkdir(current, mode)
            -- Another process may create it between the stat and the mkdir (several
            -- instances started together making their work dirs under one parent).
            if not ok and not fio.path.is_dir(current) then
                return false, format('Error creating directory %s: %s', current, tostring(err))
            end
        elseif not st:is_dir() then
            local e = require('errno')
            e(e.EEXIST)
            return false, format('Error creating directory %s: %s', current, e.strerror(e.EEXIST))
        end
    end
    return true
end

fio.rmtree = function(path)
    if type(path) ~= 'string' then
        usage('builtin/fio.lua:408: Usage: fio.rmtree(path)')
    end
    path = fio.abspath(path)
    local list, err = fio.listdir(path)
    if list == nil then
        return nil, err
    end
    for _, name in ipairs(list) do
        local child = path .. '/' .. name
        local st = fio.lstat(child)
        local ok
        if st ~= nil and st:is_dir() then
            ok, err = fio.rmtree(child)
        else
            ok, err = fio.unlink(child)
        end
        if not ok then
            return nil, err
        end
    end
    local ok
    ok, err = fio.rmdir(path)
    if not ok then
        return false, err
    end
    return true
end

fio.copyfile = function(from, to)
    if type(from) ~= 'string' or type(to) ~= 'string' then
        usage('builtin/fio.lua:438: Usage: fio.copyfile(from, to)')
    end
    local st = fio.stat(to)
    if st ~= nil and st:is_dir() then
        to = join_parts(241, to, fio.basename(from))
    end
    local ok, err = internal.copyfile(from, to)
    if not ok then
        return false, format('failed to copy %s to %s: %s', from, to, tostring(err))
    end
    return true
end

fio.copytree = function(from, to)
    if type(from) ~= 'string' or type(to) ~= 'string' then
        usage('Usage: fio.copytree(from, to)')
    end
    local st = fio.stat(from)
    if st == nil then
        return false, format('Directory %s does not exist', from)
    end
    if not st:is_dir() then
        return false, require('errno').strerror(require('errno').ENOTDIR)
    end
    local list, err = fio.listdir(from)
    if list == nil then
        return false, err
    end
    local ok
    ok, err = fio.mktree(to)
    if not ok then
        return false, err
    end
    for _, name in ipairs(list) do
        local src, dst = from .. '/' .. name, to .. '/' .. name
        local s = fio.lstat(src)
        if s ~= nil and s:is_dir() then
            ok, err = fio.copytree(src, dst)
        elseif s ~= nil and s:is_link() then
            local target
            target, err = fio.readlink(src)
            ok = target ~= nil and fio.symlink(target, dst)
        else
            ok, err = fio.copyfile(src, dst)
        end
        if not ok then
            return false, err
        end
    end
    return true
end

local function need_path(line, text, v)
    if pathlike(v) == nil then
        usage(format('builtin/fio.lua:%d: %s', line, text))
    end
end

fio.path = {
    is_file = function(p)
        need_path(525, 'Usage: fio.stat(pathname)', p)
        local st = fio.stat(p)
        return st ~= nil and st:is_reg()
    end,
    is_link = function(p)
        need_path(530, 'pathname is absent', p)
        local st = fio.lstat(p)
        return st ~= nil and st:is_link()
    end,
    is_dir = function(p)
        need_path(535, 'Usage: fio.stat(pathname)', p)
        local st = fio.stat(p)
        return st ~= nil and st:is_dir()
    end,
    exists = function(p)
        need_path(540, 'Usage: fio.stat(pathname)', p)
        return fio.stat(p) ~= nil
    end,
    lexists = function(p)
        need_path(544, 'pathname is absent', p)
        return fio.lstat(p) ~= nil
    end,
}

return fio
"#;

pub fn module(lua: &Lua) -> LuaResult<LuaTable> {
    let c = lua.create_table()?;
    let flag = lua.create_table()?;
    for &(k, v) in FLAGS {
        flag.set(k, v)?;
    }
    let mode = lua.create_table()?;
    for &(k, v) in MODES {
        mode.set(k, v)?;
    }
    let seek = lua.create_table()?;
    for &(k, v) in SEEKS {
        seek.set(k, v)?;
    }
    c.set("flag", flag)?;
    c.set("mode", mode)?;
    c.set("seek", seek)?;
    lua.load(FIO_LUA).set_name("=builtin/fio.lua").call((internal(lua)?, c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirname_is_glibcs() {
        for (p, d) in [
            ("/a/b.txt", "/a"),
            ("b", "."),
            ("/", "/"),
            ("/a/b/", "/a"),
            ("", "."),
            ("a//b//", "a"),
            ("//a", "//"),
        ] {
            assert_eq!(dirname(p.as_bytes()), d.as_bytes(), "dirname({p})");
        }
    }

    #[test]
    fn glob_skips_dot_files() {
        let dir = match tempdir() {
            Ok(d) => d,
            Err(e) => panic!("tempdir: {e}"),
        };
        for name in ["a.txt", ".hidden", "b.txt"] {
            std::fs::write(format!("{dir}/{name}"), b"x").expect("write");
        }
        let mut found = glob(&format!("{dir}/*"));
        found.sort();
        assert_eq!(found, vec![format!("{dir}/a.txt"), format!("{dir}/b.txt")]);
        assert!(glob(&format!("{dir}/[")).is_empty());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn read_and_write_round_trip() {
        let dir = tempdir().expect("tempdir");
        let path = CString::new(format!("{dir}/f")).expect("path");
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CREAT, 0o644) };
        assert!(fd >= 0);
        write_fd(fd, b"hello world", None).expect("write");
        assert_eq!(read_fd(fd, Some(5), Some(6)).expect("pread"), b"world");
        unsafe { libc::lseek(fd, 0, libc::SEEK_SET) };
        assert_eq!(read_fd(fd, None, None).expect("read"), b"hello world");
        unsafe { libc::close(fd) };
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
