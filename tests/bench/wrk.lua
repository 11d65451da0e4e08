-- wrk's script for tests/bench/run (DRIVER=wrk): POSTs the JSON-RPC body in the file named by
-- BENCH_BODY_FILE; with BENCH_VARY=1 each request's first address ("0x" and 40 hex digits) gets
-- last 16 digits no other request used (a random start and a count, as bench_load --vary). Its
-- summary is printed as bench_load prints it (one JSON line; wrk has no warm-up, so `answered`
-- is `requests`). An answer counts as an error by its HTTP status only.
--
--   BENCH_BODY_FILE=body.json [BENCH_VARY=1] wrk -t1 -c64 -d3s -s tests/bench/wrk.lua URL

local path = os.getenv("BENCH_BODY_FILE")
assert(path, "BENCH_BODY_FILE is not set")
local file = assert(io.open(path, "r"))
local body = file:read("*a"):gsub("%s+$", "")
file:close()

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = body

local prefix, suffix
if os.getenv("BENCH_VARY") == "1" then
    local s, e = string.find(body, '"0x' .. string.rep("%x", 40) .. '"')
    assert(s, "BENCH_VARY: the body has no address to vary")
    prefix, suffix = body:sub(1, s + 26), body:sub(e)
end

local high, n = 0, 0

function init(args)
    math.randomseed(os.time() + math.floor(os.clock() * 1000000))
    high = math.random(0, 2147483647)
end

function request()
    if not prefix then
        return wrk.format()
    end
    n = n + 1
    return wrk.format(nil, nil, nil, prefix .. string.format("%08x%08x", high, n) .. suffix)
end

function done(summary, latency, requests)
    local e = summary.errors
    local seconds = summary.duration / 1000000
    io.write(string.format(
        '{"requests":%d,"errors":%d,"seconds":%.3f,"rps":%.0f,"p50_us":%d,"p99_us":%d,' ..
        '"p999_us":%d,"answered":%d,"first_error":""}\n',
        summary.requests, e.connect + e.read + e.write + e.status + e.timeout, seconds,
        summary.requests / seconds, latency:percentile(50), latency:percentile(99),
        latency:percentile(99.9), summary.requests))
end
