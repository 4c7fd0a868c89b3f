local tap = require('tap')
local errno = require('errno')
local test = tap.test('errno')
test:plan(9)

test:is(errno.ENOENT, 2, 'ENOENT')
test:is(errno.EWOULDBLOCK, errno.EAGAIN, 'EWOULDBLOCK is EAGAIN')
test:is(errno.strerror(errno.ENOENT), 'No such file or directory', 'strerror')
test:is(errno.strerror(99999), 'Unknown error 99999', 'strerror of an unknown code')
local old = errno(errno.EEXIST)
test:is(type(old), 'number', 'errno(n) returns the old value')
test:is(errno(), errno.EEXIST, 'errno() returns the value just set')
test:is(errno.strerror(), 'File exists', 'strerror() describes the current errno')
test:is(select(2, pcall(errno.strerror, 'x')),
    "builtin/errno.lua:12: bad argument #1 to 'strerror' (cannot convert 'nil' to 'int')", 'bad strerror argument')
test:is(select(2, pcall(function() errno.EFOO = 1 end)),
    "builtin/errno.lua:19: Can't create new errno constants", 'constants are read-only')
os.exit(test:check() and 0 or 1)
