-- bench/api.py --generator wrk: thread i (one connection) sends API key i of BENCH_KEYS,
-- so each connection is one client with a key of its own, as in the httpx scenarios.
local keys = {}
for key in string.gmatch(os.getenv("BENCH_KEYS") or "", "[^,]+") do
  table.insert(keys, key)
end
local next_key = 0

function setup(thread)
  next_key = next_key + 1
  thread:set("key", keys[next_key])
end

function init(args)
  wrk.headers["Authorization"] = "Bearer " .. key
end
