-- GET a path, optionally with a credential: BENCH_DATA lines are
-- "<path>\t<bearer token or API key>" or "<path>" (no credential).
package.path = os.getenv("BENCH_LUA") .. "/?.lua;" .. package.path
local c = require("common")
setup = c.setup
done = c.done

local items, i
function init(args)
  items = c.lines(os.getenv("BENCH_DATA"))
  i = (thread_id or 1) * 7919
end

function request()
  i = i + 1
  local line = items[i % #items + 1]
  local path, cred = c.pair(line)
  if not path then return wrk.format("GET", line) end
  return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. cred })
end
