-- POST /v1/auth/mfa: the second step of sign-ins. BENCH_DATA lines are
-- "<mfa_token>\t<client address>\t<TOTP code>" (bench/seed.py
-- --mfa-sign-ins); each is used once (a token and a code are single-use),
-- from the address its token is bound to. A thread that has used its share
-- stops, so the load measures completions, not refusals; the report counts
-- the 200 answers (a few requests in flight when the last thread stops may
-- find nothing left and get 405 from GET /v1/auth/mfa).
package.path = os.getenv("BENCH_LUA") .. "/?.lua;" .. package.path
local c = require("common")
setup = c.setup
done = c.done

local mine, next_one
function init(args)
  local all = c.lines(os.getenv("BENCH_DATA"))
  local threads = tonumber(os.getenv("BENCH_THREADS") or "1")
  mine, next_one = {}, 1
  for k = thread_id or 1, #all, threads do
    mine[#mine + 1] = all[k]
  end
end

function request()
  local line = mine[next_one]
  if not line then
    return wrk.format("GET", "/v1/auth/mfa")
  end
  next_one = next_one + 1
  local token, ip, code = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
  local body = string.format('{"mfa_token":"%s","totp":"%s"}', token, code)
  return wrk.format("POST", "/v1/auth/mfa", {
    ["Content-Type"] = "application/json",
    ["X-Forwarded-For"] = ip,
  }, body)
end

function response(status, headers, body)
  c.count(status)
  if not mine[next_one] then
    wrk.thread:stop()
  end
end
