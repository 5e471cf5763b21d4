--[[
  Recover jobs whose lease expired (their worker died or hung): back to waiting, or to the
  dead-letter set when that attempt was their last. One worker per interval does this.

  KEYS[1] stalled_check   KEYS[2] active   KEYS[3] waiting   KEYS[4] ready_since
  KEYS[5] dead            KEYS[6] counters KEYS[7] marker    KEYS[8] workers
  ARGV[1] interval ms     ARGV[2] job key prefix   ARGV[3] worker id   ARGV[4] max jobs
  ARGV[5] heartbeat age ms after which a worker entry is dropped

  Returns {recovered, dead_lettered}, or {-1, 0} when another worker holds this interval.
  Invariant: a recovered job loses its token, so the old holder's completion is refused.
]]
--- @include "time"
--- @include "wake"
--- @include "make_ready"
--- @include "kill"
local rcall = redis.call
local check_key, active_key, waiting_key, ready_since_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local dead_key, counters_key, marker_key, workers_key = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local prefix = ARGV[2]

if not rcall("SET", check_key, ARGV[3], "NX", "PX", ARGV[1]) then
  return {-1, 0}
end

local now = now_ms()
local recovered, dead = 0, 0
local expired = rcall("ZRANGEBYSCORE", active_key, "-inf", now, "LIMIT", 0, tonumber(ARGV[4]))
for _, job_id in ipairs(expired) do
  local job_key = prefix .. job_id
  rcall("ZREM", active_key, job_id)
  local f = rcall("HMGET", job_key, "attempts_made", "attempts")
  if tonumber(f[1]) >= tonumber(f[2]) then
    kill(job_key, job_id, dead_key, counters_key, now, "lease expired: the worker running the last attempt was lost")
    dead = dead + 1
  else
    rcall("HDEL", job_key, "token")
    make_ready(job_key, job_id, waiting_key, ready_since_key, now)
    recovered = recovered + 1
  end
end
if recovered > 0 then
  rcall("HINCRBY", counters_key, "stalled", recovered)
  wake(marker_key)
end

-- Forget workers that stopped reporting, so the operator sees only live ones.
local stale_before = now - tonumber(ARGV[5])
local entries = rcall("HGETALL", workers_key)
for i = 1, #entries, 2 do
  local ok, hb = pcall(cjson.decode, entries[i + 1])
  if not ok or (tonumber(hb["seen_ms"]) or 0) < stale_before then
    rcall("HDEL", workers_key, entries[i])
  end
end
return {recovered, dead}
