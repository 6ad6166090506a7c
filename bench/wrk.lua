-- wrk script for the four workloads; one file, chosen by environment variables:
--   BENCH_WORKLOAD  w1 (list a user's tasks) | w2 (get one task) | w3 (create) | w4 (toggle)
--   BENCH_DATA      a file with one line per user: "<user_id> <token> <task_id>,<task_id>,..."
-- Every request picks a random user (and for w2/w4 one of that user's tasks).
-- done() prints one line "BENCH_JSON {...}" that bench/load.py parses.

local workload = os.getenv("BENCH_WORKLOAD")
local data_file = os.getenv("BENCH_DATA")
local thread_count = 0

-- Runs in the main Lua state once per thread, before init().
function setup(thread)
   thread_count = thread_count + 1
   thread:set("thread_number", thread_count)
end

local users = {}
local serial = 0

local function split_ids(text)
   local ids = {}
   for id in string.gmatch(text, "[^,]+") do
      ids[#ids + 1] = id
   end
   return ids
end

-- Runs in each thread's own Lua state.
function init(args)
   if workload == nil or data_file == nil then
      error("BENCH_WORKLOAD and BENCH_DATA must be set")
   end
   math.randomseed(os.time() * 1000 + (thread_number or 0) * 7919 + os.clock() * 1e6)
   for _ = 1, 10 do math.random() end
   for line in io.lines(data_file) do
      local id, token, tasks = string.match(line, "^(%S+) (%S+) (%S+)$")
      if id ~= nil then
         local auth = "Bearer " .. token
         users[#users + 1] = {
            prefix = "/api/" .. id .. "/tasks",
            tasks = split_ids(tasks),
            headers = { ["Authorization"] = auth },
            json_headers = { ["Authorization"] = auth, ["Content-Type"] = "application/json" },
         }
      end
   end
   if #users == 0 then
      error("no users in " .. data_file)
   end
end

function request()
   local user = users[math.random(#users)]
   if workload == "w1" then
      return wrk.format("GET", user.prefix, user.headers)
   elseif workload == "w2" then
      return wrk.format("GET", user.prefix .. "/" .. user.tasks[math.random(#user.tasks)], user.headers)
   elseif workload == "w3" then
      serial = serial + 1
      local body = '{"title":"bench task ' .. serial .. '","description":"created under load"}'
      return wrk.format("POST", user.prefix, user.json_headers, body)
   elseif workload == "w4" then
      local task = user.tasks[math.random(#user.tasks)]
      return wrk.format("PATCH", user.prefix .. "/" .. task .. "/complete", user.headers)
   end
   error("unknown BENCH_WORKLOAD " .. tostring(workload))
end

-- Runs in the main Lua state after the run. Latencies are in microseconds.
-- errors.status counts responses with a status >= 400 (these workloads never redirect, so
-- that is every non-2xx answer).
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,' ..
      '"read_errors":%d,"write_errors":%d,"timeouts":%d,"non_2xx":%d,' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
      e.timeout, e.status, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, latency.mean))
end
