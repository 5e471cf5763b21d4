-- Put a job into the waiting set with its priority score, and record since when it is ready.
-- The caller has removed it from wherever it was (delayed, retrying, active, dead).
-- A job whose worker was lost while running it (stalls > 0) is also indexed in `suspects_key`
-- (nil: the caller knows it is no suspect), so that the claim hands it out alone.
-- Garbage never makes this fail part-way: a score that is not a number queues the job last among
-- priority 0 (its order is all a score decides); an id whose hash is gone is queued as it is, with
-- no hash written for it, and the claim dead-letters it with that reason.
local FALLBACK_SCORE = "4294971590967295" -- (0 + 1000000) * 2^32 + 2^32 - 1: priority 0, last

local function make_ready(job_key, job_id, waiting_key, ready_since_key, suspects_key, ready_at)
  local f = redis.call("HMGET", job_key, "score", "stalls", "state")
  local score = f[1]
  if not tonumber(score) then
    score = FALLBACK_SCORE
  end
  redis.call("ZADD", waiting_key, score, job_id)
  redis.call("ZADD", ready_since_key, int_str(ready_at), job_id)
  if suspects_key and (tonumber(f[2]) or 0) > 0 then
    redis.call("ZADD", suspects_key, score, job_id)
  end
  if f[3] then
    redis.call("HSET", job_key, "state", "waiting", "ready_at", int_str(ready_at))
  end
end
