--[[
  Add many jobs in one call (the bulk path of enqueue_many): each as enqueue.lua would.

  KEYS[1] waiting   KEYS[2] ready_since   KEYS[3] delayed   KEYS[4] marker   KEYS[5] seq
  KEYS[6] counters
  ARGV[1] job key prefix   ARGV[2] number of jobs N   ARGV[3] number of distinct option sets K
  ARGV[4 .. 3 + 4K]  option sets: priority offset, delay ms, attempts, limits (as in enqueue.lua)
  then per job: id, name, payload, option set number (1-based)
  Bulk jobs usually share their options, so each job carries 4 arguments instead of 9.

  Returns {index, state, index, state, ...} for the ids that exist already (0-based index in the
  batch), which are left as they are; every other job was created, waiting or delayed by its delay.
  The waiting and ready_since entries are added by one ZADD per set for the whole batch.
  Invariant: every new job enters exactly one of waiting/delayed in the same step that creates it.
]]
--- @include "time"
--- @include "wake"
local rcall = redis.call
local waiting_key, ready_since_key, delayed_key = KEYS[1], KEYS[2], KEYS[3]
local marker_key, seq_key, counters_key = KEYS[4], KEYS[5], KEYS[6]
local prefix, count, option_sets = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local first_job_arg = 4 + 4 * option_sets
local now = now_ms()
local now_str = int_str(now)
local result = {}
local created = 0
local waiting_args, ready_since_args = {}, {}
-- One ZADD for many members costs far less than one per job; 2,000 arguments stay well inside
-- Lua's stack limit for unpack.
local function flush_ready()
  if #waiting_args > 0 then
    rcall("ZADD", waiting_key, unpack(waiting_args))
    rcall("ZADD", ready_since_key, unpack(ready_since_args))
    waiting_args, ready_since_args = {}, {}
  end
end
-- One INCRBY reserves a run of sequence numbers for the whole batch (ids that exist leave gaps).
local first_seq = rcall("INCRBY", seq_key, count) - count

for i = 0, count - 1 do
  local base = first_job_arg + 4 * i
  local job_id = ARGV[base]
  local o = 4 + 4 * (tonumber(ARGV[base + 3]) - 1)
  local job_key = prefix .. job_id
  local existing = rcall("HGET", job_key, "state")
  if existing then
    result[#result + 1] = i
    result[#result + 1] = existing
  else
    local seq = (first_seq + i + 1) % 4294967296
    local score = int_str(tonumber(ARGV[o]) * 4294967296 + seq)
    local delay = tonumber(ARGV[o + 1])
    if delay > 0 then
      local ready_at = int_str(now + delay)
      rcall("HSET", job_key, "name", ARGV[base + 1], "payload", ARGV[base + 2], "state", "delayed",
        "score", score, "attempts", ARGV[o + 2], "limits", ARGV[o + 3], "created_at", now_str,
        "ready_at", ready_at)
      rcall("ZADD", delayed_key, ready_at, job_id)
    else
      rcall("HSET", job_key, "name", ARGV[base + 1], "payload", ARGV[base + 2], "state", "waiting",
        "score", score, "attempts", ARGV[o + 2], "limits", ARGV[o + 3], "created_at", now_str)
      waiting_args[#waiting_args + 1] = score
      waiting_args[#waiting_args + 1] = job_id
      ready_since_args[#ready_since_args + 1] = now_str
      ready_since_args[#ready_since_args + 1] = job_id
      if #waiting_args >= 2000 then
        flush_ready()
      end
    end
    created = created + 1
  end
end
flush_ready()
if created > 0 then
  rcall("HINCRBY", counters_key, "enqueued", created)
  wake(marker_key)
end
return result
