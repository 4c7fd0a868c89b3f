-- Sends a file's bytes to a text console in one go, closes the sending side and writes
-- everything the server sent back (greeting included) until it closed the connection.
-- Usage: tarantool console_remote_raw.lua HOST PORT INPUT OUTPUT
local socket, fio = require('socket'), require('fio')
local host, port, input, output = arg[1], arg[2], arg[3], arg[4]
local s = assert(socket.tcp_connect(host, port, 10))
local f = assert(fio.open(input))
local data = f:read()
f:close()
assert(s:write(data))
s:shutdown(1) -- SHUT_WR
-- read(size) hands out what has arrived once the buffer has something; loop to EOF.
local parts = {}
while true do
    local chunk = assert(s:read(1000000, 10))
    if chunk == '' then break end
    parts[#parts + 1] = chunk
end
local reply = table.concat(parts)
s:close()
f = assert(fio.open(output, {'O_WRONLY', 'O_CREAT', 'O_TRUNC'}, tonumber('644', 8)))
f:write(reply)
f:close()
os.exit(0)
