-- The wrk script of `python -m bench.ingest --client wrk` (bench/wrk.py runs it).
--
--   wrk -t T -c C -d Ns -s bench/ingest_wrk.lua URL -- PREFIX
--
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
local threads = {}

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
   sent = 0
   statuses = {}
   samples = {}
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
   sent = sent + 1
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
   statuses[status] = (statuses[status] or 0) + 1
   if (status < 200 or status > 299) and #samples < SAMPLES then
      local text = string.gsub(string.sub(body, 1, 200), "%s+", " ")
      samples[#samples + 1] = status .. " " .. text
   end
end

function done(summary, latency, requests)
   local total_sent, pooled, by_status, shown = 0, 0, {}, {}
   for _, thread in ipairs(threads) do
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
   io.write(string.format("ecrm-wrk duration_us %d\n", summary.duration))
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
