-- http.server: the Lua half of node's HTTP server (tarantool/http 1.9.0's API, spec/http.md).
--
-- Routing, request and response objects, hooks and error pages live here, as tarantool/http
-- keeps them in Lua; `internal` (src/modules/http/server.rs) owns the socket, hyper's
-- HTTP/1.1 parsing, keep-alive and the header/body limits, and calls `handle` in a new
-- fiber for every request.
local internal = ...
local json = require('json')
local log = require('log')

local M = {}

local function errorf(fmt, ...)
    error(string.format(fmt, ...), 2)
end

-- URL codec -------------------------------------------------------------------------------

local function uri_unescape(s, plus_is_space)
    if plus_is_space then
        s = s:gsub('+', ' ')
    end
    return (s:gsub('%%(%x%x)', function(h) return string.char(tonumber(h, 16)) end))
end

local function uri_escape(s)
    return (tostring(s):gsub('[^%w%-%._~]', function(c) return string.format('%%%02X', c:byte()) end))
end

local function parse_query(s)
    local res = {}
    if s == nil or s == '' then
        return res
    end
    for pair in s:gmatch('[^&;]+') do
        local k, v = pair:match('^([^=]*)=(.*)$')
        if k == nil then
            k, v = pair, ''
        end
        k = uri_unescape(k, true)
        v = uri_unescape(v, true)
        local prev = res[k]
        if prev == nil then
            res[k] = v
        elseif type(prev) == 'table' then
            table.insert(prev, v)
        else
            res[k] = { prev, v }
        end
    end
    return res
end

local function encode_query(q)
    if type(q) ~= 'table' then
        return tostring(q)
    end
    local keys = {}
    for k in pairs(q) do
        table.insert(keys, tostring(k))
    end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do
        local v = q[k]
        if v == nil then
            v = q[tonumber(k)]
        end
        if type(v) == 'table' then
            for _, item in ipairs(v) do
                table.insert(parts, uri_escape(k) .. '=' .. uri_escape(item))
            end
        else
            table.insert(parts, uri_escape(k) .. '=' .. uri_escape(v))
        end
    end
    return table.concat(parts, '&')
end

M.uri_escape = uri_escape
M.uri_unescape = uri_unescape

-- Responses ---------------------------------------------------------------------------------

local response_mt = { __index = {} }

-- resp:setcookie({name=, value=, path=, expires=, domain=}, {raw=})
function response_mt.__index.setcookie(resp, cookie, opts)
    if type(cookie) ~= 'table' or cookie.name == nil or cookie.value == nil then
        error('cookie must be a table with name and value')
    end
    local value = tostring(cookie.value)
    if not (opts and opts.raw) then
        value = uri_escape(value)
    end
    local str = tostring(cookie.name) .. '=' .. value
    if cookie.path ~= nil then
        str = str .. ';path=' .. tostring(cookie.path)
    end
    if cookie.domain ~= nil then
        str = str .. ';domain=' .. tostring(cookie.domain)
    end
    if cookie.expires ~= nil then
        str = str .. ';expires=' .. tostring(cookie.expires)
    end
    resp.headers = resp.headers or {}
    local prev = resp.headers['set-cookie']
    if prev == nil then
        resp.headers['set-cookie'] = str
    elseif type(prev) == 'table' then
        table.insert(prev, str)
    else
        resp.headers['set-cookie'] = { prev, str }
    end
    return resp
end

local function new_response(status, headers, body)
    return setmetatable({ status = status, headers = headers or {}, body = body }, response_mt)
end

-- Requests ----------------------------------------------------------------------------------

local request = {}
local request_mt = { __index = request }

function request_mt.__tostring(req)
    local lines = { req:request_line() }
    for k, v in pairs(req.headers) do
        table.insert(lines, k .. ': ' .. tostring(v))
    end
    table.insert(lines, '')
    table.insert(lines, req.body)
    return table.concat(lines, '\r\n')
end

function request.request_line(req)
    local q = req.query ~= '' and ('?' .. req.query) or ''
    return string.format('%s %s%s HTTP/%d.%d', req.method, req.path_raw, q, req.proto[1], req.proto[2])
end

function request.stash(req, name, value)
    if value ~= nil then
        req.stashes[name] = value
    end
    return req.stashes[name]
end

function request.query_param(req, name)
    if req._query_params == nil then
        req._query_params = parse_query(req.query)
    end
    if name == nil then
        return req._query_params
    end
    return req._query_params[name]
end

function request.content_type(req)
    local ct = req.headers['content-type']
    if ct == nil then
        return nil
    end
    return (ct:match('^%s*([^;%s]*)'):lower())
end

function request.read_cached(req)
    return req.body
end

-- The whole body arrives before the handler runs (the server enforces max_body_size), so
-- read() hands it out once, then '' (end of body), whatever the delimiter or chunk.
function request.read(req)
    if req._read then
        return ''
    end
    req._read = true
    return req.body
end

function request.json(req)
    local data = req:read_cached()
    local ok, res = pcall(json.decode, data)
    if not ok then
        -- The error is a string for the handler's own pcall; left uncaught, it gives 400.
        req._bad_request = true
        errorf("Can't decode json in request '%s': %s", data, tostring(res))
    end
    return res
end

function request.post_param(req, name)
    if req._post_params == nil then
        local ct = req:content_type()
        local params
        if ct == 'application/json' then
            local ok, res = pcall(json.decode, req.body)
            params = (ok and type(res) == 'table') and res or {}
        elseif ct == 'multipart/form-data' then
            params = {} -- not parsed (see README)
        else
            params = parse_query(req.body)
        end
        req._post_params = params
    end
    if name == nil then
        return req._post_params
    end
    return req._post_params[name]
end

function request.param(req, name)
    if name ~= nil then
        local v = req:post_param(name)
        if v ~= nil then
            return v
        end
        return req:query_param(name)
    end
    local res = {}
    for k, v in pairs(req:query_param()) do
        res[k] = v
    end
    for k, v in pairs(req:post_param()) do
        res[k] = v
    end
    return res
end

function request.cookie(req, name, opts)
    local header = req.headers.cookie
    if header == nil then
        return nil
    end
    for pair in header:gmatch('[^;]+') do
        local k, v = pair:match('^%s*([^=]-)%s*=%s*(.-)%s*$')
        if k == name then
            if opts and opts.raw then
                return v
            end
            return uri_unescape(v)
        end
    end
    return nil
end

function request.url_for(req, name, args, query)
    if name == 'current' then
        return req.endpoint and req.httpd:url_for(req.endpoint.name or req.path, args, query) or req.path
    end
    return req.httpd:url_for(name, args, query)
end

function request.redirect_to(req, name, args, query)
    local location = req:url_for(name, args, query)
    return new_response(302, { location = location }, '')
end

-- render{text=|json=|data=, status=, headers=}
function request.render(req, opts)
    opts = opts or {}
    local charset = req.httpd.options.charset
    local resp = new_response(opts.status or 200, {}, '')
    if opts.headers then
        for k, v in pairs(opts.headers) do
            resp.headers[k] = v
        end
    end
    local ctype
    if opts.text ~= nil then
        resp.body = tostring(opts.text)
        ctype = 'text/plain; charset=' .. charset
    elseif opts.json ~= nil then
        resp.body = json.encode(opts.json)
        ctype = 'application/json; charset=' .. charset
    elseif opts.data ~= nil then
        resp.body = tostring(opts.data)
        ctype = 'application/octet-stream'
    else
        ctype = 'text/html; charset=' .. charset
    end
    if resp.headers['content-type'] == nil then
        resp.headers['content-type'] = ctype
    end
    return resp
end

-- req:iterate(gen, param, state): a body produced by an iterator (sent once complete).
function request.iterate(req, gen, param, state)
    return new_response(200, {}, { gen = gen, param = param, state = state })
end

-- Routing -----------------------------------------------------------------------------------

local function compile_path(path)
    if path:sub(1, 1) ~= '/' then
        path = '/' .. path
    end
    local stash = {}
    local pattern = { '^' }
    local pos = 1
    while pos <= #path do
        local s, e, kind, name = path:find('([:*])([%w_]+)', pos)
        if s == nil then
            table.insert(pattern, (path:sub(pos):gsub('[%^%$%(%)%%%.%[%]%*%+%-%?]', '%%%0')))
            break
        end
        table.insert(pattern, (path:sub(pos, s - 1):gsub('[%^%$%(%)%%%.%[%]%*%+%-%?]', '%%%0')))
        table.insert(pattern, kind == ':' and '([^/]+)' or '(.*)')
        table.insert(stash, name)
        pos = e + 1
    end
    table.insert(pattern, '$')
    return path, table.concat(pattern), stash
end

local server = {}
local server_mt = { __index = server }

function server.route(self, opts, handler)
    if type(opts) == 'string' then
        opts = { path = opts }
    end
    if type(opts) ~= 'table' or type(opts.path) ~= 'string' then
        error('Usage: httpd:route({ path = "/path" }, function(req) ... end)')
    end
    if type(handler) ~= 'function' then
        error('Usage: httpd:route({ path = "/path" }, function(req) ... end)')
    end
    if opts.name ~= nil and self.iroutes[opts.name] ~= nil then
        errorf("Route with name '%s' is already exists", opts.name)
    end
    local path, match, stash = compile_path(opts.path)
    local method = opts.method and string.upper(opts.method) or 'ANY'
    local r = {
        path = path, match = match, stash = stash, method = method, name = opts.name,
        sub = handler, log_requests = opts.log_requests, log_errors = opts.log_errors,
    }
    table.insert(self.routes, r)
    if opts.name ~= nil then
        self.iroutes[opts.name] = r
    end
    return self
end

function server.delete(self, name)
    local r = self.iroutes[name]
    if r == nil then
        errorf('No route with name %s', tostring(name))
    end
    self.iroutes[name] = nil
    for i, x in ipairs(self.routes) do
        if x == r then
            table.remove(self.routes, i)
            break
        end
    end
    return self
end

local function find_route(self, method, path)
    local fit, fit_stash
    for _, r in ipairs(self.routes) do
        if r.method == method or r.method == 'ANY' then
            local m = { path:match(r.match) }
            local hit
            if #r.stash == 0 then
                hit, m = m[1] ~= nil, {}
            else
                hit = #m == #r.stash
            end
            if hit then
                -- Fewer stash variables win; a method-specific route beats ANY.
                local better
                if fit == nil or (fit.method == 'ANY' and r.method ~= 'ANY') then
                    better = true
                elseif fit.method ~= 'ANY' and r.method == 'ANY' then
                    better = false
                else
                    better = #r.stash < #fit.stash
                end
                if better then
                    fit, fit_stash = r, m
                end
            end
        end
    end
    if fit == nil then
        return nil
    end
    local stash = {}
    for i, name in ipairs(fit.stash) do
        stash[name] = fit_stash[i]
    end
    return { endpoint = fit, stash = stash }
end

-- httpd:match(method, path) → { endpoint = route, stash = {...} } or nil.
function server.match(self, method, path)
    method = string.upper(method or 'GET')
    local res = find_route(self, method, path)
    if res ~= nil then
        return res
    end
    -- `/users.json` also matches `/users`, with stash format = 'json'.
    local base, format = path:match('^(.-)%.([%w]+)$')
    if base ~= nil and base ~= '' then
        res = find_route(self, method, base)
        if res ~= nil then
            res.stash.format = format
        end
    end
    return res
end

function server.url_for(self, name, args, query)
    local r = self.iroutes[name]
    local url
    if r == nil then
        url = tostring(name)
    else
        args = args or {}
        url = r.path:gsub('([:*])([%w_]+)', function(_, n)
            local v = args[n]
            return v ~= nil and tostring(v) or ''
        end)
    end
    if query ~= nil then
        local q = encode_query(query)
        if q ~= '' then
            url = url .. '?' .. q
        end
    end
    return url
end

function server.hook(self, name, sub)
    if name ~= 'before_dispatch' and name ~= 'after_dispatch' then
        errorf('Unknown hook: %s', tostring(name))
    end
    if sub ~= nil and type(sub) ~= 'function' then
        error('hook must be a function')
    end
    self.hooks[name] = sub
    return self
end

function server.helper(self, name, sub)
    self.helpers[name] = sub
    return self
end

local function route_dispatch(self, req)
    local found = self:match(req.method, req.path)
    if found == nil then
        return new_response(404, { ['content-type'] = 'text/plain; charset=' .. self.options.charset }, 'File not found')
    end
    req.endpoint = found.endpoint
    for k, v in pairs(found.stash) do
        req.stashes[k] = v
    end
    if self.hooks.before_dispatch then
        self.hooks.before_dispatch(self, req)
    end
    local resp = found.endpoint.sub(req)
    if self.hooks.after_dispatch then
        self.hooks.after_dispatch(req, resp)
    end
    return resp
end

local function body_text(body)
    if body == nil then
        return ''
    elseif type(body) == 'string' then
        return body
    elseif type(body) == 'table' and body.gen ~= nil then
        local parts = {}
        local gen, param, state = body.gen, body.param, body.state
        while true do
            local st, chunk = gen(param, state)
            if st == nil then
                break
            end
            state = st
            table.insert(parts, tostring(chunk == nil and st or chunk))
        end
        return table.concat(parts)
    end
    return tostring(body)
end

-- Called by Rust in a new fiber for every request.
local function handle(self, raw, reply)
    local req = setmetatable({
        httpd = self, method = raw.method, path = uri_unescape(raw.path), path_raw = raw.path,
        query = raw.query, proto = raw.proto, headers = raw.headers, peer = raw.peer,
        body = raw.body, stashes = {},
    }, request_mt)
    local opts = self.options
    local ok, resp = xpcall(function()
        if opts.handler ~= nil then
            return opts.handler(self, req)
        end
        return route_dispatch(self, req)
    end, function(err)
        return { err = err, trace = debug.traceback('', 2) }
    end)
    local route = req.endpoint or {}
    local log_requests = route.log_requests
    if log_requests == nil then
        log_requests = opts.log_requests
    end
    local log_errors = route.log_errors
    if log_errors == nil then
        log_errors = opts.log_errors
    end
    if log_requests then
        local fmt = '%s %s%s'
        local q = req.query ~= '' and ('?' .. req.query) or ''
        if type(log_requests) == 'function' then
            log_requests(fmt, req.method, req.path, q)
        else
            log.info(fmt, req.method, req.path, q)
        end
    end
    local status, headers, body
    if ok then
        if type(resp) ~= 'table' then
            resp = { status = 200, body = resp }
        end
        status = tonumber(resp.status) or 200
        headers = {}
        for k, v in pairs(resp.headers or {}) do
            headers[string.lower(tostring(k))] = type(v) == 'table' and v or tostring(v)
        end
        local bok, text = pcall(body_text, resp.body)
        if bok then
            body = text
        else
            ok, resp = false, { err = text, trace = '' }
        end
        if headers['content-type'] == nil and ok then
            headers['content-type'] = 'text/plain; charset=' .. opts.charset
        end
    end
    if not ok then
        local err = tostring(resp.err)
        if req._bad_request then
            status, body = 400, err
        else
            if log_errors then
                log.error('unhandled error: %s\n%s\nrequest:\n%s', err, resp.trace, req:request_line())
            end
            status = 500
            body = opts.display_errors and ('Unhandled error: ' .. err .. '\n' .. resp.trace) or 'Internal Error'
        end
        headers = { ['content-type'] = 'text/plain; charset=' .. opts.charset }
    end
    headers.server = headers.server or 'Tarantool http (node)'
    local sent, why = reply(status, headers, body)
    if not sent then
        log.error('http: bad response: %s', tostring(why))
        reply(500, { ['content-type'] = 'text/plain' }, 'Internal Error')
    end
end

function server.start(self)
    if type(self) ~= 'table' then
        error('httpd: usage: httpd:start()')
    end
    if self.is_run then
        error('server is already started')
    end
    local srv, err = internal.listen(self.host, self.port, self.options, function(raw, reply)
        return handle(self, raw, reply)
    end)
    if srv == nil then
        errorf("Can't create tcp_server: %s", err)
    end
    self.tcp_server = srv
    self.is_run = true
    return self
end

function server.stop(self)
    if type(self) ~= 'table' then
        error('httpd: usage: httpd:stop()')
    end
    if not self.is_run then
        error('server is already stopped')
    end
    if self.tcp_server ~= nil then
        self.tcp_server:close()
        self.tcp_server = nil
    end
    self.is_run = false
    return self
end

local defaults = {
    max_header_size = 4096,
    max_body_size = 1024 * 1024,
    header_timeout = 100,
    app_dir = '.',
    charset = 'utf-8',
    display_errors = false,
    log_requests = true,
    log_errors = true,
    idle_timeout = 0,
}

function M.new(host, port, options)
    if options == nil then
        options = {}
    end
    if type(options) ~= 'table' then
        errorf("options must be table not '%s'", type(options))
    end
    if type(host) ~= 'string' then
        error('host must be a string')
    end
    if host:sub(1, 5) == 'unix/' then
        error('unix sockets are not supported by node http.server')
    end
    if type(port) ~= 'number' then
        error('port must be a number')
    end
    local opts = {}
    for k, v in pairs(defaults) do
        opts[k] = v
    end
    for k, v in pairs(options) do
        opts[k] = v
    end
    return setmetatable({
        host = host, port = port, is_run = false, options = opts,
        routes = {}, iroutes = {}, helpers = {}, hooks = {},
    }, server_mt)
end

return M
