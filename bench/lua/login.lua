-- POST /v1/auth/login. BENCH_DATA lines are "<email>\t<password>"; each
-- request comes from its own client address (X-Forwarded-For, trusted from
-- 127.0.0.1 in bench/run) inside 10.<BENCH_IP_BASE>.x.y. BENCH_IPS, when
-- set, limits the addresses to that many (an attacker's pool).
package.path = os.getenv("BENCH_LUA") .. "/?.lua;" .. package.path
local c = require("common")
setup = c.setup
done = c.done

local items, i, base, pool, prepared
function init(args)
  items = c.lines(os.getenv("BENCH_DATA"))
  base = tonumber(os.getenv("BENCH_IP_BASE") or "1")
  pool = tonumber(os.getenv("BENCH_IPS") or "0")
  i = (thread_id or 1) * 104729
  if pool > 0 then
    -- An attacker's pool repeats: its requests are built once, so the
    -- client's own work per request (on the same cores as the server) is
    -- as small as for the other loads.
    prepared = {}
    for n = 1, 4096 do prepared[n] = build() end
  end
end

function request()
  if prepared then
    i = i + 1
    return prepared[i % #prepared + 1]
  end
  return build()
end

function build()
  i = i + 1
  local email, password = c.pair(items[i % #items + 1])
  local ip
  if pool > 0 then
    -- The attacker's pool, the same for every thread: 10.<base>.0.1 .. pool.
    ip = string.format("10.%d.0.%d", base, i % pool + 1)
  else
    ip = c.ip(base, thread_id or 1, i)
  end
  local body = string.format('{"email":"%s","password":"%s"}', email, password)
  return wrk.format("POST", "/v1/auth/login", {
    ["Content-Type"] = "application/json",
    ["X-Forwarded-For"] = ip,
  }, body)
end

function response(status, headers, body)
  c.count(status)
end
