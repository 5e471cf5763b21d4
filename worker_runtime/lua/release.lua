--[[
  Hand a claimed job back unfinished (graceful shutdown): waiting again, attempt not counted.

  KEYS[1] job hash   KEYS[2] active   KEYS[3] waiting   KEYS[4] ready_since   KEYS[5] marker
  KEYS[6] suspects
  ARGV[1] job id     ARGV[2] token

  Returns 1 when released, -1 if the job does not exist, -2 if the token is stale.
  Invariant: the job keeps its priority score and its original ready time, so its age stays true;
  a suspect stays one. Garbage in the fields it reads never stops it part-way: an attempts_made
  that is not a number is left for the next claim to dead-letter, a garbled ready time is now.
]]
--- @include "time"
--- @include "lease"
--- @include "wake"
--- @include "make_ready"
local rcall = redis.call
local job_key, active_key, waiting_key, ready_since_key, marker_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local job_id, token = ARGV[1], ARGV[2]

local f, lease_error = held_lease(job_key, token, "ready_at", "created_at", "attempts_made")
if not f then
  return lease_error
end
local ready_at = tonumber(f[3]) or tonumber(f[4]) or now_ms()
rcall("ZREM", active_key, job_id)
if tonumber(f[5]) then
  rcall("HINCRBY", job_key, "attempts_made", -1)
end
rcall("HDEL", job_key, "token")
make_ready(job_key, job_id, waiting_key, ready_since_key, KEYS[6], ready_at)
wake(marker_key)
return 1
