--[[
  Read a queue's depth by state, its oldest ready job's ready time and its counters; read-only.

  KEYS[1] ready_since   KEYS[2] counters   KEYS[3] workers   KEYS[4] flow   KEYS[5] rate
  KEYS[6] schedule_next   KEYS[7] breakers
  KEYS[8 .. 7 + S] the scheduled sets (delayed, retrying): a due job there is ready already
  KEYS[8 + S ..] the set of each state to count, in the order of states.STATES
  ARGV[1] S, the number of scheduled sets

  Returns {now_ms, oldest_ready_ms (-1 if none), {jobs in each counted set, in KEYS order},
  {counter, value, ...}, {worker id, heartbeat JSON, ...}, {flow field, value, ...}, jobs started
  in the rate window, the earliest next tick of a schedule in ms (-1 if none), {job name, open
  breaker, ...}}. Every read is O(1) or O(log n) except the counters, workers and flow
  hashes, which stay small.
  A scheduled job that is due but not yet promoted counts as ready since its due time.
]]
--- @include "time"
local rcall = redis.call
local now = now_ms()
local scheduled = tonumber(ARGV[1])

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
consider(KEYS[1], false)
for k = 8, 7 + scheduled do
  consider(KEYS[k], true)
end

local depths = {}
for k = 8 + scheduled, #KEYS do
  depths[#depths + 1] = rcall("ZCARD", KEYS[k])
end
local tick = rcall("ZRANGE", KEYS[6], 0, 0, "WITHSCORES")[2] or -1
return {now, oldest, depths, rcall("HGETALL", KEYS[2]), rcall("HGETALL", KEYS[3]), rcall("HGETALL", KEYS[4]),
  tonumber(rcall("GET", KEYS[5])) or 0, tick, rcall("HGETALL", KEYS[7])}
