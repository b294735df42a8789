-- POST /v1/auth/refresh, each request with a fresh refresh token: BENCH_DATA
-- holds one token per line (at least one per connection); each response's
-- Set-Cookie gives the next token, so every request rotates a live token.
package.path = os.getenv("BENCH_LUA") .. "/?.lua;" .. package.path
local c = require("common")
setup = c.setup
done = c.done

local queue, head, tail
function init(args)
  local all = c.lines(os.getenv("BENCH_DATA"))
  local threads = tonumber(os.getenv("BENCH_THREADS") or "1")
  queue, head, tail = {}, 1, 0
  for k = thread_id or 1, #all, threads do
    tail = tail + 1
    queue[tail] = all[k]
  end
end

function request()
  local token = queue[head]
  local headers = { ["Content-Length"] = "0" }
  if token then
    queue[head] = nil
    head = head + 1
    headers["Cookie"] = "__Host-stockade_refresh=" .. token
  end
  return wrk.format("POST", "/v1/auth/refresh", headers)
end

function response(status, headers, body)
  local set = headers["set-cookie"] or headers["Set-Cookie"]
  if status == 200 and set then
    local token = set:match("__Host%-stockade_refresh=([^;]+)")
    if token then
      tail = tail + 1
      queue[tail] = token
    end
  end
end
