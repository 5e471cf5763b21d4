-- The one writer of a new job's hash (both enqueue scripts call it); the fields are listed in
-- worker_runtime/schema.py. `opts` is the job's options as the producer's JSON text, stored as is;
-- `o` is that text decoded. ready_at is written only when it differs from created_at, expires_at
-- only with a TTL: fewer fields make bulk writes faster.
-- The waiting score is (priority + 1000000) * 2^32 + seq (keys.PRIORITY_OFFSET): FIFO within a
-- priority, exact in a double for |priority| <= 1e6.
-- Options are in seconds, as the Python API takes them; an option at its default is absent.
local function delay_ms(o)
  return (o["delay"] or 0) * 1000
end

local function job_score(o, seq)
  return int_str(((o["priority"] or 0) + 1000000) * 4294967296 + seq)
end

local function store_job(job_key, name, payload, opts, o, state, score, now, now_str)
  redis.call("HSET", job_key, "name", name, "payload", payload, "state", state, "score", score,
    "opts", opts, "created_at", now_str)
  local delay, ttl = delay_ms(o), o["ttl"]
  if delay > 0 and ttl then
    redis.call("HSET", job_key, "ready_at", int_str(now + delay), "expires_at", int_str(now + ttl * 1000))
  elseif delay > 0 then
    redis.call("HSET", job_key, "ready_at", int_str(now + delay))
  elseif ttl then
    redis.call("HSET", job_key, "expires_at", int_str(now + ttl * 1000))
  end
end
