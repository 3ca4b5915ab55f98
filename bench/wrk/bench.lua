-- wrk script used by bench/run.sh for every closed-loop run.
--
--   wrk -t2 -c50 -d10s -s bench/wrk/bench.lua URL -- [key=value ...]
--
-- Options (after "--"):
--   count=1            count responses per HTTP status. It costs wrk some
--                      throughput (wrk then parses headers and body), so it is
--                      only used where the expected status is not 2xx.
--   keys=FILE          one API key per line; every request carries one of them
--   n=N                use only the first N keys of FILE
--   dist=zipf|uniform  how keys are drawn (default uniform)
--   s=1.0              Zipf exponent (rank r drawn with weight r^-s)
--   auth=header|query  "Authorization: Bearer KEY" (default) or ?api_key=KEY
--   seed=N             random seed (each thread adds its own number)
--
-- The done() hook prints two machine-readable lines that run.sh parses:
--   BENCH_RESULT requests=… duration_us=… connect=… read=… write=… status=… timeout=… p50_us=… p99_us=…
--   BENCH_STATUS 200:123,401:4     (or "uncounted" without count=1)
-- wrk's own "status" error counter is every response with status > 399.

local threads = {}
statuses = {}

function setup(thread)
  threads[#threads + 1] = thread
  thread:set("tid", #threads)
end

local function parse_args(args)
  local o = {}
  for _, a in ipairs(args) do
    local k, v = a:match("^([%w_]+)=(.*)$")
    if not k then error("bench.lua: bad argument '" .. a .. "' (want key=value)") end
    o[k] = v
  end
  return o
end

local function read_keys(file, limit)
  local keys = {}
  for line in io.lines(file) do
    if #line > 0 then
      keys[#keys + 1] = line
      if limit and #keys >= limit then break end
    end
  end
  if #keys == 0 then error("bench.lua: no keys in " .. file) end
  return keys
end

-- A precomputed sequence of key indexes: drawing is done once, in init(), so
-- that request() costs a table lookup only.
local function index_sequence(nkeys, dist, s, len)
  local seq = {}
  if dist == "zipf" then
    local cdf, total = {}, 0
    for r = 1, nkeys do
      total = total + r ^ (-s)
      cdf[r] = total
    end
    for i = 1, len do
      local u = math.random() * total
      local lo, hi = 1, nkeys
      while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        if cdf[mid] < u then lo = mid + 1 else hi = mid end
      end
      seq[i] = lo
    end
  else
    for i = 1, len do seq[i] = math.random(nkeys) end
  end
  return seq
end

function init(args)
  local o = parse_args(args)
  if o.count == "1" then
    response = function(status)
      statuses[status] = (statuses[status] or 0) + 1
    end
  end
  if o.keys then
    local keys = read_keys(o.keys, tonumber(o.n))
    local reqs = {}
    for i, k in ipairs(keys) do
      if o.auth == "query" then
        local sep = wrk.path:find("?", 1, true) and "&" or "?"
        reqs[i] = wrk.format("GET", wrk.path .. sep .. "api_key=" .. k)
      else
        reqs[i] = wrk.format("GET", wrk.path, { ["Authorization"] = "Bearer " .. k })
      end
    end
    math.randomseed((tonumber(o.seed) or 42) * 1000 + (tid or 0))
    local len = math.min(math.max(65536, 4 * #keys), 1048576)
    local seq = index_sequence(#keys, o.dist or "uniform", tonumber(o.s) or 1.0, len)
    local pos = 0
    request = function()
      pos = pos + 1
      if pos > len then pos = 1 end
      return reqs[seq[pos]]
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
  local agg, counted = {}, false
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    if type(s) == "table" then
      for code, n in pairs(s) do
        agg[code] = (agg[code] or 0) + n
        counted = true
      end
    end
  end
  if not counted then
    io.write("BENCH_STATUS uncounted\n")
    return
  end
  local parts = {}
  for code, n in pairs(agg) do parts[#parts + 1] = string.format("%d:%d", code, n) end
  table.sort(parts)
  io.write("BENCH_STATUS " .. table.concat(parts, ",") .. "\n")
end
