-- wrk script for the flood scenario of bench/run.sh: both of its loads, the
-- valid-key traffic and the random-key flood, each counting every status.
--
--   wrk -t2 -c50 -d5s -s bench/wrk/flood.lua URL -- keys=FILE mode=valid|flood threads=2 [n=N] [seed=S]
--
-- Options (after "--"):
--   keys=FILE     one API key per line, sent as "Authorization: Bearer KEY"
--   n=N           use only the first N keys of FILE
--   mode=valid    keys drawn uniformly at random (every key equally hot)
--   mode=flood    keys sent in file order, thread t taking lines t, t+T, t+2T…
--                 (T = threads=), so no key is sent twice until a thread has
--                 gone through its whole share; then it starts over (the
--                 BENCH_FLOOD line says how many times a thread wrapped)
--   threads=T     the -t given to wrk (mode=flood: the slicing of the file)
--   seed=S        random seed (each thread adds its own number)
--
-- init() writes "BENCH_READY" on stderr once a thread has built its requests,
-- so run.sh can start the other load when the flood is really running.
--
-- done() prints the lines run.sh parses:
--   BENCH_RESULT requests=… duration_us=… connect=… read=… write=… status=… timeout=… p50_us=… p99_us=…
--   BENCH_STATUS 200:123,429:4          every status code seen, with its count
--   BENCH_CLASSES 2xx:123,4xx:4         the same by class (1xx … 5xx)
--   BENCH_FLOOD sent=… per_thread_keys=… wraps=…     (mode=flood only)

local threads = {}
statuses = {}
sent = 0

function setup(thread)
  threads[#threads + 1] = thread
  thread:set("tid", #threads)
end

local function parse_args(args)
  local o = {}
  for _, a in ipairs(args) do
    local k, v = a:match("^([%w_]+)=(.*)$")
    if not k then error("flood.lua: bad argument '" .. a .. "' (want key=value)") end
    o[k] = v
  end
  return o
end

function init(args)
  local o = parse_args(args)
  if not o.keys then error("flood.lua: keys=FILE is required") end
  local mode = o.mode or "valid"
  local nthreads = tonumber(o.threads) or 1
  local me = tid or 1
  local limit = tonumber(o.n)
  -- the request around the key: head .. KEY .. tail (a flood file may hold a
  -- million keys, so requests are put together when sent, not kept)
  local marker = "@@KEY@@"
  local tmpl = wrk.format("GET", wrk.path, { ["Authorization"] = "Bearer " .. marker })
  local at = tmpl:find(marker, 1, true)
  local head, tail = tmpl:sub(1, at - 1), tmpl:sub(at + #marker)
  local keys, line_no = {}, 0
  for line in io.lines(o.keys) do
    if #line > 0 then
      line_no = line_no + 1
      if limit and line_no > limit then break end
      -- mode=flood: this thread's share only
      if mode ~= "flood" or (line_no - 1) % nthreads == me - 1 then
        keys[#keys + 1] = line
      end
    end
  end
  local nreqs = #keys
  if nreqs == 0 then error("flood.lua: no keys for thread " .. me .. " in " .. o.keys) end
  per_thread_keys = nreqs

  response = function(status)
    statuses[status] = (statuses[status] or 0) + 1
  end

  if mode == "flood" then
    local pos = 0
    request = function()
      pos = pos + 1
      if pos > nreqs then pos = 1 end
      sent = sent + 1
      return head .. keys[pos] .. tail
    end
  elseif mode == "valid" then
    local reqs = {}
    for i, k in ipairs(keys) do reqs[i] = head .. k .. tail end
    math.randomseed((tonumber(o.seed) or 7) * 1000 + me)
    local len = math.min(math.max(65536, 4 * nreqs), 1048576)
    local seq = {}
    for i = 1, len do seq[i] = math.random(nreqs) end
    local pos = 0
    request = function()
      pos = pos + 1
      if pos > len then pos = 1 end
      return reqs[seq[pos]]
    end
  else
    error("flood.lua: mode must be valid or flood, got '" .. mode .. "'")
  end
  io.stderr:write("BENCH_READY\n")
  io.stderr:flush()
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
  local agg, classes = {}, {}
  local total_sent, min_keys, max_wraps, flood = 0, nil, 0, false
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    if type(s) == "table" then
      for code, n in pairs(s) do
        agg[code] = (agg[code] or 0) + n
        local class = string.format("%dxx", math.floor(code / 100))
        classes[class] = (classes[class] or 0) + n
      end
    end
    local n, k = t:get("sent"), t:get("per_thread_keys")
    if type(n) == "number" and n > 0 and type(k) == "number" and k > 0 then
      flood = true
      total_sent = total_sent + n
      min_keys = math.min(min_keys or k, k)
      max_wraps = math.max(max_wraps, math.floor((n - 1) / k))
    end
  end
  local function line(tbl, fmt)
    local parts = {}
    for k, n in pairs(tbl) do parts[#parts + 1] = string.format(fmt, k, n) end
    table.sort(parts)
    return table.concat(parts, ",")
  end
  io.write("BENCH_STATUS " .. line(agg, "%d:%d") .. "\n")
  io.write("BENCH_CLASSES " .. line(classes, "%s:%d") .. "\n")
  if flood then
    io.write(string.format("BENCH_FLOOD sent=%d per_thread_keys=%d wraps=%d\n",
      total_sent, min_keys, max_wraps))
  end
end
