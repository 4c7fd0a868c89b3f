-- The console, as Tarantool 2.6's console.lua behaves: the local read-eval-print loop, the
-- text console a server offers with `console.listen(uri)`, and `console.connect(uri)`,
-- which sends what the local console reads to such a server.
--
-- Every console is an object kept in its fiber's `storage.console` (so `console.delimiter()`
-- and `\set` act on the console that runs them) with Tarantool's fields: `running`,
-- `delimiter`, `prompt`, `output`, and `remote` while connected.
--
-- The local console reads until a chunk is complete (a chunk that fails to compile only
-- because input ended continues on the next line), tries `return <chunk>` first, and
-- prints one YAML document per evaluation. A server console does no such gathering: each
-- line up to the delimiter is one chunk. That is why a connecting console first sets the
-- server's delimiter to `$EOF$` and ends each chunk it sends with `$EOF$\n`, so a
-- multi-line chunk travels whole; the reply ends with YAML's `\n...\n` (or `;` in Lua
-- output mode), which is how the client knows it has all of it.
local read_line, write, yaml_format, NULL, internal = ...

local load, pcall, select, type, tostring = load, pcall, select, type, tostring

local M = {}
-- What `require('console')` returns (besides `start`, which is Rust's).
local api = {}
M.api = api

local HELP = [[
node's console runs Lua with Tarantool's API (box, fiber, swim, net.box, ...).
An expression prints its value; a statement prints nothing; errors print as error:.

Available backslash commands:

  \set language <language>   -- set language (lua or sql)
  \set output <format>       -- set output format (lua[,line|block] or yaml)
  \set delimiter <delimiter> -- set expression delimiter
  \help                      -- show this screen
  \quit                      -- quit interactive console
]]

-- What ends a reply in each output format (Tarantool relies on `;` never ending a Lua
-- value inside a reply, as its server never puts one there).
local EOS = { yaml = '\n...\n', lua = ';' }

-- The delimiter a connecting console installs on the server; `\set delimiter` is refused
-- there, since the client would no longer find the ends of its chunks.
local REMOTE_DELIMITER = '$EOF$'

-- A greeting is two 64-byte lines, as for the binary protocol.
local GREETING_SIZE = 128

-- Tarantool's net.box default connect timeout, in seconds.
local CONNECT_TIMEOUT = 10

local function pack(...)
    return { n = select('#', ...), ... }
end

local function words(text)
    local list = {}
    for w in text:gmatch('%S+') do list[#list + 1] = w end
    return list
end

local function current()
    return require('fiber').self().storage.console
end

-- {{{ Output formats

-- Output of consoles started from now on; `\set output` changes one console's.
local default_output = { fmt = 'yaml' }

-- `\set output` accepts `yaml`, `lua`, `lua,line`, `lua,block`. Returns an error text, or
-- nil, the format and its option.
local function parse_output(value)
    if not value then
        return 'Specify output format: lua or yaml.'
    end
    local fmt, opts = value:match('([^,]+),([^,]+)')
    if fmt == nil then fmt = value end
    if fmt ~= 'lua' and fmt ~= 'yaml' then
        return ('Invalid format "%s", supported languages: lua and yaml.'):format(value)
    end
    if fmt == 'lua' and opts ~= nil and opts ~= 'line' and opts ~= 'block' then
        return ('Wrong option "%s", expecting: line or block.'):format(opts)
    end
    return nil, fmt, opts
end

-- The stored form: YAML has no option, Lua is `line` unless `block` was asked for.
local function output_of(fmt, opts)
    if fmt == 'yaml' then return { fmt = 'yaml' } end
    return { fmt = 'lua', opts = opts == 'block' and 'block' or 'line' }
end

-- The command that gives a server console this output format.
local function output_command(output)
    if output.opts then
        return ('\\set output %s,%s'):format(output.fmt, output.opts)
    end
    return '\\set output ' .. output.fmt
end

-- One reply: `ok` and the values, or false and the error, in the console's format.
local function format(self, ok, ...)
    local output = self and self.output or default_output
    if output.fmt == 'lua' then
        if ok then return internal.format_lua(pack(...), output.opts == 'block') end
        local err = ...
        if err == nil then err = NULL end
        return internal.format_lua({ n = 1, { error = err } }, output.opts == 'block')
    end
    if ok then return yaml_format(pack(...)) end
    local err = ...
    -- `error()` raises nil; Tarantool prints it as `- error: null`.
    if err == nil then err = NULL end
    return yaml_format({ n = 1, { error = err } })
end

-- }}}

-- {{{ Backslash commands

local function help(self)
    return format(self, true, { HELP })
end

local function set_output(self, value)
    local err, fmt, opts = parse_output(value)
    if err then error(err, 0) end
    self.output = output_of(fmt, opts)
    return true
end

local function set_delimiter(self, value)
    if self.delimiter == REMOTE_DELIMITER then
        error('Can not install delimiter for net box sessions', 0)
    end
    self.delimiter = value or ''
end

local function set_language(self, value)
    if value == nil then
        return { language = self.language or 'lua' }
    end
    if value ~= 'lua' and value ~= 'sql' then
        error(('Invalid language "%s", supported languages: lua and sql.'):format(value), 0)
    end
    self.language = value
    return true
end

local PARAMETERS = {
    language = set_language, lang = set_language, l = set_language,
    output = set_output, o = set_output,
    delimiter = set_delimiter, delim = set_delimiter, d = set_delimiter,
}

local function set(self, _, param, value)
    if param == nil then
        return format(self, false, 'Invalid set syntax, type \\help for help')
    end
    local handler = PARAMETERS[param]
    if handler == nil then
        return format(self, false, 'Unknown parameter: ' .. param)
    end
    return format(self, pcall(handler, self, value))
end

-- Returns nothing: the console stops after this line.
local function quit(self)
    self.running = false
    self.quit = true
end

local COMMANDS = { help = help, h = help, set = set, s = set, quit = quit, q = quit }

-- `text` is the line without its backslash. Returns the reply, or nil after `\quit`.
local function command(self, text)
    local items = words(text)
    if #items == 0 then
        return help(self)
    end
    local run = COMMANDS[items[1]]
    if run == nil then
        return format(self, false, ('Invalid command \\%s. Type \\help for help.'):format(text))
    end
    return run(self, unpack(items))
end

-- }}}

-- {{{ Evaluation

-- One chunk, as Tarantool's local_eval: a command, or `return <chunk>`, or the chunk
-- itself; a chunk that does not compile prints the second compiler error. Returns the
-- reply, or nil when the console is to stop.
local function eval_chunk(self, chunk)
    if chunk == nil then
        return nil
    end
    if chunk:sub(1, 1) == '\\' then
        return command(self, chunk:sub(2))
    end
    -- Tarantool has a global `help`; node answers the bare word the same way.
    if chunk:match('^%s*help%s*$') then
        return help(self)
    end
    if self and self.language == 'sql' then
        return format(self, pcall(box.execute, chunk))
    end
    local fn, err = load('return ' .. chunk)
    if fn == nil then
        fn, err = load(chunk)
        if fn == nil then
            return format(self, false, err)
        end
    end
    return format(self, pcall(fn))
end

-- False only for a chunk that fails to compile because input ended too early; `(42\n)`
-- gives that error as a statement but compiles as an expression.
local function is_complete(chunk)
    local fn, err = load(chunk)
    if fn ~= nil or not err:find(" near '<eof>'$") then
        return true
    end
    return load('return ' .. chunk) ~= nil
end

-- Settings of `console.eval` called outside any console.
local detached = { delimiter = '', output = { fmt = 'yaml' } }

-- `console.eval(line)`: what the console running in this fiber would answer.
function api.eval(line)
    return eval_chunk(current() or detached, line)
end
M.eval = api.eval

-- }}}

-- {{{ The console object

local Console = {}
Console.__index = Console

local function new_console(fields)
    local self = setmetatable(fields, Console)
    self.running = true
    self.delimiter = self.delimiter or ''
    self.output = output_of(default_output.fmt, default_output.opts)
    return self
end

-- Connected, the remote server answers; `nil` (end of input) ends the connection too.
function Console:eval(chunk)
    if self.remote then
        return self:remote_eval(chunk)
    end
    return eval_chunk(self, chunk)
end

-- Hooks that tarantoolctl-like scripts set for local consoles.
local hooks = {}

local function check_hook(what, f)
    if f ~= nil and type(f) ~= 'function' then
        error(('Wrong type of %s hook: %s'):format(what, type(f)), 0)
    end
end

function api.on_start(f)
    check_hook('on_start', f)
    hooks.on_start = f
end

function api.on_client_disconnect(f)
    check_hook('on_client_disconnect', f)
    hooks.on_client_disconnect = f
end

-- Tab completion is always on in node; kept for scripts that call it.
function api.ac(yes_no)
    local self = current()
    if self == nil then error('console.ac(): need existing console', 0) end
    self.ac = not not yes_no
end

function api.delimiter(delim)
    local self = current()
    if self == nil then
        error('console.delimiter(): need existing console', 0)
    end
    if delim == nil then
        return self.delimiter
    elseif type(delim) == 'string' then
        self.delimiter = delim
    else
        error('invalid delimiter', 0)
    end
end

function api.set_default_output(value)
    if value == nil then error('Nil output value passed', 0) end
    local err, fmt, opts = parse_output(value)
    if err then error(err, 0) end
    default_output = { fmt = fmt, opts = opts }
end

function api.get_default_output(...)
    if ... ~= nil then error('Arguments provided while prohibited', 0) end
    return default_output
end

local function repl(self)
    local storage = require('fiber').self().storage
    local outer = storage.console
    storage.console = self
    local ok, err = pcall(function()
        if type(self.on_start) == 'function' then self:on_start() end
        while self.running do
            self:print(self:eval(self:read()))
        end
    end)
    storage.console = outer
    if not ok then error(err, 0) end
end

-- }}}

-- {{{ The local console

-- Reads one chunk: lines until the chunk is complete (or ends with the delimiter, when
-- one is set); a backslash command is one line.
local function local_read(self)
    local buf, prompt = '', self.prompt
    while true do
        local line = read_line(prompt .. '> ')
        if line == nil then
            return nil
        end
        buf = buf .. line
        if buf:sub(1, 1) == '\\' then
            break
        end
        local delim = self.delimiter
        if delim == '' then
            if self.language == 'sql' or is_complete(buf) then break end
        elseif #buf >= #delim and buf:sub(-#delim) == delim then
            buf = buf:sub(1, -#delim - 1)
            break
        end
        buf = buf .. '\n'
        -- The continuation prompt: spaces as wide as the prompt word, then '> '.
        prompt = string.rep(' ', #self.prompt)
    end
    return buf
end

-- A reply already ends with a newline; this one leaves the empty line Tarantool prints.
local function local_print(self, output)
    if output == nil then
        self.running = false
        return
    end
    write(output .. '\n')
end

local started = false

-- Runs the local console in the calling fiber until its input ends or `\quit`.
-- `prompt` is the prompt word ('node'). With `opts.connect`, the console connects there
-- first and stops when the connection ends. Returns the connection error, if any, and
-- whether the console ended with `\quit`.
function M.start(prompt, opts)
    if started then
        error('console is already started', 0)
    end
    opts = opts or {}
    local self = new_console({
        prompt = prompt,
        local_prompt = prompt,
        read = local_read,
        print = local_print,
        on_start = hooks.on_start,
        on_client_disconnect = hooks.on_client_disconnect,
    })
    local failure
    if opts.connect then
        self.on_start = function(console)
            local ok, err = pcall(api.connect, opts.connect)
            if not ok then
                failure = M.last_connect_error or tostring(err)
                console.running = false
            end
        end
        self.on_client_disconnect = function(console) console.running = false end
    end
    started = true
    -- The console is the process's own session, of type 'repl'.
    internal.repl_session(true)
    local ok, err = pcall(repl, self)
    internal.repl_session(false)
    started = false
    if self.remote then self.remote.socket:close() end
    if not ok then error(err, 0) end
    return failure, self.quit == true
end

-- }}}

-- {{{ The remote console: client side

-- Tarantool's URI forms: `port`, `host:port`, `[ipv6]:port`, `unix/:/path`, `/path`, each
-- optionally after `login[:password]@` and `scheme://`. Returns {host, service, login,
-- password} or nil; host is nil for a bare port.
local function parse_uri(text)
    local rest = text:gsub('^%a[%w+.-]*://', '', 1)
    local u = {}
    local userinfo, after = rest:match('^([^@/]*)@(.*)$')
    if userinfo then
        u.login, u.password = userinfo:match('^([^:]*):(.*)$')
        if u.login == nil then u.login = userinfo end
        rest = after
    end
    if rest == '' then return nil end
    local path = rest:match('^unix/:(.+)$')
    if path then
        u.host, u.service = 'unix/', path
    elseif rest:sub(1, 1) == '/' then
        u.host, u.service = 'unix/', rest
    elseif rest:match('^%d+$') and userinfo == nil then
        u.service = rest
    else
        -- Tarantool's parser takes host and service names of these characters only.
        local host, port = rest:match('^%[([%x:.]+)%]:?(.*)$')
        if host == nil then
            host, port = rest:match('^([%w._~%%!$&\'()*+,;=-]+):?([^:]*)$')
        end
        if host == nil then return nil end
        if port ~= '' and not port:match('^[%w._~-]+$') then return nil end
        u.host = host
        if port ~= '' then u.service = port end
    end
    return u
end
M.parse_uri = parse_uri

local Remote = {}
Remote.__index = Remote

-- Reads one reply, up to the end marker of the output format; nil at EOF or on error.
function Remote:read()
    local reply = self.socket:read(self.eos)
    if reply and reply ~= '' then return reply end
end

function Remote:set_error()
    self.state = 'error'
    self.error = self.socket:error() or 'Peer closed'
    return self.error
end

-- Sends one chunk and returns the reply; raises once the connection is broken.
function Remote:eval(text)
    -- `\set output X` changes what ends the replies; follow it before sending.
    if text:sub(1, 1) == '\\' then
        local items = words(text:sub(2))
        if #items == 3 and COMMANDS[items[1]] == set and PARAMETERS[items[2]] == set_output then
            local err, fmt = parse_output(items[3])
            if not err then
                self.fmt, self.eos = fmt, EOS[fmt]
            end
        end
    end
    if not self.socket:write(text .. REMOTE_DELIMITER .. '\n') then
        error(self:set_error(), 0)
    end
    while true do
        local reply = self:read()
        if reply == nil then break end
        -- A push (box.session.push) comes before the reply, tagged; print it and go on.
        local pushed
        if self.fmt == 'yaml' then
            pushed = reply:find('^%%TAG !push! ') ~= nil
        else
            pushed = reply:sub(1, 7) == '-- Push'
        end
        if not pushed then return reply end
        self.print_f(reply)
    end
    error(self:set_error(), 0)
end

-- Connects and reads the greeting; returns the socket and the protocol, or nil and why.
local function establish(host, port, timeout)
    local socket, errno = require('socket'), require('errno')
    local clock = require('fiber').clock
    local started_at = clock()
    local s = socket.tcp_connect(host, port, timeout)
    if s == nil then
        return nil, errno.strerror()
    end
    local greeting = s:read({ chunk = GREETING_SIZE }, timeout - (clock() - started_at))
    if greeting == nil then
        local err = s:error() or 'Peer closed'
        s:close()
        return nil, err
    end
    local protocol, err = internal.decode_greeting(greeting)
    if protocol == nil then
        s:close()
        return nil, err
    end
    return s, protocol
end

-- `console.connect(uri[, {timeout}])`: from now on the console running in this fiber
-- sends what it reads to the server at `uri`. Login and password are accepted and, as in
-- Tarantool, not used by a text console.
function api.connect(uri, opts)
    opts = opts or {}
    local self = current()
    if self == nil then
        error('console.connect() need existing console', 0)
    end
    local u = uri ~= nil and parse_uri(tostring(uri)) or nil
    if u == nil or u.service == nil then
        error('Usage: console.connect("[login:password@][host:]port")', 0)
    end
    M.last_connect_error = nil
    local s, protocol = establish(u.host, u.service, opts.timeout or CONNECT_TIMEOUT)
    if s == nil then
        require('log').verbose(protocol)
        M.last_connect_error = ("can't connect to %s: %s"):format(uri, protocol)
        box.error(box.error.NO_CONNECTION)
    end
    if protocol ~= 'Lua console' then
        s:close()
        M.last_connect_error = ("can't connect to %s: it speaks the %s protocol, node's console"
            .. " speaks only the text one (console.listen)"):format(uri, protocol)
        error(M.last_connect_error, 0)
    end
    local remote = setmetatable({
        socket = s,
        state = 'active',
        host = u.host or 'localhost',
        port = u.service,
        fmt = self.output.fmt,
        eos = EOS[self.output.fmt],
        print_f = function(text) self:print(text) end,
    }, Remote)
    -- The server answers in this console's format and takes whole chunks ending with
    -- $EOF$ from now on.
    if not s:write(output_command(self.output) .. '\n') or not remote:read() then
        remote:set_error()
    end
    if not s:write('require("console").delimiter("' .. REMOTE_DELIMITER .. '")\n') or not remote:read() then
        remote:set_error()
    end
    local ok, err = pcall(remote.eval, remote, 'return true')
    if not ok then
        s:close()
        if type(self.on_client_disconnect) == 'function' then pcall(self.on_client_disconnect, self) end
        M.last_connect_error = ("can't connect to %s: %s"):format(uri, tostring(err))
        error(err, 0)
    end
    self.remote = remote
    self.prompt = ('%s:%s'):format(remote.host, remote.port)
    require('log').info('connected to %s:%s', remote.host, remote.port)
    return true
end

-- Evaluates on the server; when the connection is gone, back to local evaluation with
-- the error printed (end of input just disconnects).
function Console:remote_eval(chunk)
    local remote = self.remote
    if chunk ~= nil and remote.state == 'active' then
        local ok, reply = pcall(remote.eval, remote, chunk)
        if remote.state == 'active' then
            if ok then return reply end
            return format(self, false, reply)
        end
    end
    local err = remote.error
    remote.socket:close()
    self.remote = nil
    self.prompt = self.local_prompt
    if type(self.on_client_disconnect) == 'function' then
        pcall(self.on_client_disconnect, self)
    end
    if err then return format(self, false, err) end
    return ''
end

-- }}}

-- {{{ The remote console: server side

-- Reads one chunk: up to the delimiter and a newline (or a carriage return: clients may
-- send either); nil at EOF, or on `~.` (closes the connection, as in ssh).
local function client_read(self)
    local delim = self.delimiter
    local buf = self.client:read({ delimiter = { delim .. '\n', delim .. '\r' } })
    if buf == nil or buf == '' or buf == '~.\n' then
        return nil
    end
    return buf:sub(1, -#delim - 2)
end

local function client_print(self, output)
    if output == nil then
        self.running = false
        return
    end
    self.client:write(output)
end

-- `box.session.peer()` as Tarantool writes addresses.
local function peer_text(from)
    if type(from) ~= 'table' then return nil end
    if from.family == 'AF_UNIX' then
        local path = from.port
        if path == nil or path == '' then path = '(socket)' end
        return 'unix/:' .. tostring(path)
    elseif from.family == 'AF_INET6' then
        return ('[%s]:%s'):format(tostring(from.host), tostring(from.port))
    end
    return ('%s:%s'):format(tostring(from.host), tostring(from.port))
end

-- Serves one connection in its own fiber and session; the socket is closed by tcp_server
-- when this returns.
local function serve(client, from)
    local session_id = internal.session_open(peer_text(from))
    local self = new_console({
        client = client,
        read = client_read,
        print = client_print,
    })
    -- box.session's triggers run for console sessions too; a failing on_connect or
    -- on_auth trigger closes the connection before the greeting, as in Tarantool.
    local triggers = rawget(box, 'session') and rawget(box.session, 'internal_triggers') or {}
    local function run_triggers(list, ...)
        for _, f in ipairs(list or {}) do f(...) end
    end
    local ok, err = pcall(function()
        run_triggers(triggers.on_connect)
        run_triggers(triggers.on_auth, box.session.user(), true)
        if client:write(internal.greeting) then
            repl(self)
        end
    end)
    local done, trigger_err = pcall(run_triggers, triggers.on_disconnect)
    if not done then
        require('log').error('console: on_disconnect: %s', tostring(trigger_err))
    end
    internal.session_close()
    -- box.session.storage of this session goes with it.
    local storage = rawget(box, 'session') and rawget(box.session, 'internal_storage')
    if storage then storage[session_id] = nil end
    if not ok then
        require('log').error('console: %s', tostring(err))
    end
end

-- `console.listen(uri)`: serves the text console at `uri` (a port, `host:port`,
-- `unix/:/path`; a unix socket at /tmp/tarantool-console.sock without one). Returns the
-- listening socket.
function api.listen(uri)
    local host, port
    if uri == nil then
        host, port = 'unix/', '/tmp/tarantool-console.sock'
    else
        local u = parse_uri(tostring(uri))
        if u == nil or u.service == nil then
            error('Usage: console.listen("[host:]port")', 0)
        end
        host, port = u.host, u.service
    end
    local server = require('socket').tcp_server(host, port, { handler = serve, name = 'console' })
    if not server then
        error(('failed to create server %s:%s: %s'):format(tostring(host), port, require('errno').strerror()), 0)
    end
    return server
end

-- }}}

-- {{{ Tab completion: the candidates that complete the last name in `text`

local function keys_of(value, want_methods, seen, out, prefix, base)
    local t = type(value)
    if t == 'table' then
        for k, v in pairs(value) do
            if type(k) == 'string' and k:sub(1, #prefix) == prefix then
                if not want_methods or type(v) == 'function' then
                    out[base .. k] = true
                end
            end
        end
    end
    local mt = (t == 'table' or t == 'userdata' or t == 'cdata') and getmetatable(value) or nil
    if type(mt) == 'table' and not seen[mt] then
        seen[mt] = true
        local index = rawget(mt, '__index')
        if type(index) == 'table' then
            keys_of(index, want_methods, seen, out, prefix, base)
        end
        local names = rawget(mt, '__node_names')
        if type(names) == 'table' then
            for _, k in ipairs(names) do
                if k:sub(1, #prefix) == prefix then out[base .. k] = true end
            end
        end
    end
end

function M.complete(text)
    -- Connected, names are the server's: nothing to offer from here.
    local self = current()
    if self and self.remote then
        return #text, {}
    end
    local word = text:match('[%w_%.:]*$') or ''
    local start = #text - #word
    local path, sep, prefix = word:match('^(.*)([%.:])([%w_]*)$')
    local value, base, want_methods
    if path == nil then
        value, base, prefix = _G, '', word
    else
        value = _G
        for name in path:gmatch('[^%.:]+') do
            local ok, v = pcall(function() return value[name] end)
            if not ok or v == nil then return start, {} end
            value = v
        end
        base = path .. sep
        want_methods = sep == ':'
    end
    local found = {}
    keys_of(value, want_methods, {}, found, prefix, base)
    local list = {}
    for k in pairs(found) do list[#list + 1] = k end
    table.sort(list)
    return start, list
end

-- }}}

return M
