--[[
  Recover jobs whose lease expired (their worker died or hung): back to waiting, to run alone;
  or to the dead-letter set when their worker was lost too often while they ran alone. One worker
  per interval does this.

  A lost lease is not an attempt (attempts count what handlers did): the job's attempts_made is
  given back and its `stalls` count grows. Its first loss may be any job's fault (it ran beside
  others), so it only makes the job a suspect, which the claim hands out alone; each later loss
  happened while it ran alone, and the job is dead-lettered when those reach the limit (BullMQ's
  maxStalledCount, counted only where the job itself can be blamed).
  A job whose worker's heartbeat is fresh and not newer than the lease's expiry is left alone:
  that worker may be alive (paused, or just reconnected) and about to extend it. A heartbeat newer
  than the expiry means the worker is alive but let the job go, so it is recovered.

  KEYS[1] stalled_check   KEYS[2] active   KEYS[3] waiting   KEYS[4] ready_since
  KEYS[5] dead            KEYS[6] counters KEYS[7] marker    KEYS[8] workers   KEYS[9] suspects
  ARGV[1] interval ms     ARGV[2] job key prefix   ARGV[3] worker id   ARGV[4] max jobs
  ARGV[5] heartbeat age ms after which a worker is presumed lost (and its entry dropped)
  ARGV[6] dead jobs to keep   ARGV[7] ms a dead job is kept
  ARGV[8] losses while running alone after which a job is dead-lettered

  Returns {recovered, dead_lettered}, or -4 when another worker holds this interval (not elected).
  Invariant: a recovered job loses its token, so the old holder's completion is refused. Every
  field read is checked before it is used: garbage never stops this part-way.
]]
--- @include "time"
--- @include "wake"
--- @include "make_ready"
--- @include "kill"
local rcall = redis.call
local check_key, active_key, waiting_key, ready_since_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local dead_key, counters_key, marker_key, workers_key = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local suspects_key = KEYS[9]
local prefix, stale_ms, limit = ARGV[2], tonumber(ARGV[5]), tonumber(ARGV[8])
local keep_dead, dead_age_ms = tonumber(ARGV[6]), tonumber(ARGV[7])

if not rcall("SET", check_key, ARGV[3], "NX", "PX", ARGV[1]) then
  return -4
end

local now = now_ms()
local seen = {} -- worker id -> last heartbeat ms, or false
local function last_seen(worker)
  if seen[worker] == nil then
    seen[worker] = false
    local raw = rcall("HGET", workers_key, worker)
    if raw then
      local ok, hb = pcall(cjson.decode, raw)
      if ok and type(hb) == "table" then
        seen[worker] = tonumber(hb["seen_ms"]) or false
      end
    end
  end
  return seen[worker]
end

local recovered, dead = 0, 0
local expired = rcall("ZRANGEBYSCORE", active_key, "-inf", now, "WITHSCORES", "LIMIT", 0, tonumber(ARGV[4]))
for i = 1, #expired, 2 do
  local job_id, lease_end = expired[i], tonumber(expired[i + 1])
  local job_key = prefix .. job_id
  local f = rcall("HMGET", job_key, "worker", "stalls", "attempts_made", "state")
  local hb = f[1] and last_seen(f[1])
  if not (hb and hb > now - stale_ms and hb <= lease_end) then
    rcall("ZREM", active_key, job_id)
    if not f[4] then
      kill(job_key, job_id, dead_key, counters_key, now,
        "CorruptJob: the job hash is missing (its id was left in active without it)", keep_dead, dead_age_ms, prefix)
      dead = dead + 1
    else
      local stalls = (tonumber(f[2]) or 0) + 1
      rcall("HSET", job_key, "stalls", stalls)
      rcall("HDEL", job_key, "token")
      if stalls > limit then
        kill(job_key, job_id, dead_key, counters_key, now, "WorkerLost: the worker running this job was lost "
          .. stalls .. " times (it died, or stopped extending its lease), the last " .. (stalls - 1)
          .. " times while the job ran alone: the job is taken to be what kills or hangs it",
          keep_dead, dead_age_ms, prefix)
        dead = dead + 1
      else
        local made = tonumber(f[3])
        if made and made > 0 then
          rcall("HSET", job_key, "attempts_made", made - 1)
        end
        make_ready(job_key, job_id, waiting_key, ready_since_key, suspects_key, now)
        recovered = recovered + 1
      end
    end
  end
end
if recovered > 0 then
  rcall("HINCRBY", counters_key, "stalled", recovered)
  wake(marker_key)
end

-- Forget workers that stopped reporting, so the operator sees only live ones.
local stale_before = now - stale_ms
local entries = rcall("HGETALL", workers_key)
for i = 1, #entries, 2 do
  local ok, hb = pcall(cjson.decode, entries[i + 1])
  if not ok or type(hb) ~= "table" or (tonumber(hb["seen_ms"]) or 0) < stale_before then
    rcall("HDEL", workers_key, entries[i])
  end
end
return {recovered, dead}
