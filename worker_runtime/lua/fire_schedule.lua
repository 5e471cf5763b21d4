--[[
  Fire one tick of a schedule: enqueue its job (id "<schedule>:<tick>") and store the next tick,
  only if the stored next tick is the one being fired.

  KEYS[1] schedule_next (zset: schedule -> next tick ms)   KEYS[2] job hash   KEYS[3] waiting
  KEYS[4] ready_since   KEYS[5] delayed   KEYS[6] marker   KEYS[7] seq   KEYS[8] counters
  ARGV[1] schedule name   ARGV[2] the tick fired (ms)   ARGV[3] the next tick (ms)
  ARGV[4] "1" to enqueue, "0" to skip the tick (missed)   ARGV[5] job id   ARGV[6] job name
  ARGV[7] payload (JSON)   ARGV[8] options (JSON)

  Returns 1 when the job was enqueued, 0 when the tick was skipped (or its job id existed), -5
  when the tick is stale: the stored tick is another (the tick was fired already) or the schedule
  is gone.
  Invariant: the fence and the advance are one step, so each tick is enqueued at most once
  however many callers fire it; the stored tick only moves forward.
]]
--- @include "time"
--- @include "add_job"
local rcall = redis.call
local stored = rcall("ZSCORE", KEYS[1], ARGV[1])
if not stored or tonumber(stored) ~= tonumber(ARGV[2]) then
  return -5
end
rcall("ZADD", KEYS[1], ARGV[3], ARGV[1])
if ARGV[4] ~= "1" then
  return 0
end
local k = {job = KEYS[2], waiting = KEYS[3], ready_since = KEYS[4], delayed = KEYS[5], marker = KEYS[6],
  seq = KEYS[7], counters = KEYS[8]}
return add_job(k, ARGV[5], ARGV[6], ARGV[7], ARGV[8], now_ms())[1]
