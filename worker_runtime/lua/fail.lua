--[[
  Record a failed attempt: schedule a retry, or move the job to the dead-letter set when its
  attempts are used up or the error is permanent.

  KEYS[1] job hash   KEYS[2] active   KEYS[3] retrying   KEYS[4] dead   KEYS[5] counters
  KEYS[6] marker     KEYS[7] flow       KEYS[8] unhold     KEYS[9] breakers   KEYS[10] breaker_fails
  KEYS[11] breaker_window
  ARGV[1] job id     ARGV[2] token    ARGV[3] error message   ARGV[4] traceback
  ARGV[5] retry delay ms              ARGV[6] "1" if permanent (no retry)
  ARGV[7] dead jobs to keep           ARGV[8] ms a dead job is kept   ARGV[9] job key prefix
  ARGV[10] the job's attempts (the worker resolves them: the producer's, else the handler's, else
           the queue's default), so nothing here reads the job's options

  Returns the job's new state, "retrying" or "dead"; -1 if the job does not exist, -2 if the
  token is stale.
  Invariant: a job leaves active and enters retrying or dead in one step; the error is kept.
  Everything it reads is checked before the first write, so no hash content leaves it part-way.
  Under a running cap (flow.max_running) the end of an attempt wakes one worker the cap held; with
  circuit breakers (flow.breaker_failures) it counts towards opening its name's breaker, by the
  run of failures or by the failure ratio of its window (include "breaker").
]]
--- @include "time"
--- @include "lease"
--- @include "wake"
--- @include "kill"
--- @include "breaker"
local rcall = redis.call
local job_key, active_key, retrying_key, dead_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local counters_key, marker_key = KEYS[5], KEYS[6]
local job_id, token = ARGV[1], ARGV[2]

local f, lease_error = held_lease(job_key, token, "attempts_made", "name")
if not f then
  return lease_error
end
-- The claim wrote attempts_made; anything else there since counts as the last attempt.
local attempts = tonumber(ARGV[10])
local made = tonumber(f[3]) or attempts

local now = now_ms()
rcall("ZREM", active_key, job_id)
rcall("HSET", job_key, "error", ARGV[3], "traceback", ARGV[4])
rcall("HINCRBY", counters_key, "failed", 1)
local flow = rcall("HMGET", KEYS[7], "max_running", "breaker_failures", "breaker_cooloff_ms", "breaker_ratio",
  "breaker_window_ms", "breaker_min_attempts")
if flow[1] then
  rcall("ZADD", KEYS[8], 0, "0")
end
if flow[2] and f[4] and tonumber(flow[2]) and tonumber(flow[3]) then
  breaker_failed(KEYS[9], KEYS[10], KEYS[11], f[4], tonumber(flow[2]), tonumber(flow[3]),
    breaker_ratio(flow[4], flow[5], flow[6]), now)
end

if ARGV[6] == "1" or made >= attempts then
  kill(job_key, job_id, dead_key, counters_key, now, nil, tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9])
  return "dead"
end

local due = now + tonumber(ARGV[5])
rcall("HSET", job_key, "state", "retrying", "ready_at", int_str(due))
rcall("HDEL", job_key, "token")
rcall("ZADD", retrying_key, int_str(due), job_id)
rcall("HINCRBY", counters_key, "retried", 1)
wake(marker_key)
return "retrying"
