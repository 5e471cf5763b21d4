--[[
  Record a running job's progress.

  KEYS[1] job hash
  ARGV[1] token   ARGV[2] progress (JSON)

  Returns 1, -1 if the job does not exist, or -2 if the token is stale (the job is no longer this
  worker's).
  Invariant: only the current lease holder writes progress, and never into a deleted job.
]]
--- @include "lease"
local f, lease_error = held_lease(KEYS[1], ARGV[1])
if not f then
  return lease_error
end
redis.call("HSET", KEYS[1], "progress", ARGV[2])
return 1
