-- wrk script for the benchmark's workloads; one file, chosen by environment variables:
--   BENCH_WORKLOAD     w1 (list a user's tasks) | w2 (get one task) | w3 (create) | w4 (toggle)
--                      | w3k (create, with an Idempotency-Key)
--                      | w4k (toggle, with an Idempotency-Key and If-Match)
--                      | c1 (GET /changes with the user's cursor: one page of 1,000 changes)
--                      | w5 (GET /tasks of one list by position) | w6 (GET /tasks?q=, a search)
--   BENCH_DATA         a file with one line per user: "<user_id> <token> <task_id>,<task_id>,..."
--                      (c1: "<user_id> <token> <query string of /changes>"; w5, w6: the query
--                      string of /tasks; bench/database.py)
--   BENCH_RUN_ID       random, one per wrk run: the prefix of every Idempotency-Key, so keys
--                      never repeat across runs on the same database (w3k, w4k)
--   BENCH_THREADS      wrk's -t (w4k)
--   BENCH_CONNECTIONS  wrk's -c (w4k)
-- Every request picks a random user (and for w2/w4/w4k one of that user's tasks).
-- done() prints one line "BENCH_JSON {...}" that bench/load.py parses.
--
-- w4k sends If-Match with the version this thread last saw of the task, so it must never have
-- two toggles of one task in flight (the second would rightly get 412). Two rules see to it:
--   * thread k (1-based) of n toggles only the tasks of users k, k + n, k + 2n, ... of the file;
--   * each thread marks a task busy when it sends a toggle for it, never picks a busy task, and
--     clears the mark when a response names the task (the body is the task, or has it under
--     "current" on a 412).
-- wrk (4.x) runs one Lua state per thread, calls request() when one of the thread's
-- connections is free and response() when a response is complete, and keeps at most one
-- request in flight per connection (no pipelining here). A request can still end without a
-- response (on a socket error or an unparsable response wrk reconnects; wrk also calls
-- request() once before the run to check the script), and a response can name no task (a 5xx
-- without a body): such a mark would never be cleared. But when request() is called, the
-- connection asking has nothing in flight, so at most connections/threads - 1 of the thread's
-- toggles are: marks beyond that are stale and the oldest are dropped (a lost mark is soon the
-- oldest, as live ones are cleared within a response time). A dropped mark also forgets the
-- task's version, since whether that toggle happened is unknown.
-- A task whose version is unknown (not seen yet, or forgotten) is sent with `If-Match: *`.
-- The reference app ignores both headers; where its body has no "version" every toggle goes
-- with `If-Match: *`, and the marks are cleared by the id as with the service.

local workload = os.getenv("BENCH_WORKLOAD")
local data_file = os.getenv("BENCH_DATA")
local thread_count = 0

-- Runs in the main Lua state once per thread, before that thread's init().
function setup(thread)
   thread_count = thread_count + 1
   thread:set("thread_number", thread_count)
end

local users = {}
local serial = 0
local key_prefix = nil -- w3k, w4k: "<run id>-<thread number>-"

-- w4k state (per thread).
local versions = {} -- task id -> the version last seen
local busy = {} -- task id -> serial of the toggle in flight
local busy_count = 0
local marks, marks_head, marks_tail = {}, 1, 0 -- {task id, serial}, oldest first
local max_in_flight = 1

local function split_ids(text)
   local ids = {}
   for id in string.gmatch(text, "[^,]+") do
      ids[#ids + 1] = id
   end
   return ids
end

local function env_number(name, default)
   return tonumber(os.getenv(name) or "") or default
end

-- Runs in each thread's own Lua state.
function init(args)
   if workload == nil or data_file == nil then
      error("BENCH_WORKLOAD and BENCH_DATA must be set")
   end
   local number = thread_number or 1
   math.randomseed(os.time() * 1000 + number * 7919 + os.clock() * 1e6)
   for _ = 1, 10 do math.random() end
   local all = {}
   for line in io.lines(data_file) do
      local id, token, tasks = string.match(line, "^(%S+) (%S+) (%S+)$")
      if id ~= nil then
         local auth = "Bearer " .. token
         all[#all + 1] = {
            prefix = "/api/" .. id .. "/tasks",
            changes = "/api/" .. id .. "/changes?" .. tasks, -- c1 only: the third field
            listing = "/api/" .. id .. "/tasks?" .. tasks, -- w5, w6 only
            tasks = split_ids(tasks),
            auth = auth,
            headers = { ["Authorization"] = auth },
            json_headers = { ["Authorization"] = auth, ["Content-Type"] = "application/json" },
         }
      end
   end
   if #all == 0 then
      error("no users in " .. data_file)
   end
   users = all
   if workload == "w3k" or workload == "w4k" then
      local run_id = os.getenv("BENCH_RUN_ID")
      if run_id == nil or run_id == "" then
         run_id = string.format("%x%06x", os.time(), math.random(0, 0xffffff))
      end
      key_prefix = "bench-" .. run_id .. "-" .. number .. "-"
   end
   if workload == "w4k" then
      local threads = env_number("BENCH_THREADS", 1)
      max_in_flight = math.max(1, math.floor(env_number("BENCH_CONNECTIONS", 1) / threads))
      local mine = {}
      for index, user in ipairs(all) do
         if (index - 1) % threads == (number - 1) % threads then
            mine[#mine + 1] = user
         end
      end
      if #mine == 0 then
         error(string.format("w4k: %d users cannot be shared among %d threads", #all, threads))
      end
      users = mine
   end
end

-- w4k: forget marks that no response will clear (see the top of the file).
local function drop_stale_marks()
   while marks_head <= marks_tail do
      local mark = marks[marks_head]
      local live = busy[mark[1]] == mark[2]
      if live and busy_count < max_in_flight then
         return
      end
      marks[marks_head] = nil
      marks_head = marks_head + 1
      if live then -- the oldest mark, and one too many: its toggle's fate is unknown
         busy[mark[1]] = nil
         busy_count = busy_count - 1
         versions[mark[1]] = nil
      end
   end
end

-- w4k toggles only each user's first few tasks, so that within a run most toggles carry the
-- exact version the thread saw last (a task not seen yet in this run is sent with If-Match: *).
local W4K_TASKS_PER_USER = 5

local function idle_task()
   for _ = 1, 8 do
      local user = users[math.random(#users)]
      local tasks = user.tasks
      local count = math.min(#tasks, W4K_TASKS_PER_USER)
      local start = math.random(count)
      for offset = 0, count - 1 do
         local task = tasks[(start + offset - 1) % count + 1]
         if busy[task] == nil then
            return user, task
         end
      end
   end
   -- Every task of eight users in flight: only with far more connections than tasks.
   local user = users[math.random(#users)]
   return user, user.tasks[math.random(math.min(#user.tasks, W4K_TASKS_PER_USER))]
end

local function toggle_with_precondition()
   drop_stale_marks()
   local user, task = idle_task()
   if busy[task] == nil then
      busy_count = busy_count + 1
   end
   busy[task] = serial
   marks_tail = marks_tail + 1
   marks[marks_tail] = { task, serial }
   local version = versions[task]
   local headers = {
      ["Authorization"] = user.auth,
      ["Idempotency-Key"] = key_prefix .. serial,
      ["If-Match"] = version and ('"' .. version .. '"') or "*",
   }
   return wrk.format("PATCH", user.prefix .. "/" .. task .. "/complete", headers)
end

function request()
   if workload == "w4k" then
      serial = serial + 1
      return toggle_with_precondition()
   end
   local user = users[math.random(#users)]
   if workload == "w1" then
      return wrk.format("GET", user.prefix, user.headers)
   elseif workload == "w2" then
      return wrk.format("GET", user.prefix .. "/" .. user.tasks[math.random(#user.tasks)], user.headers)
   elseif workload == "w3" then
      serial = serial + 1
      local body = '{"title":"bench task ' .. serial .. '","description":"created under load"}'
      return wrk.format("POST", user.prefix, user.json_headers, body)
   elseif workload == "c1" then
      return wrk.format("GET", user.changes, user.headers)
   elseif workload == "w5" or workload == "w6" then
      return wrk.format("GET", user.listing, user.headers)
   elseif workload == "w4" then
      local task = user.tasks[math.random(#user.tasks)]
      return wrk.format("PATCH", user.prefix .. "/" .. task .. "/complete", user.headers)
   elseif workload == "w3k" then
      serial = serial + 1
      local body = '{"title":"bench task ' .. serial .. '","description":"created under load"}'
      local headers = {
         ["Authorization"] = user.auth,
         ["Content-Type"] = "application/json",
         ["Idempotency-Key"] = key_prefix .. serial,
      }
      return wrk.format("POST", user.prefix, headers, body)
   end
   error("unknown BENCH_WORKLOAD " .. tostring(workload))
end

-- Only w4k reads responses: with response() defined wrk parses every header and body, which
-- would cost the other workloads client CPU they never had.
if workload == "w4k" then
   function response(status, headers, body)
      -- The task is the body (2xx) or under "current" (412); its "id" is the first one.
      local task = string.match(body, '"id"%s*:%s*"([^"]+)"')
      if task == nil then
         return -- not attributable: drop_stale_marks() clears the mark in time
      end
      if busy[task] ~= nil then
         busy[task] = nil
         busy_count = busy_count - 1
      end
      local version = string.match(body, '"version"%s*:%s*(%d+)')
      if version == nil then
         local etag = headers["etag"] or headers["ETag"] or headers["Etag"]
         version = etag and string.match(etag, '^"(%d+)"$')
      end
      if version ~= nil and (status < 300 or status == 412) then
         versions[task] = version
      else
         versions[task] = nil
      end
   end
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
