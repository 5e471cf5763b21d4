--- @include "time"
-- Trim a finished set (completed, dead, expired; score = finish time in ms) to its retention
-- (worker_runtime/retention.py): jobs beyond the newest `keep` (-1: no count limit) and, with
-- `max_age_ms` and `now`, jobs finished more than max_age_ms before now are deleted, hash and all.
-- At most RETAIN_BUDGET jobs per call: the caller has just added one, so a set over its limits
-- converges within a few calls, and no call deletes (or scans) a whole set.
local RETAIN_BUDGET = 100

local function retain(set_key, keep, prefix, max_age_ms, now)
  local budget = RETAIN_BUDGET
  if keep >= 0 then
    local excess = math.min(redis.call("ZCARD", set_key) - keep, budget)
    if excess > 0 then
      local old = redis.call("ZRANGE", set_key, 0, excess - 1)
      for i = 1, #old do
        redis.call("DEL", prefix .. old[i])
      end
      redis.call("ZREMRANGEBYRANK", set_key, 0, excess - 1)
      budget = budget - excess
    end
  end
  if max_age_ms and budget > 0 then
    local cutoff = "(" .. int_str(now - max_age_ms)
    local old = redis.call("ZRANGEBYSCORE", set_key, "-inf", cutoff, "LIMIT", 0, budget)
    for i = 1, #old do
      redis.call("DEL", prefix .. old[i])
    end
    if #old > 0 then
      redis.call("ZREM", set_key, unpack(old))
    end
  end
end
