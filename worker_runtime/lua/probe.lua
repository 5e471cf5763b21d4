--[[
  Read a queue's depth by state, its oldest ready job's ready time and its counters; read-only.

  KEYS[1] waiting  KEYS[2] ready_since  KEYS[3] delayed  KEYS[4] retry  KEYS[5] active
  KEYS[6] completed  KEYS[7] dead  KEYS[8] counters  KEYS[9] workers

  Returns {now_ms, waiting, delayed, retry, active, completed, dead, oldest_ready_ms (-1 if none),
  {counter, value, ...}, {worker id, heartbeat JSON, ...}}. Every read is O(1) or O(log n) except
  the counters and workers hashes, which stay small.
  A delayed or retry job that is due but not yet promoted counts as ready since its due time.
]]
--- @include "time"
local rcall = redis.call
local now = now_ms()

local oldest = -1
local function consider(key, only_due)
  local first = rcall("ZRANGE", key, 0, 0, "WITHSCORES")
  if first[2] then
    local t = tonumber(first[2])
    if (not only_due or t <= now) and (oldest == -1 or t < oldest) then
      oldest = t
    end
  end
end
consider(KEYS[2], false)
consider(KEYS[3], true)
consider(KEYS[4], true)

return {
  now,
  rcall("ZCARD", KEYS[1]), rcall("ZCARD", KEYS[3]), rcall("ZCARD", KEYS[4]),
  rcall("ZCARD", KEYS[5]), rcall("ZCARD", KEYS[6]), rcall("ZCARD", KEYS[7]),
  oldest,
  rcall("HGETALL", KEYS[8]),
  rcall("HGETALL", KEYS[9]),
}
