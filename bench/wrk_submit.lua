-- bench/api.py --generator wrk, submit scenario: each connection alternates
-- POST /v1/workflow (the definition) and POST /v1/workflow/trigger/{id} of the
-- execution the first answer named; thread i sends API key i of BENCH_KEYS.
local keys = {}
for key in string.gmatch(os.getenv("BENCH_KEYS") or "", "[^,]+") do
  table.insert(keys, key)
end
local body = os.getenv("BENCH_BODY") or ""
local next_key = 0
local triggered = {}

function setup(thread)
  next_key = next_key + 1
  thread:set("key", keys[next_key])
  table.insert(triggered, thread)
end

function init(args)
  headers = {["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json"}
  pending = nil
  ids = {}
  failed = 0
end

function request()
  if pending then
    local path = "/v1/workflow/trigger/" .. pending
    pending = nil
    return wrk.format("POST", path, headers, '{"input_params":{"n":1}}')
  end
  return wrk.format("POST", "/v1/workflow", headers, body)
end

function response(status, hdrs, resp)
  if status >= 300 then
    failed = failed + 1
    pending = nil
    return
  end
  local id = string.match(resp, '"execution_id"%s*:%s*"([^"]+)"')
  if id and string.find(resp, '"workflow_definition_id"', 1, true) then
    pending = id
  elseif id then
    table.insert(ids, id)
  end
end

function done(summary, latency, requests)
  local all = {}
  local bad = 0
  for _, thread in ipairs(triggered) do
    bad = bad + thread:get("failed")
    local got = thread:get("ids")
    for _, id in ipairs(got) do
      table.insert(all, id)
    end
  end
  io.write(string.format("TRIGGERED %d FAILED %d\n", #all, bad))
  local out = os.getenv("BENCH_IDS")
  if out then
    local f = io.open(out, "w")
    for _, id in ipairs(all) do f:write(id .. "\n") end
    f:close()
  end
end
