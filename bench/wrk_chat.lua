-- wrk script for bench/run.py: POST a ~1 KB chat-completions body on every request and print the
-- run's figures as one machine-readable line ("BENCH_JSON {...}") when the run is done.
--
-- The body is read from the file named by $BENCH_BODY_FILE (bench/run.py writes it) so that the
-- direct and the through-OMEN runs post byte-identical requests. $BENCH_HEADERS adds request headers,
-- one "Name: value" per line (the Portkey target routes by header). Without them a built-in body is used:
--   wrk -t1 -c32 -d8s --latency -s bench/wrk_chat.lua http://127.0.0.1:PORT/v1/chat/completions

local body = nil
local path = os.getenv("BENCH_BODY_FILE")
if path ~= nil and path ~= "" then
   local f = assert(io.open(path, "rb"))
   body = f:read("*a")
   f:close()
end
if body == nil then
   body = '{"model":"bench-model","max_tokens":64,"messages":['
      .. '{"role":"system","content":"' .. string.rep("You are a terse benchmark assistant. ", 12) .. '"},'
      .. '{"role":"user","content":"' .. string.rep("Say something short about load testing. ", 12) .. '"}]}'
end

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_API_KEY") or "bench")
local extra = os.getenv("BENCH_HEADERS")
if extra ~= nil then
   for line in string.gmatch(extra, "[^\n]+") do
      local name, value = string.match(line, "^%s*([^:]+):%s*(.-)%s*$")
      if name ~= nil then
         wrk.headers[name] = value
      end
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
         .. '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,'
         .. '"lat_mean_us":%.1f,"lat_max_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9)))
end
