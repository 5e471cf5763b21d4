-- Read a claimed job's fields, checking that the caller still holds its lease. Every script that
-- acts for a lease holder (complete, fail, release, progress, extend_lease) checks it here.
-- Returns the fields of HMGET(state, token, ...extra), or nil and the error code:
-- -1 the job does not exist, -2 the token is stale (the lease was recovered or the job finished).
local function held_lease(job_key, token, ...)
  local f = redis.call("HMGET", job_key, "state", "token", ...)
  if not f[1] then
    return nil, -1
  end
  if f[1] ~= "active" or f[2] ~= token then
    return nil, -2
  end
  return f
end
