--[[
  Add a job: waiting (ready now) or delayed (ready at now + delay).

  KEYS[1] job hash         KEYS[2] waiting       KEYS[3] ready_since   KEYS[4] delayed
  KEYS[5] marker           KEYS[6] seq           KEYS[7] counters
  ARGV[1] job id           ARGV[2] job name      ARGV[3] payload (JSON)
  ARGV[4] priority offset (priority + 1e6, >= 0) ARGV[5] delay ms (0 = now)
  ARGV[6] attempts         ARGV[7] limits "<timeout ms>:<backoff base ms>:<backoff cap ms>"

  Returns {1, state} for a new job, {0, state} when the id exists already (an idempotency key:
  the existing job is left as it is).
  Invariant: the job enters exactly one of waiting/delayed in the same step that creates it.
]]
--- @include "time"
--- @include "wake"
local rcall = redis.call
local job_key, waiting_key, ready_since_key, delayed_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local marker_key, seq_key, counters_key = KEYS[5], KEYS[6], KEYS[7]
local job_id = ARGV[1]

local existing = rcall("HGET", job_key, "state")
if existing then
  return {0, existing}
end

local now = now_ms()
local seq = rcall("INCR", seq_key) % 4294967296
local score = int_str(tonumber(ARGV[4]) * 4294967296 + seq)
local delay = tonumber(ARGV[5])
local ready_at = now + delay
local state = "waiting"
if delay > 0 then
  state = "delayed"
end

-- ready_at is written only when it differs from created_at: fewer fields, faster bulk writes.
rcall("HSET", job_key, "name", ARGV[2], "payload", ARGV[3], "state", state, "score", score,
  "attempts", ARGV[6], "limits", ARGV[7], "created_at", int_str(now))

if delay > 0 then
  rcall("HSET", job_key, "ready_at", int_str(ready_at))
  rcall("ZADD", delayed_key, int_str(ready_at), job_id)
else
  rcall("ZADD", waiting_key, score, job_id)
  rcall("ZADD", ready_since_key, int_str(now), job_id)
end
rcall("HINCRBY", counters_key, "enqueued", 1)
wake(marker_key)
return {1, state}
