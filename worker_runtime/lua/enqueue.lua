--[[
  Add a job: waiting (ready now) or delayed (ready at now + delay).

  KEYS[1] job hash   KEYS[2] waiting   KEYS[3] ready_since   KEYS[4] delayed   KEYS[5] marker
  KEYS[6] seq        KEYS[7] counters
  ARGV[1] job id     ARGV[2] job name  ARGV[3] payload (JSON)
  ARGV[4] options (JSON object, worker_runtime/options.py; read here: priority, delay, ttl)

  Returns {1, state} for a new job, {0, state} when the id exists already (an idempotency key:
  the existing job is left as it is).
  Invariant: the job enters exactly one of waiting/delayed in the same step that creates it.
]]
--- @include "time"
--- @include "add_job"
local k = {job = KEYS[1], waiting = KEYS[2], ready_since = KEYS[3], delayed = KEYS[4], marker = KEYS[5],
  seq = KEYS[6], counters = KEYS[7]}
return add_job(k, ARGV[1], ARGV[2], ARGV[3], ARGV[4], now_ms())
