-- Put a job into the waiting set with its priority score, and record since when it is ready.
-- The caller has removed it from wherever it was (delayed, retry, active, dead).
local function make_ready(job_key, job_id, waiting_key, ready_since_key, ready_at)
  local score = redis.call("HGET", job_key, "score")
  redis.call("ZADD", waiting_key, score, job_id)
  redis.call("ZADD", ready_since_key, int_str(ready_at), job_id)
  redis.call("HSET", job_key, "state", "waiting", "ready_at", int_str(ready_at))
end
