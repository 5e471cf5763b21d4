--[[
  Record a failed attempt: schedule a retry, or move the job to the dead-letter set when its
  attempts are used up or the error is permanent.

  KEYS[1] job hash   KEYS[2] active   KEYS[3] retry   KEYS[4] dead   KEYS[5] counters
  KEYS[6] marker
  ARGV[1] job id     ARGV[2] token    ARGV[3] error message   ARGV[4] traceback
  ARGV[5] retry delay ms              ARGV[6] "1" if permanent (no retry)

  Returns 1 when a retry is scheduled, 2 when dead-lettered, -1 if the job does not exist,
  -2 if the token is stale.
  Invariant: a job leaves active and enters retry or dead in one step; the error is kept.
]]
--- @include "time"
--- @include "lease"
--- @include "wake"
--- @include "kill"
local rcall = redis.call
local job_key, active_key, retry_key, dead_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local counters_key, marker_key = KEYS[5], KEYS[6]
local job_id, token = ARGV[1], ARGV[2]

local f, lease_error = held_lease(job_key, token, "attempts_made", "attempts")
if not f then
  return lease_error
end

local now = now_ms()
rcall("ZREM", active_key, job_id)
rcall("HSET", job_key, "error", ARGV[3], "traceback", ARGV[4])
rcall("HINCRBY", counters_key, "failed", 1)

if ARGV[6] == "1" or tonumber(f[3]) >= tonumber(f[4]) then
  kill(job_key, job_id, dead_key, counters_key, now, nil)
  return 2
end

local due = now + tonumber(ARGV[5])
rcall("HSET", job_key, "state", "failed", "ready_at", int_str(due))
rcall("HDEL", job_key, "token")
rcall("ZADD", retry_key, int_str(due), job_id)
rcall("HINCRBY", counters_key, "retried", 1)
wake(marker_key)
return 1
