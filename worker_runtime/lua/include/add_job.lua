--- @include "wake"
--- @include "store_job"
-- Add a new job, waiting (ready now) or delayed (ready at now + delay), unless its id exists:
-- the one body of enqueue.lua and fire_schedule.lua. `k` holds the keys: job, waiting,
-- ready_since, delayed, marker, seq, counters. Returns {1, state} for a new job, {0, state of the
-- existing one} when the id exists already (an idempotency key: the job is left as it is).
local function add_job(k, job_id, name, payload, opts, now)
  local existing = redis.call("HGET", k.job, "state")
  if existing then
    return {0, existing}
  end
  local o = cjson.decode(opts)
  local score = job_score(o, redis.call("INCR", k.seq) % 4294967296)
  local delay = delay_ms(o)
  local state = "waiting"
  if delay > 0 then
    state = "delayed"
  end
  store_job(k.job, name, payload, opts, o, state, score, now, int_str(now))
  if delay > 0 then
    redis.call("ZADD", k.delayed, int_str(now + delay), job_id)
  else
    redis.call("ZADD", k.waiting, score, job_id)
    redis.call("ZADD", k.ready_since, int_str(now), job_id)
  end
  redis.call("HINCRBY", k.counters, "enqueued", 1)
  wake(k.marker)
  return {1, state}
end
