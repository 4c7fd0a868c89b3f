-- The instance's HTTP routes: GET / (identity), GET /status, POST /config (a change).

local json = require('json')

local M = {}

function M.routes(me, api)
    return function(server)
        server:route({path = '/', method = 'GET'}, function(req)
            return req:render({json = {number = me.number, uuid = me.uuid}})
        end)
        server:route({path = '/status', method = 'GET'}, function(req)
            return req:render({json = api.status()})
        end)
        server:route({path = '/config', method = 'POST'}, function(req)
            local ok, change = pcall(function() return json.decode(req:read()) end)
            if not ok or type(change) ~= 'table' then
                local resp = req:render({json = {status = 'rejected',
                    error = 'the body must be a JSON object {"<instance number>": port or null}'}})
                resp.status = 400
                return resp
            end
            local out = api.apply(change)
            local resp = req:render({json = out})
            if out.status == 'committed' then
                resp.status = 200
            elseif out.status == 'rejected' then
                resp.status = 400
            else
                resp.status = 409
            end
            return resp
        end)
    end
end

return M
