--- @include "retain"
-- Move a job whose attempts ended into the dead-letter set, keeping payload, error and attempts,
-- then trim the set to its retention (include "retain"): `keep` dead jobs at most, none older
-- than `max_age_ms`.
local function kill(job_key, job_id, dead_key, counters_key, now, err, keep, max_age_ms, prefix)
  redis.call("HSET", job_key, "state", "dead", "finished_at", int_str(now))
  if err then
    redis.call("HSET", job_key, "error", err)
  end
  redis.call("HDEL", job_key, "token")
  redis.call("ZADD", dead_key, int_str(now), job_id)
  redis.call("HINCRBY", counters_key, "dead", 1)
  retain(dead_key, keep, prefix, max_age_ms, now)
end
