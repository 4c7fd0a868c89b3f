-- A console connected to arg[1] that stops when the connection ends, as `tarantoolctl
-- connect` and `node --connect` do. Run by Tarantool for the golden files, and by both
-- against both servers in the tests.
local console = require('console')
console.on_start(function(self)
    local ok, err = pcall(console.connect, arg[1])
    if not ok then
        print(err)
        self.running = false
    end
end)
console.on_client_disconnect(function(self) self.running = false end)
console.start()
os.exit(0)
