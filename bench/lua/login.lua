-- POST /v1/auth/login. BENCH_DATA lines are "<email>\t<password>"; each
-- request comes from its own client address (X-Forwarded-For, trusted from
-- 127.0.0.1 in bench/run) inside 10.<BENCH_IP_BASE>.x.y. BENCH_IPS, when
-- set, limits the addresses to that many (an attacker's pool).
package.path = os.getenv("BENCH_LUA") .. "/?.lua;" .. package.path
local c = require("common")
setup = c.setup
done = c.done

local items, i, base, pool
function init(args)
  items = c.lines(os.getenv("BENCH_DATA"))
  base = tonumber(os.getenv("BENCH_IP_BASE") or "1")
  pool = tonumber(os.getenv("BENCH_IPS") or "0")
  i = (thread_id or 1) * 104729
end

function request()
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
