--[[
  Put a claimed job back for later without counting its attempt: its handler said the downstream
  is rate limiting it (raise RateLimited(seconds)). Optionally hold every claim of the queue
  until then (the flow hash's held_until, which the claim reads as a rate limit).

  KEYS[1] job hash   KEYS[2] active   KEYS[3] delayed   KEYS[4] flow
  ARGV[1] job id     ARGV[2] token    ARGV[3] ms until it may run again
  ARGV[4] "1" to hold the queue's claims for as long

  Returns 1, or -1 if the job does not exist, -2 if the token is stale.
  Invariant: the job leaves active and enters delayed in one step; attempts_made is as before the
  claim; held_until only moves later.
]]
--- @include "time"
--- @include "lease"
local rcall = redis.call
local job_key, active_key, delayed_key, flow_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local job_id, token = ARGV[1], ARGV[2]

local f, lease_error = held_lease(job_key, token, "attempts_made")
if not f then
  return lease_error
end
local due = now_ms() + tonumber(ARGV[3])
rcall("ZREM", active_key, job_id)
if tonumber(f[3]) then
  rcall("HINCRBY", job_key, "attempts_made", -1)
end
rcall("HSET", job_key, "state", "delayed", "ready_at", int_str(due))
rcall("HDEL", job_key, "token")
rcall("ZADD", delayed_key, int_str(due), job_id)
if ARGV[4] == "1" and due > (tonumber(rcall("HGET", flow_key, "held_until")) or 0) then
  rcall("HSET", flow_key, "held_until", int_str(due))
end
return 1
