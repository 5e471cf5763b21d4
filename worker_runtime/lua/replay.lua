--[[
  Replay a dead-lettered job: waiting again with fresh attempts; its last error is kept.

  KEYS[1] job hash   KEYS[2] dead   KEYS[3] waiting   KEYS[4] ready_since   KEYS[5] marker
  KEYS[6] counters
  ARGV[1] job id

  Returns 1 when replayed, -1 if the job does not exist, -3 if it is not dead.
  Invariant: the job leaves dead and enters waiting in one step. It keeps its started_at, so a TTL
  (which bounds only the time to a job's first start) never drops a replayed job. An id in the
  dead-letter set with no dead job behind it (-1, -3) leaves the set, so replaying everything in
  the set always ends; a live job it names is left as it is. A replayed job's lost-worker count
  starts again too: it is no suspect.
]]
--- @include "time"
--- @include "wake"
--- @include "make_ready"
local rcall = redis.call
local job_key, dead_key, waiting_key, ready_since_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local job_id = ARGV[1]
local state = rcall("HGET", job_key, "state")
if state ~= "dead" then
  rcall("ZREM", dead_key, job_id)
  if not state then
    return -1
  end
  return -3
end
rcall("ZREM", dead_key, job_id)
rcall("HSET", job_key, "attempts_made", 0)
rcall("HDEL", job_key, "finished_at", "stalls")
make_ready(job_key, job_id, waiting_key, ready_since_key, nil, now_ms())
rcall("HINCRBY", KEYS[6], "replayed", 1)
wake(KEYS[5])
return 1
