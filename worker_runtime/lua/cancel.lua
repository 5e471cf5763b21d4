--[[
  Cancel a job that has not started, or is not running now: waiting (parked by its group's rate
  limit or not), delayed or retrying. It is deleted, as if never enqueued.

  KEYS[1] job hash   KEYS[2] waiting   KEYS[3] ready_since   KEYS[4] suspects   KEYS[5] delayed
  KEYS[6] retrying   KEYS[7] flow (its group_parked count)
  ARGV[1] job id     ARGV[2] group_waiting key prefix

  Returns 1 when cancelled, -1 if the job does not exist, -6 if it is not waiting, delayed or
  retrying (running, or finished: left as it is).
  Invariant: the job leaves its set, its indexes (ready_since, suspects, its group's parked set and
  the flow hash's count of them) and its hash in one step.
]]
local rcall = redis.call
local job_key, waiting_key, ready_since_key, suspects_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local delayed_key, retrying_key, flow_key = KEYS[5], KEYS[6], KEYS[7]
local job_id = ARGV[1]

local f = rcall("HMGET", job_key, "state", "opts")
local state = f[1]
if not state then
  return -1
end
if state == "delayed" then
  rcall("ZREM", delayed_key, job_id)
elseif state == "retrying" then
  rcall("ZREM", retrying_key, job_id)
elseif state == "waiting" then
  if rcall("ZREM", waiting_key, job_id) == 0 and f[2] and string.find(f[2], '"group"', 1, true) then
    -- Not in waiting: parked by its group's rate limit (claim.lua).
    local ok, o = pcall(cjson.decode, f[2])
    if ok and type(o) == "table" and type(o["group"]) == "string"
      and rcall("ZREM", ARGV[2] .. o["group"], job_id) == 1 then
      if rcall("HINCRBY", flow_key, "group_parked", -1) <= 0 then
        rcall("HDEL", flow_key, "group_parked")
      end
    end
  end
  rcall("ZREM", ready_since_key, job_id)
  rcall("ZREM", suspects_key, job_id)
else
  return -6
end
rcall("DEL", job_key)
return 1
