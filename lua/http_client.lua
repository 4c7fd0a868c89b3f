-- http.client: the Lua half of node's HTTP client (Tarantool's built-in API, spec/http.md).
--
-- `internal` (src/modules/http/client.rs) sends one request on hyper-util's pooled client
-- and yields the fiber meanwhile; options, params, cookies and decode() are here.
local internal = ...
local json = require('json')

local function uri_escape(s)
    return (tostring(s):gsub('[^%w%-%._~]', function(c) return string.format('%%%02X', c:byte()) end))
end

local function encode_params(params)
    if type(params) ~= 'table' then
        error('params must be a table')
    end
    local keys = {}
    for k in pairs(params) do
        table.insert(keys, k)
    end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local parts = {}
    for _, k in ipairs(keys) do
        local v = params[k]
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

local decoders = {
    ['application/json'] = function(body) return json.decode(body) end,
    ['application/yaml'] = function(body) return require('yaml').decode(body) end,
    ['application/msgpack'] = function(body) return (require('msgpack').decode(body)) end,
}

local function decode(resp)
    if resp.body == nil then
        return nil
    end
    local ct = resp.headers and resp.headers['content-type']
    local mime = ct and ct:match('^%s*([^;%s]+)'):lower()
    local decoder = mime and decoders[mime]
    if decoder == nil then
        error(string.format("Unable to decode body: no decoder for content type '%s'", tostring(ct)), 2)
    end
    return decoder(resp.body)
end

-- Set-Cookie lines → { name = { value, { 'Path=/', ... } } }, Tarantool's shape.
local function parse_cookies(lines)
    local cookies = {}
    for _, line in ipairs(lines) do
        local first, rest = line:match('^([^;]*);?(.*)$')
        local name, value = first:match('^%s*([^=]-)%s*=%s*(.-)%s*$')
        if name ~= nil and name ~= '' then
            local options = {}
            for opt in rest:gmatch('[^;]+') do
                table.insert(options, (opt:gsub('^%s+', ''):gsub('%s+$', '')))
            end
            cookies[name] = { value, options }
        end
    end
    return cookies
end

local client = {}
local client_mt = { __index = client }

local body_methods = { POST = true, PUT = true, PATCH = true }

function client.request(self, method, url, body, opts)
    if type(self) ~= 'table' or self._c == nil then
        error('Use client:request(...) instead of client.request(...)', 2)
    end
    if type(method) ~= 'string' or type(url) ~= 'string' then
        error('request(method, url[, body, [options]])', 2)
    end
    opts = opts or {}
    if type(opts) ~= 'table' then
        error('options must be a table', 2)
    end
    for _, name in ipairs({ 'chunked', 'unix_socket', 'proxy' }) do
        if opts[name] then
            error(string.format("option '%s' is not supported by node http.client", name), 2)
        end
    end
    method = string.upper(method)
    local headers = {}
    local have_ctype = false
    for k, v in pairs(opts.headers or {}) do
        if type(v) ~= 'string' and not (type(v) == 'table' and getmetatable(v) and getmetatable(v).__tostring) then
            error("headers must be string or table with \"__tostring\"", 2)
        end
        k = string.lower(tostring(k))
        headers[k] = tostring(v)
        have_ctype = have_ctype or k == 'content-type'
    end
    if opts.params ~= nil then
        local q = encode_params(opts.params)
        if body_methods[method] and body == nil then
            body = q
            if not have_ctype then
                headers['content-type'] = 'application/x-www-form-urlencoded'
            end
        elseif q ~= '' then
            url = url .. (url:find('?', 1, true) and '&' or '?') .. q
        end
    end
    if body ~= nil and type(body) ~= 'string' then
        error('fourth argument must be a string', 2) -- Tarantool 2.6's text
    end
    if headers.accept == nil then
        headers.accept = '*/*'
    end
    -- Tarantool 2.6 keeps a connection alive only when both keepalive knobs are given
    -- (then it sends Keep-Alive: timeout=<idle>); otherwise every request says close.
    if headers.connection == nil then
        if opts.keepalive_idle and opts.keepalive_interval then
            headers.connection = 'Keep-Alive'
            headers['keep-alive'] = headers['keep-alive'] or ('timeout=' .. tostring(opts.keepalive_idle))
        else
            headers.connection = 'close'
        end
    end
    local timeout = opts.timeout
    if timeout ~= nil and type(timeout) ~= 'number' then
        error('timeout must be a number', 2)
    end
    self._stat.total_requests = self._stat.total_requests + 1
    self._stat.active_requests = self._stat.active_requests + 1
    local ok, resp = pcall(self._c.request, self._c, method, url, body, headers, timeout,
        opts.follow_location ~= false)
    self._stat.active_requests = self._stat.active_requests - 1
    if not ok then
        error(resp, 2)
    end
    if resp.status >= 200 and resp.status < 300 then
        self._stat.http_200_responses = self._stat.http_200_responses + 1
    elseif resp.errmsg == nil then
        self._stat.http_other_responses = self._stat.http_other_responses + 1
    else
        self._stat.failed_requests = self._stat.failed_requests + 1
    end
    if resp.set_cookies ~= nil then
        if #resp.set_cookies > 0 then
            resp.cookies = parse_cookies(resp.set_cookies)
        end
        resp.set_cookies = nil
    end
    if resp.body == '' then
        resp.body = nil -- Tarantool gives no body rather than an empty one
    end
    if resp.errmsg == nil then
        -- Tarantool 2.6's reason is not the status line's: 'Ok' below 400, else 'Unknown'.
        resp.reason = resp.status < 400 and 'Ok' or 'Unknown'
    end
    resp.decode = decode
    return resp
end

for _, m in ipairs({ 'get', 'head', 'delete', 'options', 'trace', 'connect' }) do
    local upper = string.upper(m)
    client[m] = function(self, url, opts)
        return self:request(upper, url, nil, opts)
    end
end

for _, m in ipairs({ 'post', 'put', 'patch' }) do
    local upper = string.upper(m)
    client[m] = function(self, url, body, opts)
        return self:request(upper, url, body, opts)
    end
end

function client.stat(self)
    local s = {}
    for k, v in pairs(self._stat) do
        s[k] = v
    end
    return s
end

local function new(opts)
    opts = opts or {}
    if type(opts) ~= 'table' then
        error('options must be a table', 2)
    end
    return setmetatable({
        _c = internal.new(opts.max_connections, opts.keepalive_idle),
        _stat = {
            active_requests = 0, total_requests = 0, http_200_responses = 0,
            http_other_responses = 0, failed_requests = 0, sockets_added = 0, sockets_deleted = 0,
        },
    }, client_mt)
end

-- The module is a client too: `require('http.client').get(url)` uses a default instance.
local M = { new = new }
local default
for name, fn in pairs(client) do
    M[name] = function(...)
        default = default or new()
        return fn(default, ...)
    end
end

return M
