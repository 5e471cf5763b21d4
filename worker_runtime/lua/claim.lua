--[[
  Promote due delayed and retry jobs, then claim up to N ready jobs under a lease.

  KEYS[1] waiting   KEYS[2] ready_since   KEYS[3] delayed   KEYS[4] retry
  KEYS[5] active    KEYS[6] marker
  ARGV[1] job key prefix   ARGV[2] worker id   ARGV[3] max jobs to claim
  ARGV[4] lease ms         ARGV[5] max jobs to promote per scheduled set

  Returns {next_due_in_ms, job...} where next_due_in_ms is how long until the earliest job left in
  delayed/retry is due (-1 if none), so an idle worker knows how long it may block and each job is {id, name, payload, attempts_made, attempts, limits,
  ready_at (created_at if never delayed), token}.
  Invariant: a claimed job leaves waiting and enters active (scored by lease expiry) in one step;
  its token is "<worker id>:<attempt>", so a lease recovered and claimed again gets a new token.
]]
--- @include "time"
--- @include "wake"
--- @include "make_ready"
local rcall = redis.call
local waiting_key, ready_since_key, delayed_key, retry_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local active_key, marker_key = KEYS[5], KEYS[6]
local prefix, worker_id = ARGV[1], ARGV[2]
local count, lease, promote_limit = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()

local function promote(scheduled_key)
  local due = rcall("ZRANGEBYSCORE", scheduled_key, "-inf", now, "WITHSCORES", "LIMIT", 0, promote_limit)
  for i = 1, #due, 2 do
    local job_id = due[i]
    rcall("ZREM", scheduled_key, job_id)
    make_ready(prefix .. job_id, job_id, waiting_key, ready_since_key, tonumber(due[i + 1]))
  end
end
promote(delayed_key)
promote(retry_key)

local result = {-1}
local function earliest(scheduled_key)
  local first = rcall("ZRANGE", scheduled_key, 0, 0, "WITHSCORES")
  if first[2] then
    local due = tonumber(first[2])
    if result[1] == -1 or due < result[1] then
      result[1] = due
    end
  end
end
earliest(delayed_key)
earliest(retry_key)
if result[1] ~= -1 then
  result[1] = math.max(0, result[1] - now)
end

if count > 0 then
  local popped = rcall("ZPOPMIN", waiting_key, count)
  local expiry = int_str(now + lease)
  for i = 1, #popped, 2 do
    local job_id = popped[i]
    local job_key = prefix .. job_id
    rcall("ZREM", ready_since_key, job_id)
    local attempt = rcall("HINCRBY", job_key, "attempts_made", 1)
    local token = worker_id .. ":" .. attempt
    rcall("HSET", job_key, "state", "active", "token", token, "worker", worker_id,
      "started_at", int_str(now))
    rcall("ZADD", active_key, expiry, job_id)
    local f = rcall("HMGET", job_key, "name", "payload", "attempts", "limits", "ready_at", "created_at")
    result[#result + 1] = {job_id, f[1], f[2], attempt, f[3], f[4], f[5] or f[6], token}
  end
end

if rcall("ZCARD", waiting_key) > 0 then
  wake(marker_key)
end
return result
