-- Shared by every bench/run load script (wrk 4.x, LuaJIT).
-- BENCH_NAME names the run; BENCH_OUT is the JSON-lines file its summary is
-- appended to; BENCH_DATA is the data file the script reads.
local M = {}

function M.lines(path)
  local t = {}
  for l in io.lines(path) do
    if l ~= "" then t[#t + 1] = l end
  end
  if #t == 0 then error("no lines in " .. path) end
  return t
end

-- "a\tb" -> a, b
function M.pair(line)
  return line:match("^([^\t]*)\t(.*)$")
end

-- Gives each thread its number (1..n), so threads start at different offsets
-- and use different client addresses.
local threads = {}
function M.setup(thread)
  threads[#threads + 1] = thread
  thread:set("thread_id", #threads)
end

-- Counts answers by status in the thread (read back by done).
function M.count(status)
  local k = "s" .. status
  counts = counts or {}
  counts[k] = (counts[k] or 0) + 1
end

local function statuses()
  local all, parts = {}, {}
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    if c then
      for k, v in pairs(c) do all[k] = (all[k] or 0) + v end
    end
  end
  for k, v in pairs(all) do parts[#parts + 1] = string.format('"%s":%d', k:sub(2), v) end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- A client address for request n of thread t inside 10.<base>.0.0/16 * 4:
-- unique for 2^18 requests per thread.
function M.ip(base, t, n)
  n = n % 262144
  return string.format("10.%d.%d.%d", base + (t % 4) * 16 + math.floor(n / 65536),
    math.floor(n / 256) % 256, n % 256)
end

function M.done(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  local f = assert(io.open(os.getenv("BENCH_OUT"), "a"))
  f:write(string.format(
    '{"name":"%s","requests":%d,"seconds":%.3f,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d},"statuses":%s}\n',
    os.getenv("BENCH_NAME"), summary.requests, secs, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    e.connect, e.read, e.write, e.timeout, e.status, statuses()))
  f:close()
end

return M
