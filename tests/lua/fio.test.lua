local tap = require('tap')
local fio = require('fio')
local errno = require('errno')
local test = tap.test('fio')
test:plan(48)

-- Failures give nil/false and a SystemError whose text is 'fio: <strerror>'.
local function res(a, b)
    return { a, b and tostring(b) }
end
local tmp = fio.tempdir()
test:ok(fio.path.is_dir(tmp), 'tempdir makes a directory')

test:is(fio.pathjoin('/a/', '/b/', 'c'), '/a/b/c', 'pathjoin')
test:is(fio.pathjoin(), '.', 'pathjoin of nothing')
test:is(select(2, pcall(fio.pathjoin, 'a', nil, 'b')), 'builtin/fio.lua:261: fio.pathjoin(): undefined path part 2',
    'pathjoin with a hole')
test:is(fio.basename('/a/b.txt'), 'b.txt', 'basename')
test:is(fio.basename('/a/b.txt', '.txt'), 'b', 'basename with a suffix')
test:is(fio.dirname('/a/b.txt') .. ' ' .. fio.dirname('b') .. ' ' .. fio.dirname('/'), '/a . /', 'dirname')
test:is(fio.abspath('/a/../b/./c'), '/b/c', 'abspath')
test:is(select(2, pcall(fio.basename, 1)), 'builtin/fio.lua:282: Usage: fio.basename(path[, suffix])', 'basename usage')

test:ok(fio.mkdir(tmp .. '/d'), 'mkdir')
local ok, err = fio.mkdir(tmp .. '/d')
test:is_deeply({ ok, tostring(err), errno() }, { false, 'fio: File exists', errno.EEXIST }, 'mkdir of an existing dir')
test:ok(fio.mktree(tmp .. '/t/u/v') and fio.path.is_dir(tmp .. '/t/u/v'), 'mktree')
-- A directory another process creates between mktree's stat and its mkdir is no error.
do
    local real_stat = fio.stat
    fio.mkdir(tmp .. '/mktree_race')
    -- mktree's own stat sees nothing; the directory is there by its mkdir.
    local fooled = false
    fio.stat = function(p)
        if p == tmp .. '/mktree_race' and not fooled then fooled = true return nil end
        return real_stat(p)
    end
    local ok = fio.mktree(tmp .. '/mktree_race/x')
    fio.stat = real_stat
    test:ok(ok and fooled and fio.path.is_dir(tmp .. '/mktree_race/x'), 'mktree: a parent made meanwhile')
    fio.rmtree(tmp .. '/mktree_race')
end
test:is(tostring(select(2, fio.rmdir(tmp .. '/t'))), 'fio: Directory not empty', 'rmdir of a non-empty dir')

local f = fio.open(tmp .. '/f.txt', { 'O_RDWR', 'O_CREAT' }, tonumber('644', 8))
test:is(tostring(require('ffi').typeof(f)), 'ctype<struct fio_handle>', 'open gives a handle')
test:ok(f:write('hello world'), 'write')
test:is(f:seek(0), 0, 'seek')
test:is(f:read(5), 'hello', 'read(n)')
test:is(f:read(), ' world', 'read() reads the rest')
test:is(f:read(3), '', 'read at the end')
test:is(f:pread(5, 6), 'world', 'pread')
test:ok(f:pwrite('HELLO', 0), 'pwrite')
test:is(f:seek(0, 'SEEK_END'), 11, 'seek from the end')
test:ok(f:truncate(4), 'truncate')
test:is(f:stat().size, 4, 'handle stat')
test:ok(f:fsync() and f:fdatasync(), 'fsync and fdatasync')
test:ok(f:close(), 'close')
test:is_deeply(res(f:close()), { false, 'fio: Bad file descriptor' }, 'close twice')
test:is_deeply(res(f:read()), { nil, 'fio: Bad file descriptor' }, 'read after close')

local missing = tmp .. '/nope'
test:is_deeply(res(fio.open(missing)), { nil, 'fio: No such file or directory' }, 'open of a missing file')
test:is(errno(), errno.ENOENT, 'and errno is set')
local _, e = fio.open(missing)
test:is_deeply({ e.type, e.message, e.errno, e.code }, { 'SystemError', 'fio: No such file or directory', 2, nil }, 'the error is a SystemError with errno and no code')
test:is(select(2, pcall(fio.open, tmp .. '/f.txt', 'O_NOPE')), 'builtin/fio.lua:204: fio.open(): unknown flag: O_NOPE',
    'unknown flag')
test:is(select(2, pcall(fio.open)), 'builtin/fio.lua:189: Usage: fio.open(path[, flags[, mode]])', 'open usage')

local st = fio.stat(tmp .. '/f.txt')
test:ok(st.size == 4 and st:is_reg() and not st:is_dir() and type(st.mtime) == 'number', 'stat')
test:is(st.mode, tonumber('100644', 8), 'stat mode')
test:is_deeply(res(fio.stat(missing)), { nil, 'fio: No such file or directory' }, 'stat of a missing file')
test:ok(fio.symlink('f.txt', tmp .. '/l') and fio.lstat(tmp .. '/l'):is_link() and fio.path.is_link(tmp .. '/l'),
    'symlink and lstat')
test:is(fio.readlink(tmp .. '/l'), 'f.txt', 'readlink')
test:ok(fio.path.exists(tmp .. '/l') and fio.path.is_file(tmp .. '/l') and not fio.path.exists(missing),
    'path.exists and is_file')

test:ok(fio.copyfile(tmp .. '/f.txt', tmp .. '/g.txt') and fio.rename(tmp .. '/g.txt', tmp .. '/h.txt'),
    'copyfile and rename')
test:ok(fio.chmod(tmp .. '/h.txt', tonumber('600', 8)) and fio.stat(tmp .. '/h.txt').mode == tonumber('100600', 8),
    'chmod')
test:ok(fio.truncate(tmp .. '/h.txt', 2) and fio.stat(tmp .. '/h.txt').size == 2, 'truncate by path')
test:is_deeply(res(fio.unlink(missing)), { false, 'fio: No such file or directory' }, 'unlink of a missing file')

local list = fio.listdir(tmp)
table.sort(list)
test:is(table.concat(list, ','), 'd,f.txt,h.txt,l,t', 'listdir')
local g = fio.glob(tmp .. '/*.txt')
table.sort(g)
test:is_deeply(g, { tmp .. '/f.txt', tmp .. '/h.txt' }, 'glob')
test:is(fio.c.flag.O_CREAT + fio.c.seek.SEEK_END + fio.c.mode.S_IRUSR, 64 + 2 + 256, 'constants')

test:ok(fio.rmtree(tmp) and not fio.path.exists(tmp), 'rmtree removes everything')
os.exit(test:check() and 0 or 1)
