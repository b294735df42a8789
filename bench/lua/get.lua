-- GET a path, optionally with a credential: BENCH_DATA lines are
-- "<path>\t<bearer token or API key>" or "<path>" (no credential).
package.path = os.getenv("BENCH_LUA") .. "/?.lua;" .. package.path
local c = require("common")
setup = c.setup
done = c.done

-- Every request is built once in init (the client shares the server's
-- cores, so its own work per request is kept to a table lookup).
local prepared, i
function init(args)
  prepared = {}
  for n, line in ipairs(c.lines(os.getenv("BENCH_DATA"))) do
    local path, cred = c.pair(line)
    if path then
      prepared[n] = wrk.format("GET", path, { ["Authorization"] = "Bearer " .. cred })
    else
      prepared[n] = wrk.format("GET", line)
    end
  end
  i = (thread_id or 1) * 7919
end

function request()
  i = i + 1
  return prepared[i % #prepared + 1]
end
