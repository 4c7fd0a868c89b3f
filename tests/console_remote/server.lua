-- The server of tests/console_remote: a text console at arg[1]. Run by real Tarantool to
-- make the golden files (scripts/golden/console_remote.sh) and by node in the tests.
require('console').listen(arg[1])
