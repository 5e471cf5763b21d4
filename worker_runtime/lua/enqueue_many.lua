--[[
  Add many jobs in one call (the bulk path of enqueue_many): each as enqueue.lua would.

  KEYS[1] waiting   KEYS[2] ready_since   KEYS[3] delayed   KEYS[4] marker   KEYS[5] seq
  KEYS[6] counters
  ARGV[1] job key prefix   ARGV[2] number of jobs N   ARGV[3] number of distinct option sets K
  ARGV[4 .. 3 + K]  the option sets (JSON objects, as enqueue.lua's ARGV[4])
  then per job: id, name, payload, option set number (1-based)
  Bulk jobs usually share their options, so each set is sent and decoded once per call.

  Returns {index, state, index, state, ...} for the ids that exist already (0-based index in the
  batch), which are left as they are; every other job was created, waiting or delayed by its delay.
  The waiting and ready_since entries are added by one ZADD per 1,000 jobs for the whole batch.
  Invariant: every new job enters exactly one of waiting/delayed in the same step that creates it.
]]
--- @include "time"
--- @include "wake"
--- @include "store_job"
local rcall = redis.call
local waiting_key, ready_since_key, delayed_key = KEYS[1], KEYS[2], KEYS[3]
local marker_key, seq_key, counters_key = KEYS[4], KEYS[5], KEYS[6]
local prefix, count, option_sets = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local first_job_arg = 4 + option_sets
local decoded = {}
for i = 1, option_sets do
  decoded[i] = cjson.decode(ARGV[3 + i])
end
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
  local set = tonumber(ARGV[base + 3])
  local o = decoded[set]
  local job_key = prefix .. job_id
  local existing = rcall("HGET", job_key, "state")
  if existing then
    result[#result + 1] = i
    result[#result + 1] = existing
  else
    local score = job_score(o, (first_seq + i + 1) % 4294967296)
    local delay = delay_ms(o)
    if delay > 0 then
      store_job(job_key, ARGV[base + 1], ARGV[base + 2], ARGV[3 + set], o, "delayed", score, now, now_str)
      rcall("ZADD", delayed_key, int_str(now + delay), job_id)
    else
      store_job(job_key, ARGV[base + 1], ARGV[base + 2], ARGV[3 + set], o, "waiting", score, now, now_str)
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
