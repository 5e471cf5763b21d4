-- Move a job whose attempts ended into the dead-letter set, keeping payload, error and attempts.
local function kill(job_key, job_id, dead_key, counters_key, now, err)
  redis.call("HSET", job_key, "state", "dead", "finished_at", int_str(now))
  if err then
    redis.call("HSET", job_key, "error", err)
  end
  redis.call("HDEL", job_key, "token")
  redis.call("ZADD", dead_key, int_str(now), job_id)
  redis.call("HINCRBY", counters_key, "dead", 1)
end
