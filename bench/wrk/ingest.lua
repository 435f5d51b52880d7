-- wrk script for bench/ingest.py: signed Shopify webhooks, each with a new delivery id.
--
--   wrk -t2 -c64 -d15s --latency -s bench/wrk/ingest.lua http://127.0.0.1:PORT/hooks/shop \
--       -- BODY_FILE SIGNATURE PREFIX
--
-- Shopify's HMAC covers only the body, so one precomputed signature is valid for every request;
-- X-Shopify-Webhook-Id is PREFIX-THREAD-COUNTER, so every request is a new durable row.
-- done() prints one line "BENCH_JSON {...}" with the totals, the status codes counted per
-- response (200 = acknowledged) and the latency percentiles in microseconds.

local threads = {}
local thread_count = 0

function setup(thread)
   thread_count = thread_count + 1
   thread:set("tid", thread_count)
   table.insert(threads, thread)
end

function init(args)
   local f = assert(io.open(args[1], "rb"))
   body = f:read("*a")
   f:close()
   prefix = args[3]
   counter = 0
   counts = {}
   headers = {
      ["Content-Type"] = "application/json",
      ["X-Shopify-Hmac-Sha256"] = args[2],
      ["X-Shopify-Topic"] = "orders/paid",
      ["X-Shopify-Shop-Domain"] = "bench.myshopify.com",
      ["X-Shopify-API-Version"] = "2025-01",
   }
end

function request()
   counter = counter + 1
   headers["X-Shopify-Webhook-Id"] = prefix .. "-" .. tid .. "-" .. counter
   return wrk.format("POST", nil, headers, body)
end

function response(status, resp_headers, resp_body)
   counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
   local totals = {}
   for _, thread in ipairs(threads) do
      local c = thread:get("counts")
      if c then
         for status, n in pairs(c) do
            totals[status] = (totals[status] or 0) + n
         end
      end
   end
   local parts = {}
   for status, n in pairs(totals) do
      table.insert(parts, string.format('"%d": %d', status, n))
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"duration_us": %d, "requests": %d, "bytes": %d, '
         .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
         .. '"status_counts": {%s}, '
         .. '"latency_us": {"min": %d, "mean": %.1f, "max": %d, "stdev": %.1f, '
         .. '"p50": %d, "p90": %d, "p99": %d, "p999": %d}}\n',
      summary.duration, summary.requests, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      table.concat(parts, ", "),
      latency.min, latency.mean, latency.max, latency.stdev,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9)
   ))
end
