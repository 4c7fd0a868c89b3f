-- http.server: the Lua half of node's HTTP server (tarantool/http 1.9.0's API, spec/http.md).
--
-- Routing, request and response objects, hooks and error pages live here, as tarantool/http
-- keeps them in Lua; `internal` (src/modules/http/server.rs) owns the socket, hyper's
-- HTTP/1.1 parsing, keep-alive and the header/body limits, and calls `handle` in a new
-- fiber for every request.
local internal = ...
local json = require('json')
local log = require('log')
local table_new = require('table.new')

local M = {}

-- URL and cookie codecs (tarantool/http's escaping rules) --------------------------------

local function escape_char(c)
    return string.format('%%%02X', c:byte())
end

local function uri_unescape(s, plus_is_space)
    if plus_is_space then
        s = s:gsub('+', ' ')
    end
    return (s:gsub('%%(%x%x)', function(h) return string.char(tonumber(h, 16)) end))
end

local function uri_escape(s)
    return (tostring(s):gsub('[^a-zA-Z0-9_]', escape_char))
end

-- Cookie values keep printable bytes except '"', ',', ';', '\'; paths keep all but ';'.
local function escape_cookie(s, is_path)
    return (tostring(s):gsub('.', function(c)
        local b = c:byte()
        local keep
        if is_path then
            keep = b >= 32 and b < 127 and c ~= ';'
        else
            keep = b > 32 and b < 127 and c ~= '"' and c ~= ',' and c ~= ';' and c ~= '\\'
        end
        return keep and c or escape_char(c)
    end))
end

-- `expires` may be 'now'/0, '+3d'-style offsets (h, d, m = 30 days, y) or a ready string.
local function expires_str(v)
    local fmt = '!%a, %d-%b-%Y %H:%M:%S GMT'
    if v == 'now' or v == 0 or v == '0' then
        return os.date(fmt)
    end
    local n, period = tostring(v):match('^[+]?(%d+)([hdmy])$')
    if period == nil then
        return tostring(v)
    end
    local unit = { h = 3600, d = 86400, m = 86400 * 30, y = 86400 * 365 }
    return os.date(fmt, os.time() + tonumber(n) * unit[period])
end

-- 'a=1&b=2' → table; repeated names keep the last value.
local function parse_params(s, unescape_key, unescape_value)
    local res = {}
    if s == nil or s == '' then
        return res
    end
    for pair in s:gmatch('[^&]+') do
        local k, v = pair:match('^([^=]*)=(.*)$')
        if k == nil then
            k, v = pair, ''
        end
        res[unescape_key(k)] = unescape_value(v)
    end
    return res
end

local function encode_query(q)
    if type(q) ~= 'table' then
        return tostring(q)
    end
    local parts = {}
    for k, v in pairs(q) do
        table.insert(parts, uri_escape(k) .. '=' .. uri_escape(v))
    end
    return table.concat(parts, '&')
end

M.uri_escape = uri_escape
M.uri_unescape = uri_unescape

-- Responses ---------------------------------------------------------------------------------

local response_mt = { __index = {} }

-- resp:setcookie({name=, value=, path=, expires=, domain=}, {raw=})
function response_mt.__index.setcookie(resp, cookie, options)
    options = options or {}
    if cookie.name == nil then
        error('cookie.name is undefined')
    end
    if cookie.value == nil then
        error('cookie.value is undefined')
    end
    local value = options.raw and tostring(cookie.value) or escape_cookie(cookie.value)
    local str = string.format('%s=%s', cookie.name, value)
    if cookie.path ~= nil then
        str = str .. ';path=' .. (options.raw and tostring(cookie.path) or escape_cookie(cookie.path, true))
    end
    if cookie.domain ~= nil then
        str = str .. ';domain=' .. tostring(cookie.domain)
    end
    if cookie.expires ~= nil then
        str = str .. ';expires=' .. expires_str(cookie.expires)
    end
    resp.headers = resp.headers or {}
    local prev = resp.headers['set-cookie']
    if prev == nil then
        resp.headers['set-cookie'] = { str }
    elseif type(prev) == 'string' then
        resp.headers['set-cookie'] = { prev, str }
    else
        table.insert(prev, str)
    end
    return resp
end

local function new_response(status, headers, body)
    return setmetatable({ status = status, headers = headers or {}, body = body }, response_mt)
end

-- Requests ----------------------------------------------------------------------------------

local request = {}
local request_mt = { __index = request }

local function ucfirst(s)
    return (s:gsub('^%l', string.upper))
end

function request_mt.__tostring(req)
    local res = { req:request_line(), '\r\n' }
    for k, v in pairs(req.headers) do
        table.insert(res, string.format('%s: %s\r\n', ucfirst(k), tostring(v)))
    end
    table.insert(res, '\r\n')
    table.insert(res, req.body)
    return table.concat(res)
end

function request.request_line(req)
    return string.format('%s %s?%s HTTP/%d.%d', req.method, req.path, req.query, req.proto[1], req.proto[2])
end

function request.stash(req, name, ...)
    if type(req) ~= 'table' then
        error("usage: ctx:stash('name'[, 'value'])")
    end
    if select('#', ...) > 0 then
        req.tstash[name] = select(1, ...)
    end
    return req.tstash[name]
end

function request.query_param(req, name)
    if req._query_params == nil then
        local un = function(x) return uri_unescape(x, true) end
        req._query_params = parse_params(req.query, un, un)
    end
    if name == nil then
        return req._query_params
    end
    return req._query_params[name]
end

-- The content type without its parameters, as sent.
function request.content_type(req)
    local ct = req.headers['content-type']
    if ct == nil then
        return nil
    end
    return ct:match('^([^;]*)$') or ct:match('^(.*);.*')
end

-- The body arrives whole before the handler runs (the server enforces max_body_size);
-- read() hands it out as a socket read would: everything left, `n` bytes, up to a
-- delimiter, or {delimiter=, chunk=}; '' at the end.
function request.read(req, opts)
    local body, pos = req.body, req._pos or 1
    if pos > #body then
        return ''
    end
    local stop = #body
    local limit, delim
    if type(opts) == 'number' then
        limit = opts
    elseif type(opts) == 'string' then
        delim = opts
    elseif type(opts) == 'table' then
        limit = opts.chunk or opts.size
        delim = opts.delimiter
    end
    if type(delim) == 'table' then
        delim = delim[1]
    end
    if delim ~= nil and delim ~= '' then
        local _, e = body:find(delim, pos, true)
        if e ~= nil then
            stop = e
        end
    end
    if limit ~= nil and pos + limit - 1 < stop then
        stop = pos + limit - 1
    end
    req._pos = stop + 1
    return body:sub(pos, stop)
end

function request.read_cached(req)
    if req._cached == nil then
        req._cached = req:read()
    end
    return req._cached
end

function request.json(req)
    local data = req:read_cached()
    local ok, res = pcall(json.decode, data)
    if not ok then
        -- A string error for the handler's own pcall; left uncaught, it gives 400.
        req._bad_request = true
        error(string.format("Can't decode json in request '%s': %s", data, tostring(res)))
    end
    return res
end

function request.post_param(req, name)
    if req._post_params == nil then
        local body = req:read_cached()
        local ct = req:content_type()
        local params
        if body == '' or ct == 'multipart/form-data' then
            params = {} -- multipart is not parsed, as in tarantool/http
        elseif ct == 'application/json' then
            params = req:json()
        else
            local plus = ct == 'application/x-www-form-urlencoded'
            params = parse_params(body, uri_unescape, function(v) return uri_unescape(v, plus) end)
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
    for k, v in pairs(req:post_param()) do
        res[k] = v
    end
    for k, v in pairs(req:query_param()) do
        res[k] = v
    end
    return res
end

function request.cookie(req, name, options)
    local header = req.headers.cookie
    if header == nil then
        return nil
    end
    for k, v in header:gmatch('([^=,; \t]+)=([^,; \t]+)') do
        if k == name then
            if options and options.raw then
                return v
            end
            return uri_unescape(v)
        end
    end
    return nil
end

function request.url_for(req, name, args, query)
    if name == 'current' then
        return req.endpoint:url_for(args, query)
    end
    return req.httpd:url_for(name, args, query)
end

function request.redirect_to(req, name, args, query)
    return new_response(302, { location = req:url_for(name, args, query) })
end

-- render{text=|json=|data=}; templates are not supported.
function request.render(req, opts)
    if req == nil then
        error('Usage: self:render({ ... })')
    end
    local charset = req.httpd.options.charset
    local resp = new_response(nil, {})
    opts = opts or {}
    if opts.text ~= nil then
        resp.headers['content-type'] = charset and ('text/plain; charset=' .. charset) or 'text/plain'
        resp.body = tostring(opts.text)
    elseif opts.json ~= nil then
        resp.headers['content-type'] = charset and ('application/json; charset=' .. charset) or 'application/json'
        resp.body = json.encode(opts.json)
    elseif opts.data ~= nil then
        resp.body = tostring(opts.data)
    else
        error('templates are not supported by node http.server: use render{text=|json=|data=}')
    end
    return resp
end

-- req:iterate(gen, param, state): a body produced by an iterator (sent once complete).
function request.iterate(_, gen, param, state)
    return new_response(nil, {}, { gen = gen, param = param, state = state })
end

-- Routing -----------------------------------------------------------------------------------

-- Both patterns and request paths get a trailing '/', so '/abc' and '/abc/' are one route.
local function with_slashes(path)
    if path:sub(-1) ~= '/' then
        path = path .. '/'
    end
    if path:sub(1, 1) ~= '/' then
        path = '/' .. path
    end
    return path
end

-- '/users/:id/*rest' → a Lua pattern and the stash names in capture order.
local function compile_path(path)
    local stash, seen = {}, {}
    local pattern = {}
    local pos = 1
    while true do
        local s, e, kind, name = path:find('([:*])([%a_][%w_]*)', pos)
        local literal = path:sub(pos, (s or 0) - 1)
        if s == nil then
            literal = path:sub(pos)
        end
        table.insert(pattern, (literal:gsub('[%^%$%(%)%%%.%[%]%*%+%-%?]', '%%%0')))
        if s == nil then
            break
        end
        if seen[name] then
            error(string.format('duplicate stash: %s', name))
        end
        seen[name] = true
        table.insert(pattern, kind == ':' and '([^/]-)' or '(.-)')
        table.insert(stash, name)
        pos = e + 1
    end
    return '^' .. with_slashes(table.concat(pattern)) .. '$', stash
end

local route_methods = { GET = true, HEAD = true, POST = true, PUT = true, DELETE = true, PATCH = true }

local route_mt = { __index = {} }

-- route:url_for(args, query): the path with stash values put in.
function route_mt.__index.url_for(r, args, query)
    args = args or {}
    local url = r.path:gsub('([:*])([%a_][%w_]*)', function(_, n)
        local v = args[n]
        return v ~= nil and tostring(v) or ''
    end)
    if query ~= nil then
        url = url .. '?' .. encode_query(query)
    end
    if url:sub(1, 1) ~= '/' then
        url = '/' .. url
    end
    return url
end

local server = {}

function server.route(self, opts, sub)
    if type(opts) ~= 'table' or type(self) ~= 'table' then
        error('Usage: httpd:route({ ... }, function(cx) ... end)')
    end
    if sub == nil then
        error('templates are not supported by node http.server: give the route a handler function')
    elseif type(sub) == 'string' then
        error(string.format("'controller#action' handlers ('%s') are not supported by node http.server", sub))
    elseif type(sub) ~= 'function' then
        error(string.format('wrong argument: expected function, but received %s', type(sub)))
    end
    if opts.path == nil then
        error('path is not defined')
    end
    local method = string.upper(opts.method or 'ANY')
    if not route_methods[method] then
        method = 'ANY'
    end
    if opts.log_requests ~= nil and type(opts.log_requests) ~= 'function' and type(opts.log_requests) ~= 'boolean' then
        error("'log_requests' option should be a function or a boolean")
    end
    if opts.log_errors ~= nil and type(opts.log_errors) ~= 'function' and type(opts.log_errors) ~= 'boolean' then
        error("'log_errors' option should be a function or a boolean")
    end
    local r = {}
    for k, v in pairs(opts) do
        r[k] = v
    end
    r.method = method
    r.match, r.stash = compile_path(opts.path)
    r.sub = sub
    setmetatable(r, route_mt)
    if opts.name ~= nil then
        if opts.name == 'current' then
            error("Route can not have name 'current'")
        end
        if self.iroutes[opts.name] ~= nil then
            error(string.format("Route with name '%s' is already exists", opts.name))
        end
        self.iroutes[opts.name] = r
    end
    table.insert(self.routes, r)
    self._match_memo = nil
    return self
end

-- httpd:delete(name): removes a named route (nothing if there is none).
function server.delete(self, name)
    local r = self.iroutes[name]
    if r == nil then
        return
    end
    self.iroutes[name] = nil
    self._match_memo = nil
    for i, x in ipairs(self.routes) do
        if x == r then
            table.remove(self.routes, i)
            break
        end
    end
end

-- The route for (method, path) without the stash: every route's pattern is tried.
local function find_route(self, method, path)
    path = with_slashes(path)
    method = string.upper(method)
    local fit, fit_m
    for _, r in ipairs(self.routes) do
        if r.method == method or r.method == 'ANY' then
            local m = { path:match(r.match) }
            if #m > 0 and (#r.stash == 0 or #r.stash == #m) then
                if fit == nil or #fit.stash > #r.stash then
                    fit, fit_m = r, m
                elseif r.method ~= fit.method and fit.method == 'ANY' then
                    fit, fit_m = r, m
                end
            end
        end
    end
    return fit, fit_m
end

-- Lookups are remembered per (method, path), as every request repeats one of a few; the
-- memo is dropped when the route list changes (route, delete, or the list itself edited)
-- and when it grows past this many paths (paths with ids in them are all different).
local match_memo_size = 1024

-- (route, stash) for a request, or nil.
local function match_route(self, method, path)
    local memo = self._match_memo
    if memo == nil or memo.routes ~= self.routes or memo.n_routes ~= #self.routes or memo.size >= match_memo_size then
        memo = { routes = self.routes, n_routes = #self.routes, size = 0, by_method = {} }
        self._match_memo = memo
    end
    local by_path = memo.by_method[method]
    if by_path == nil then
        by_path = {}
        memo.by_method[method] = by_path
    end
    local hit = by_path[path]
    if hit == nil then
        local fit, fit_m = find_route(self, method, path)
        hit = fit ~= nil and { fit, fit_m } or false
        by_path[path] = hit
        memo.size = memo.size + 1
    end
    if hit == false then
        return nil
    end
    local fit, fit_m = hit[1], hit[2]
    -- Room for the default handler's `format` too.
    local stash = table_new(0, #fit.stash + 1)
    for i, name in ipairs(fit.stash) do
        stash[name] = fit_m[i]
    end
    return fit, stash
end

-- httpd:match(method, path) → { endpoint = route, stash = {...} } or nil. Fewer stash
-- variables win; among the rest a method-specific route beats ANY; then the first added.
function server.match(self, method, path)
    local endpoint, stash = match_route(self, method, path)
    if endpoint == nil then
        return nil
    end
    return { endpoint = endpoint, stash = stash }
end

-- match_route, or the server's own `match` if a script replaced it.
local function route_of(self, method, path)
    if self.match == server.match then
        return match_route(self, method, path)
    end
    local found = self:match(method, path)
    if found == nil then
        return nil
    end
    return found.endpoint, found.stash
end

function server.url_for(self, name, args, query)
    local r = self.iroutes[name]
    if r ~= nil then
        return r:url_for(args, query)
    end
    name = tostring(name)
    if name:match('^/') == nil and name:match('^https?://') == nil then
        return '/' .. name
    end
    return name
end

function server.hook(self, name, sub)
    if sub == nil or type(sub) == 'function' then
        self.hooks[name] = sub
        return self
    end
    error(string.format('Wrong type for hook function: %s', type(sub)))
end

function server.helper(self, name, sub)
    if sub == nil or type(sub) == 'function' then
        self.helpers[name] = sub
        return self
    end
    error(string.format('Wrong type for helper function: %s', type(sub)))
end

local mime_types = {
    html = 'text/html', htm = 'text/html', txt = 'text/plain', css = 'text/css',
    js = 'application/javascript', json = 'application/json', xml = 'application/xml',
    png = 'image/png', jpg = 'image/jpeg', jpeg = 'image/jpeg', gif = 'image/gif',
    svg = 'image/svg+xml', ico = 'image/x-icon', pdf = 'application/pdf',
}

-- No route: a file under <app_dir>/public, else 404 with an empty body.
local function static_file(self, req, format)
    local f = io.open(self.options.app_dir .. '/public' .. req.path, 'rb')
    if f == nil then
        return { status = 404 }
    end
    local body = f:read('*a')
    f:close()
    if body == nil then
        return { status = 404 } -- a directory
    end
    return {
        status = 200,
        headers = { ['content-type'] = mime_types[format] or 'application/octet-stream' },
        body = body,
    }
end

-- The default `handler` option: hooks, routing, static files.
local function default_handler(self, req)
    if self.hooks.before_dispatch ~= nil then
        self.hooks.before_dispatch(self, req)
    end
    local format = req.path:match('[.]([^.]+)$') or 'html'
    -- handle() has matched this request already (to pick its logger); hooks may change it.
    local endpoint, stash = req._route, req._route_stash
    if endpoint == nil or req._route_method ~= req.method or req._route_path ~= req.path then
        endpoint, stash = route_of(self, req.method, req.path)
    end
    if endpoint == nil then
        return static_file(self, req, format)
    end
    stash.format = format
    req.endpoint = endpoint
    req.tstash = stash
    local resp = endpoint.sub(req)
    if self.hooks.after_dispatch ~= nil then
        self.hooks.after_dispatch(req, resp)
    end
    return resp
end

-- A generator body (a function, or req:iterate's {gen, param, state}) or nil.
local function body_generator(body)
    if type(body) == 'function' then
        return { body }
    elseif type(body) == 'table' and body.gen ~= nil then
        return { body.gen, body.param, body.state }
    end
    return nil
end

local function body_text(body)
    if type(body) == 'string' then
        return body
    elseif body == nil then
        return ''
    end
    return tostring(body)
end

-- Streams a generator body with chunked encoding; the fiber waits while the client is slow.
local function stream_body(req, writer, gen)
    local ok, err = pcall(function()
        for _, part in gen[1], gen[2], gen[3] do
            if not writer:write(tostring(part)) then
                return -- the client went away
            end
        end
    end)
    if ok then
        writer:close()
    else
        log.error('unhandled error: %s\nrequest:\n%s', tostring(err), tostring(req))
        writer:abort()
    end
end

local function pick_logger(server_value, route_value, default)
    local v = route_value
    if v == nil then
        v = server_value
    end
    if type(v) == 'function' then
        return v
    end
    return v and default or log.debug
end

local function bad_uri(path)
    if path:sub(1, 1) ~= '/' then
        return true
    end
    -- A '.' or '..' segment follows a '/': most paths have none and need no split.
    if not path:find('/.', 1, true) then
        return false
    end
    for seg in path:gmatch('[^/]+') do
        if seg == '.' or seg == '..' then
            return true
        end
    end
    return false
end

-- Runs the handler (the `handler` option) → response, body text or nil, generator or nil.
local function run_handler(self, req)
    local r = self.options.handler(self, req)
    local b = type(r) == 'table' and r.body or nil
    local gen = body_generator(b)
    if gen ~= nil then
        return r, nil, gen
    end
    return r, body_text(b)
end

local function handler_error(err)
    return { err = err, trace = debug.traceback('', 2) }
end

-- The `server` header, made again only if _TARANTOOL changes.
local server_header_for, server_header

local function default_server_header()
    if server_header_for ~= _TARANTOOL or server_header == nil then
        server_header_for = _TARANTOOL
        server_header = _TARANTOOL and string.format('Tarantool http (tarantool v%s)', _TARANTOOL)
            or 'Tarantool http (node)'
    end
    return server_header
end

local reply = internal.reply

-- Called by Rust in a new fiber for every request; answers with reply(id, ...).
local function handle(self, id, method, raw_path, query, proto_major, proto_minor, req_headers, peer_host, peer_port,
                      peer_ipv4, req_body)
    local opts = self.options
    local path = raw_path
    if path:find('%', 1, true) then
        path = uri_unescape(path)
    end
    if bad_uri(path) then
        log.error('failed to parse request: invalid uri')
        return reply(id, 400, { connection = 'close' }, 'invalid uri')
    end
    local req = setmetatable({
        httpd = self, method = method, path = path, path_raw = raw_path,
        query = query, proto = { proto_major, proto_minor }, headers = req_headers,
        peer = { host = peer_host, port = peer_port, family = peer_ipv4 and 'AF_INET' or 'AF_INET6',
                 type = 'SOCK_STREAM', protocol = 'tcp' },
        body = req_body, tstash = {},
    }, request_mt)
    local route, stash = route_of(self, method, path)
    req._route, req._route_stash, req._route_method, req._route_path = route, stash, method, path
    local endpoint = route or {}
    local logreq = pick_logger(opts.log_requests, endpoint.log_requests, log.info)
    -- With request logging off the line goes to debug: skip building it below that level.
    if logreq ~= log.debug or log.level() >= 7 then
        logreq('%s %s%s', method, path, query ~= '' and '?' .. query or '')
    end

    local ok, r, body, gen = xpcall(run_handler, handler_error, self, req)
    local status, headers
    local err = r
    if ok then
        -- Room for the user's headers and the two defaults below without a resize.
        headers = table_new(0, 4)
        if r == nil then
            status = 200
        elseif type(r) ~= 'table' then
            ok, err = false, { err = 'invalid response', trace = '' }
        else
            status = r.status or 200
            local rh = r.headers
            if type(status) ~= 'number' then
                ok, err = false, { err = 'response.status must be a number', trace = '' }
            elseif rh ~= nil and type(rh) ~= 'table' then
                ok, err = false, { err = 'response.headers must be a table', trace = '' }
            elseif rh ~= nil then
                for k, v in pairs(rh) do
                    headers[string.lower(tostring(k))] = type(v) == 'table' and v or tostring(v)
                end
            end
        end
    end
    if not ok then
        local text = tostring(err.err)
        headers = {}
        if req._bad_request then
            status, body = 400, text
        else
            local logerr = pick_logger(opts.log_errors, endpoint.log_errors, log.error)
            logerr('unhandled error: %s\n%s\nrequest:\n%s', text, err.trace, tostring(req))
            status = 500
            if opts.display_errors then
                body = 'Unhandled error: ' .. text .. '\n' .. err.trace .. '\n\n' .. '\n\nRequest:\n' .. tostring(req)
            else
                body = 'Internal Error'
            end
        end
    end
    if headers['content-type'] == nil then
        headers['content-type'] = 'text/plain; charset=utf-8'
    end
    if headers.server == nil then
        headers.server = default_server_header()
    end
    local ua = req_headers['user-agent']
    if ua ~= nil and self.disable_keepalive[ua] then
        headers.connection = 'close' -- hyper closes the connection after this response
    end
    -- hyper sets content-length/transfer-encoding and keep-alive itself.
    headers['content-length'] = nil
    headers['transfer-encoding'] = nil
    if ok and gen ~= nil then
        local sent, writer = reply(id, status, headers, nil, true)
        if sent then
            return stream_body(req, writer, gen)
        end
        log.error('http: bad response: %s', tostring(writer))
        return reply(id, 500, { ['content-type'] = 'text/plain; charset=utf-8' }, 'Internal Error')
    end
    local sent, why = reply(id, status, headers, body)
    if not sent then
        log.error('http: bad response: %s', tostring(why))
        reply(id, 500, { ['content-type'] = 'text/plain; charset=utf-8' }, 'Internal Error')
    end
end

-- The fiber body: a request whose handling fails outside the handler (a logger that
-- raises, a cancelled fiber) is dropped at once, so its client gets a 500 instead of
-- waiting for garbage collection; the error goes on to the fiber's log line.
local function dispatch(self, id, ...)
    local ok, err = pcall(handle, self, id, ...)
    if not ok then
        reply(id)
        error(err, 0)
    end
end

function server.start(self)
    if type(self) ~= 'table' then
        error('httpd: usage: httpd:start()')
    end
    local srv, err = internal.listen(self.host, self.port, self.options, function(...)
        return dispatch(self, ...)
    end)
    if srv == nil then
        error(string.format("Can't create tcp_server: %s", err))
    end
    if self.tcp_server ~= nil then
        self.tcp_server:close() -- started twice on port 0: keep only the new listener
    end
    self.is_run = true
    self.tcp_server = srv
    return self
end

function server.stop(self)
    if type(self) ~= 'table' then
        error('httpd: usage: httpd:stop()')
    end
    if self.is_run then
        self.is_run = false
    else
        error('server is already stopped')
    end
    if self.tcp_server ~= nil then
        self.tcp_server:close()
        self.tcp_server = nil
    end
    return self
end

local tls_options = { 'ssl_cert_file', 'ssl_key_file', 'ssl_ca_file', 'ssl_ciphers', 'ssl_password', 'ssl_password_file' }

function M.new(host, port, options)
    if options == nil then
        options = {}
    end
    if type(options) ~= 'table' then
        error(string.format("options must be table not '%s'", type(options)))
    end
    if options.disable_keepalive ~= nil and type(options.disable_keepalive) ~= 'table' then
        error('Option disable_keepalive must be a table.')
    end
    if options.idle_timeout ~= nil and type(options.idle_timeout) ~= 'number' then
        error('Option idle_timeout must be a number.')
    end
    for _, name in ipairs(tls_options) do
        if options[name] ~= nil then
            error('TLS is not supported by node http.server (' .. name .. ')')
        end
    end
    if type(host) ~= 'string' then
        error('host must be a string')
    end
    if host:sub(1, 5) == 'unix/' then
        error('unix sockets are not supported by node http.server')
    end
    local opts = {
        max_header_size = 4096, header_timeout = 100, handler = default_handler, app_dir = '.',
        charset = 'utf-8', cache_templates = true, cache_controllers = true, cache_static = true,
        log_requests = true, log_errors = true, display_errors = false, disable_keepalive = {},
        idle_timeout = 0,
        -- node's: requests with bigger bodies get 413
        max_body_size = 1024 * 1024,
    }
    for k, v in pairs(options) do
        opts[k] = v
    end
    -- Methods are fields of the server table, as in tarantool/http.
    local self = {
        host = host, port = port, is_run = false, options = opts,
        routes = {}, iroutes = {}, helpers = {}, hooks = {}, cache = { tpl = {}, ctx = {}, static = {} },
    }
    for name, fn in pairs(server) do
        self[name] = fn
    end
    self.helpers.url_for = function(tx, ...) return tx:url_for(...) end
    self.disable_keepalive = {}
    for _, agent in ipairs(opts.disable_keepalive) do
        self.disable_keepalive[agent] = true
    end
    return self
end

return M
