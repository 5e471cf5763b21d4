--[[
  Replay a dead-lettered job: waiting again with fresh attempts; its last error is kept.

  KEYS[1] job hash   KEYS[2] dead   KEYS[3] waiting   KEYS[4] ready_since   KEYS[5] marker
  KEYS[6] counters
  ARGV[1] job id

  Returns 1 when replayed, -1 if the job does not exist, -3 if it is not dead.
]]
--- @include "time"
--- @include "wake"
--- @include "make_ready"
local rcall = redis.call
local job_key, dead_key, waiting_key, ready_since_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local job_id = ARGV[1]
local state = rcall("HGET", job_key, "state")
if not state then
  return -1
end
if state ~= "dead" or rcall("ZREM", dead_key, job_id) == 0 then
  return -3
end
rcall("HSET", job_key, "attempts_made", 0)
rcall("HDEL", job_key, "finished_at")
make_ready(job_key, job_id, waiting_key, ready_since_key, now_ms())
rcall("HINCRBY", KEYS[6], "replayed", 1)
wake(KEYS[5])
return 1
