-- The wrk script of `python -m bench.ingest --client wrk` (bench/wrk.py runs it).
--
--   wrk -t T -c C -d Ns -s bench/ingest_wrk.lua URL -- PREFIX SECONDS
--
-- Each thread sends for SECONDS from its first request, then lets the requests in flight be
-- answered and says so ("ecrm-wrk drained"); N is only an upper bound (bench/wrk.py stops wrk
-- when every thread is drained), so every request sent is answered unless the server hangs.
-- Thread i (from 1) cycles through the requests of the file PREFIX.i, which bench/wrk.py wrote:
--   a first line naming the header whose value must never repeat ("-": none) and the number of
--   requests, then per request its path, its header count, each header's name and value (one a
--   line), the body's length in bytes and the body itself. Every request is a POST.
-- Past the end of its file a thread starts again, appending "-r<round>" to the unique header's
-- value, so a webhook id is still never sent twice (the body is then sent again).
-- Each thread counts what it sent and its answers by status and keeps the first few non-2xx
-- answers; done() adds the threads' counts up (wrk runs each thread in a Lua state of its own:
-- setup() keeps the threads, thread:get() copies a thread's globals) and prints them as lines
-- starting with "ecrm-wrk " for bench/wrk.py to parse.

local SAMPLES = 5
local LATER_MS = 3600000  -- delay() after the load: no new request, those in flight finish
local threads = {}

local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } ecrm_timespec;
int clock_gettime(int clock, ecrm_timespec *now);
]]
local timespec = ffi.new("ecrm_timespec")

local function now()
   ffi.C.clock_gettime(1, timespec)  -- CLOCK_MONOTONIC
   return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) / 1e9
end

function setup(thread)
   table.insert(threads, thread)
   thread:set("id", #threads)
end

function init(args)
   local file = assert(io.open(args[1] .. "." .. id, "rb"))
   data = file:read("*a")
   file:close()
   local first = string.find(data, "\n", 1, true)
   local header, size = string.match(string.sub(data, 1, first - 1), "^(%S+) (%d+)$")
   unique = header ~= "-" and header or nil
   count = tonumber(size)
   assert(count > 0, "no requests in " .. args[1] .. "." .. id)
   start, pos, round = first + 1, first + 1, 0
   load_seconds = tonumber(args[2])
   checking = id == 1  -- wrk calls request() of its first thread once to check it, and sends nothing
   sent, answered, scheduled = 0, 0, 0
   started, deadline, last, drained = nil, nil, nil, false
   statuses = {}
   samples = {}
end

-- Told once per thread when its load is over and nothing it sent is unanswered; bench/wrk.py
-- then stops wrk (SIGINT), so that every request sent is answered and the database can be
-- checked against the answers.
local function report_drained(t)
   if not drained and deadline and t >= deadline and answered == sent and scheduled <= 0 then
      drained = true
      io.write("ecrm-wrk drained " .. id .. "\n")
      io.flush()
   end
end

-- Called before each request (defining it makes wrk wait for a timer of the given ms first).
function delay()
   local t = now()
   if deadline == nil then
      started, deadline = t, t + load_seconds
   end
   if t < deadline then
      scheduled = scheduled + 1  -- request() follows
      return 0
   end
   report_drained(t)
   return LATER_MS
end

-- The file is read whole at init and each request parsed when it is sent, so that a thread
-- starts sending right away: wrk starts a thread as soon as its init() returns, before the
-- next thread's, and counts its answers from then on.
local function line()
   local stop = string.find(data, "\n", pos, true)
   local text = string.sub(data, pos, stop - 1)
   pos = stop + 1
   return text
end

function request()
   if pos > #data then
      pos, round = start, round + 1
   end
   if checking then
      checking = false
   else
      sent, scheduled = sent + 1, scheduled - 1
   end
   local target = line()
   local headers = {}
   for _ = 1, tonumber(line()) do
      local name = line()
      headers[name] = line()
   end
   local length = tonumber(line())
   local body = string.sub(data, pos, pos + length - 1)
   pos = pos + length
   if round > 0 and unique and headers[unique] then
      headers[unique] = headers[unique] .. "-r" .. round
   end
   return wrk.format("POST", target, headers, body)
end

function response(status, headers, body)
   answered = answered + 1
   statuses[status] = (statuses[status] or 0) + 1
   if (status < 200 or status > 299) and #samples < SAMPLES then
      local text = string.gsub(string.sub(body, 1, 200), "%s+", " ")
      samples[#samples + 1] = status .. " " .. text
   end
   last = now()
   report_drained(last)
end

function done(summary, latency, requests)
   local total_sent, pooled, by_status, shown = 0, 0, {}, {}
   local first, final = nil, nil
   for _, thread in ipairs(threads) do
      local started, last = thread:get("started"), thread:get("last")
      if started and (first == nil or started < first) then
         first = started
      end
      if last and (final == nil or last > final) then
         final = last
      end
      total_sent = total_sent + thread:get("sent")
      pooled = pooled + thread:get("count")
      for status, n in pairs(thread:get("statuses")) do
         by_status[status] = (by_status[status] or 0) + n
      end
      for _, sample in ipairs(thread:get("samples")) do
         if #shown < SAMPLES then
            shown[#shown + 1] = sample
         end
      end
   end
   local errors = summary.errors
   -- from the first request to the last answer (wrk's own duration ends when it was stopped)
   io.write(string.format("ecrm-wrk duration_us %d\n", first and final and (final - first) * 1e6 or 0))
   io.write(string.format("ecrm-wrk answered %d\n", summary.requests))
   io.write(string.format("ecrm-wrk sent %d\n", total_sent))
   io.write(string.format("ecrm-wrk pool %d\n", pooled))
   io.write(string.format("ecrm-wrk latency_us %d %d\n", latency:percentile(50), latency:percentile(99)))
   io.write(string.format("ecrm-wrk socket_errors %d %d %d %d\n",
                          errors.connect, errors.read, errors.write, errors.timeout))
   for status, n in pairs(by_status) do
      io.write(string.format("ecrm-wrk status %d %d\n", status, n))
   end
   for _, sample in ipairs(shown) do
      io.write("ecrm-wrk sample " .. sample .. "\n")
   end
end
