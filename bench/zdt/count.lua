-- wrk script for bench/zero-downtime.sh: counts every response by HTTP
-- status and by the release id in its body ("release":"<id>", as the
-- Laravel example's GET / answers), per thread, and prints machine-readable
-- "zdt <key> <value>" lines at the end next to wrk's own report.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  releases = {}
  unparsed = 0
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  local id = body and body:match('"release":"(%d+)"')
  if id then
    releases[id] = (releases[id] or 0) + 1
  else
    unparsed = unparsed + 1
  end
end

function done(summary, latency, requests)
  local st, rel, bad = {}, {}, 0
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses") or {}) do st[k] = (st[k] or 0) + v end
    for k, v in pairs(t:get("releases") or {}) do rel[k] = (rel[k] or 0) + v end
    bad = bad + (t:get("unparsed") or 0)
  end
  local non2xx = 0
  for code, n in pairs(st) do
    io.write(string.format("zdt status %d %d\n", code, n))
    if code < 200 or code > 299 then non2xx = non2xx + n end
  end
  local ids = {}
  for id in pairs(rel) do table.insert(ids, id) end
  table.sort(ids)
  for _, id in ipairs(ids) do
    io.write(string.format("zdt release %s %d\n", id, rel[id]))
  end
  local e = summary.errors
  io.write(string.format("zdt requests %d\n", summary.requests))
  io.write(string.format("zdt duration_us %d\n", summary.duration))
  io.write(string.format("zdt non2xx %d\n", non2xx))
  io.write(string.format("zdt unparsed %d\n", bad))
  io.write(string.format("zdt socket_errors %d\n", e.connect + e.read + e.write + e.timeout))
  io.write(string.format("zdt errors_detail connect=%d read=%d write=%d timeout=%d status=%d\n",
    e.connect, e.read, e.write, e.timeout, e.status))
  for _, p in ipairs({50, 90, 99, 99.9}) do
    io.write(string.format("zdt p%s_us %d\n", tostring(p), latency:percentile(p)))
  end
  io.write(string.format("zdt max_us %d\n", latency.max))
end
