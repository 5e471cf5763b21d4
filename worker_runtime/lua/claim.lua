--[[
  Promote due scheduled jobs (delayed, retrying), then claim up to N ready jobs under a lease. A
  job whose TTL ran out before its first start is dropped as expired instead of being claimed; a
  job whose hash is missing or garbled is dead-lettered with the reason instead.

  A suspect (a job whose worker was lost while running it: stalls > 0, indexed in `suspects`) runs
  alone: it is handed out on its own, and only to a worker running nothing. A busy worker that
  meets one when no other does reserves it (the `isolation` key, for one lease, refreshed by its
  lease extensions) and claims nothing until it is idle, so a suspect never starves behind a
  fleet that is never idle; the other workers claim the jobs around it.

  KEYS[1] waiting   KEYS[2] ready_since   KEYS[3] active   KEYS[4] marker   KEYS[5] expired
  KEYS[6] counters  KEYS[7] dead   KEYS[8] suspects   KEYS[9] isolation
  KEYS[10] flow (hash, flow.FlowField)   KEYS[11] rate (jobs started in the rate window)
  KEYS[12] breakers   KEYS[13] delayed   KEYS[14] group_held (group -> ms its window reopens)
  KEYS[15..] the scheduled sets, score = due time (states.SCHEDULED)
  ARGV[1] job key prefix   ARGV[2] worker id   ARGV[3] max jobs to claim   ARGV[4] lease ms
  ARGV[5] max jobs to promote per scheduled set   ARGV[6] expired jobs to keep (-1 = all)
  ARGV[7] jobs the worker is running now
  ARGV[8] dead jobs to keep   ARGV[9] ms a dead job is kept
  ARGV[10] group_waiting key prefix   ARGV[11] group_rate key prefix
  ARGV[12] most jobs one claim parks for their group's limit before it stops popping

  Flow control (the `flow` hash; no field, no cost but one HMGET): paused claims nothing; a rate
  limit of rate_jobs per rate_ms starts at most that many jobs per fixed window across all workers
  (the window opens with its first start, counted in `rate`); max_running caps the jobs in active;
  held_until (postpone.lua: a handler raised RateLimited for the queue) holds claims until then.
  A claim held back by one of them answers why and for how long (held, held_ms), and wakes nobody.
  A job whose name's circuit breaker is open is parked instead of claimed: delayed until the
  breaker's cool-off ends (include "breaker"); once it has, the first one claimed is let through
  and the breaker is half-open until its verdict (or one cool-off), its other jobs parked until then.

  Group limits (group_rate_jobs per group_rate_ms, for jobs enqueued with a group): each group has
  its own fixed window (`group_rate:<group>`). A popped job whose group used its window is parked
  out of waiting, into `group_waiting:<group>` with its waiting score (it stays a waiting job: its
  state is unchanged, counted by the flow hash's group_parked), and the group is indexed in
  `group_held` by when its window reopens; the claim pops on to fill its count, up to ARGV[12]
  parks. A claim first releases the parked jobs of the groups whose window reopened, at most as
  many per group as it may start in a window, so a group's backlog costs O(its limit) per window.
  With the limit removed, parked jobs are all released, in chunks, by the next claims.

  Returns {next_due_in_ms, {name of each expired job}, {id of each job dead-lettered}, isolate,
  held, held_ms, parked, job, ...}: parked counts the jobs parked by a breaker or a group limit; held is 0, or 1 paused, 2 rate limited, 3 capped (flow.HOLD_CODES),
  held_ms until the rate window reopens (rate limited; else -1); next_due_in_ms is how long until the earliest job left in a scheduled set is due, or
  a held group's window reopens (-1 if none), so an idle worker knows how long it may block; isolate is 1 when this worker reserved
  a suspect and must run nothing before its next claim, else 0; each job is {id, name, payload,
  attempt, options (JSON), ready_at, token, stalls}, a field missing from the hash as nil (the
  worker dead-letters a job it cannot read, through fail.lua).
  Invariant: a claimed job leaves waiting and enters active (scored by lease expiry) in one step;
  its token is "<worker id>:<attempt>.<stalls>", and a recovered job has one stall more, so a lease
  recovered and claimed again gets a new token. An expired job leaves waiting and enters expired
  in one step, and only if it never started; an unusable one leaves waiting for dead (the dead
  set trimmed to its retention in the same step), checked before anything is written.
]]
--- @include "time"
--- @include "wake"
--- @include "make_ready"
--- @include "retain"
--- @include "kill"
--- @include "job_check"
--- @include "breaker"
local rcall = redis.call
local waiting_key, ready_since_key, active_key, marker_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local expired_key, counters_key, dead_key = KEYS[5], KEYS[6], KEYS[7]
local suspects_key, isolation_key, flow_key, rate_key = KEYS[8], KEYS[9], KEYS[10], KEYS[11]
local breakers_key, delayed_key, group_held_key = KEYS[12], KEYS[13], KEYS[14]
local group_waiting_prefix, group_rate_prefix, park_limit = ARGV[10], ARGV[11], tonumber(ARGV[12])
local prefix, worker_id = ARGV[1], ARGV[2]
local count, lease, promote_limit = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local running = tonumber(ARGV[7])
local now = now_ms()
local now_str = int_str(now)

local next_due = -1
for k = 15, #KEYS do
  local due = rcall("ZRANGEBYSCORE", KEYS[k], "-inf", now, "WITHSCORES", "LIMIT", 0, promote_limit)
  for i = 1, #due, 2 do
    local job_id = due[i]
    rcall("ZREM", KEYS[k], job_id)
    make_ready(prefix .. job_id, job_id, waiting_key, ready_since_key, suspects_key, tonumber(due[i + 1]))
  end
  local first = rcall("ZRANGE", KEYS[k], 0, 0, "WITHSCORES")
  if first[2] then
    local at = tonumber(first[2])
    if next_due == -1 or at < next_due then
      next_due = at
    end
  end
end
if next_due ~= -1 then
  next_due = math.max(0, next_due - now)
end

-- Flow control: how many jobs this claim may start, or why none.
local held, held_ms, rate_jobs, rate_used, cap = 0, -1, nil, 0, nil
local flow = rcall("HMGET", flow_key, "paused", "rate_jobs", "rate_ms", "max_running", "breaker_failures",
  "breaker_cooloff_ms", "held_until", "group_rate_jobs", "group_rate_ms", "group_parked")
local cooloff = flow[5] and tonumber(flow[6])
local group_jobs, group_ms = tonumber(flow[8]), tonumber(flow[9])
if not group_ms then
  group_jobs = nil
end
local group_parked = tonumber(flow[10]) or 0

-- Release the parked jobs of the groups whose window reopened: as many as each may start in it
-- (all of them, in chunks, once the limit is gone); about promote_limit jobs per claim at most,
-- the groups left over being due still for the next claim.
if group_parked > 0 then
  local released = 0
  local due = group_jobs and now or "+inf" -- no limit: every group is due
  for _, group in ipairs(rcall("ZRANGEBYSCORE", group_held_key, "-inf", due, "LIMIT", 0, promote_limit)) do
    if released >= promote_limit then
      break
    end
    local room, reopen = group_jobs or (promote_limit - released), group_ms or 0
    local rate_key_g = group_rate_prefix .. group
    local used = group_jobs and tonumber(rcall("GET", rate_key_g))
    if used then
      local left = rcall("PTTL", rate_key_g)
      if left > 0 then
        room, reopen = group_jobs - used, left
      end
    end
    local waiting_g = group_waiting_prefix .. group
    if room > 0 then
      local popped = rcall("ZPOPMIN", waiting_g, room)
      for i = 1, #popped, 2 do
        make_ready(prefix .. popped[i], popped[i], waiting_key, ready_since_key, suspects_key, now)
      end
      released = released + #popped / 2
    end
    if rcall("EXISTS", waiting_g) == 1 then
      rcall("ZADD", group_held_key, int_str(now + reopen), group)
    else
      rcall("ZREM", group_held_key, group)
    end
  end
  group_parked = group_parked - released
  if rcall("EXISTS", group_held_key) == 0 then
    group_parked = 0 -- no group holds any: a count that says otherwise is stale
  end
end
if flow[1] == "1" then
  held = 1
else
  cap = tonumber(flow[4])
  if cap then
    local room = cap - rcall("ZCARD", active_key)
    if room <= 0 then
      held = 3
    elseif room < count then
      count = room
    end
  end
  rate_jobs = tonumber(flow[2])
  if held == 0 and rate_jobs and tonumber(flow[3]) then
    rate_used = tonumber(rcall("GET", rate_key)) or 0
    if rate_used >= rate_jobs then
      held, held_ms = 2, rcall("PTTL", rate_key)
      if held_ms < 0 then
        rcall("PEXPIRE", rate_key, flow[3]) -- a window must always end
        held_ms = tonumber(flow[3])
      end
    elseif rate_jobs - rate_used < count then
      count = rate_jobs - rate_used
    end
  else
    rate_jobs = nil
  end
end
if held == 0 and flow[7] then -- a handler said the downstream limits us (RateLimited, postpone.lua)
  local untill = tonumber(flow[7])
  if untill and untill > now then
    held, held_ms = 2, untill - now
  else
    rcall("HDEL", flow_key, "held_until")
  end
end
if held ~= 0 then
  count = 0
end

-- The ids to hand out, already out of waiting (a suspect is handed out alone).
local taken, isolate = {}, 0
if count > 0 and rcall("EXISTS", suspects_key) == 1 then
  if running == 0 then
    -- An idle worker takes the first suspect, alone (stale index entries are dropped on the way).
    while #taken == 0 and rcall("EXISTS", suspects_key) == 1 do
      local first = rcall("ZPOPMIN", suspects_key)
      if rcall("ZREM", waiting_key, first[1]) == 1 then
        taken[1] = first[1]
      end
    end
  else
    local holder = rcall("GET", isolation_key)
    if not holder then
      rcall("SET", isolation_key, worker_id, "PX", lease)
      holder = worker_id
    end
    if holder == worker_id then
      isolate = 1
    else
      -- Another worker drains for the suspects: take the jobs around them.
      local skip = rcall("ZCARD", suspects_key)
      for _, job_id in ipairs(rcall("ZRANGE", waiting_key, 0, count + skip - 1)) do
        if #taken < count and not rcall("ZSCORE", suspects_key, job_id) then
          rcall("ZREM", waiting_key, job_id)
          taken[#taken + 1] = job_id
        end
      end
    end
  end
end
local plain = count > 0 and #taken == 0 and isolate == 0 and rcall("EXISTS", suspects_key) == 0
if plain then
  local popped = rcall("ZPOPMIN", waiting_key, count)
  for i = 1, #popped, 2 do
    taken[#taken + 1] = popped[i]
  end
end
if running == 0 and rcall("GET", isolation_key) == worker_id then
  rcall("DEL", isolation_key) -- idle now: whatever it drained for, the reservation is over
end

local expired, buried = {}, {}
local parked = 0
-- Until when a job named `name` is parked by its open breaker (nil: claim it). The first job
-- claimed once the cool-off is over is let through, and the breaker goes half-open.
local function park_until(name)
  if not cooloff or not name then
    return nil
  end
  local state, untill = breaker_state(breakers_key, name)
  if not state then
    return nil
  end
  if now >= untill then
    rcall("HSET", breakers_key, name, "half:" .. int_str(now + cooloff))
    return nil
  end
  return untill
end
-- The group of a job (nil: none), read only under a group limit; most jobs have no "group" in
-- their options, which a plain find tells without decoding them.
local function group_of(opts)
  if not opts or not string.find(opts, '"group"', 1, true) then
    return nil
  end
  local ok, o = pcall(cjson.decode, opts)
  if ok and type(o) == "table" and type(o["group"]) == "string" then
    return o["group"]
  end
  return nil
end
local group_parks = 0
-- Park a job whose group used its window, until the window reopens (ZADD LT: the earliest wins).
local function park_in_group(job_id, job_key, group, rate_key_g)
  local score = rcall("HGET", job_key, "score")
  if not tonumber(score) then
    score = FALLBACK_SCORE
  end
  rcall("ZADD", group_waiting_prefix .. group, score, job_id)
  local left = rcall("PTTL", rate_key_g)
  if left < 0 then
    rcall("PEXPIRE", rate_key_g, group_ms) -- a window must always end
    left = group_ms
  end
  rcall("ZADD", group_held_key, "LT", int_str(now + left), group)
  group_parks = group_parks + 1
end
local result = {next_due, expired, buried, isolate, held, held_ms, parked}
local expiry = int_str(now + lease)
local numbers = {[4] = "attempts_made", [5] = "ready_at", [6] = "created_at", [7] = "expires_at",
  [8] = "started_at", [9] = "stalls"}
local function hand_out(job_id)
  local job_key = prefix .. job_id
  rcall("ZREM", ready_since_key, job_id)
  local f = rcall("HMGET", job_key, "name", "payload", "opts", "attempts_made", "ready_at",
    "created_at", "expires_at", "started_at", "stalls", "state")
  local problem = job_problem(f, f[1] or f[2] or f[3] or f[6] or f[10], numbers)
  if problem then
    kill(job_key, job_id, dead_key, counters_key, now, "CorruptJob: " .. problem, tonumber(ARGV[8]),
      tonumber(ARGV[9]), prefix)
    buried[#buried + 1] = job_id
  elseif f[7] and not f[8] and now >= tonumber(f[7]) then
    rcall("HSET", job_key, "state", "expired", "finished_at", now_str)
    rcall("ZADD", expired_key, now_str, job_id)
    expired[#expired + 1] = f[1] or ""
  else
    local group = group_jobs and group_of(f[3])
    local rate_key_g = group and group_rate_prefix .. group
    if group and (tonumber(rcall("GET", rate_key_g)) or 0) >= group_jobs then
      park_in_group(job_id, job_key, group, rate_key_g)
      parked = parked + 1
      return
    end
    local untill = park_until(f[1])
    if untill then
      rcall("HSET", job_key, "state", "delayed", "ready_at", int_str(untill))
      rcall("ZADD", delayed_key, int_str(untill), job_id)
      parked = parked + 1
    else
      local attempt = (tonumber(f[4]) or 0) + 1
      local stalls = tonumber(f[9]) or 0
      local token = worker_id .. ":" .. attempt .. "." .. stalls
      rcall("HSET", job_key, "state", "active", "token", token, "worker", worker_id,
        "started_at", now_str, "attempts_made", attempt)
      rcall("ZADD", active_key, expiry, job_id)
      result[#result + 1] = {job_id, f[1], f[2], attempt, f[3], f[5] or f[6], token, stalls}
      if group and rcall("INCR", rate_key_g) == 1 then
        rcall("PEXPIRE", rate_key_g, group_ms) -- this start opened the group's window
      end
    end
  end
end
for _, job_id in ipairs(taken) do
  hand_out(job_id)
end
-- Jobs parked for their group took claim slots: pop on for the other groups, within the bound.
local more = park_limit
while plain and group_parks > 0 and more > 0 and #result - 7 < count do
  local popped = rcall("ZPOPMIN", waiting_key, math.min(count - (#result - 7), more))
  if #popped == 0 then
    break
  end
  more = more - #popped / 2
  for i = 1, #popped, 2 do
    hand_out(popped[i])
  end
end
group_parked = group_parked + group_parks
if group_parked > 0 then
  if group_parked ~= tonumber(flow[10]) then
    rcall("HSET", flow_key, "group_parked", group_parked)
  end
  local first = rcall("ZRANGE", group_held_key, 0, 0, "WITHSCORES")
  if first[2] then
    local reopens = group_jobs and math.max(0, tonumber(first[2]) - now) or 0
    if next_due == -1 or reopens < next_due then
      result[1] = reopens
    end
  end
elseif flow[10] then
  rcall("HDEL", flow_key, "group_parked")
end
result[7] = parked
if #expired > 0 then
  rcall("HINCRBY", counters_key, "expired", #expired)
  retain(expired_key, tonumber(ARGV[6]), prefix)
end

local started = #result - 7
if rate_jobs and started > 0 then
  if rcall("INCRBY", rate_key, started) == started then
    rcall("PEXPIRE", rate_key, flow[3]) -- this start opened the window
  end
  rate_used = rate_used + started
end

-- Wake the next idle worker while jobs it may claim remain. Suspects alone do not wake anyone: a
-- busy worker could not take them (and would wake the next one again, round and round); idle
-- workers find them within their longest block. Nor does a claim flow control holds back, or one
-- that used up the window or the cap: the next worker would be held too.
local open = held == 0 and not (rate_jobs and rate_used >= rate_jobs)
  and not (cap and rcall("ZCARD", active_key) >= cap)
if open and rcall("ZCARD", waiting_key) > rcall("ZCARD", suspects_key) then
  wake(marker_key)
end
return result
