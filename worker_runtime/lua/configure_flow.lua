--[[
  Change a queue's flow control (pause, rate limit, running cap) and wake the workers it held.

  KEYS[1] flow (hash, flow.FlowField)   KEYS[2] rate   KEYS[3] unhold   KEYS[4] marker
  KEYS[5] workers    KEYS[6] breakers   KEYS[7] breaker_fails   KEYS[8] breaker_window
  ARGV[1..] field, value, ...: each field set to its value, or deleted when the value is ""

  Returns the flow hash after the change, {field, value, ...}.
  Invariant: the change is seen by the very next claim of every worker. Workers held by flow
  control block on `unhold`: it gets one member per live worker (BZPOPMIN hands one to each
  blocked worker), and `marker` one, so a resumed or loosened queue claims at once. Without a rate
  limit the `rate` window goes with it, so a new limit starts with a full window; without
  breakers their states and failure counts go, and a new failure ratio or window starts with
  empty windows.
]]
--- @include "wake"
local rcall = redis.call
local flow_key, rate_key, unhold_key, marker_key, workers_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]

for i = 1, #ARGV, 2 do
  if ARGV[i] == "breaker_ratio" or ARGV[i] == "breaker_window_ms" then
    rcall("DEL", KEYS[8]) -- counted under other bucket widths, or for another ratio
  end
  if ARGV[i + 1] == "" then
    rcall("HDEL", flow_key, ARGV[i])
  else
    rcall("HSET", flow_key, ARGV[i], ARGV[i + 1])
  end
end
if rcall("HEXISTS", flow_key, "rate_jobs") == 0 then
  rcall("DEL", rate_key)
end
if rcall("HEXISTS", flow_key, "breaker_failures") == 0 then
  rcall("DEL", KEYS[6], KEYS[7], KEYS[8]) -- no breakers: none is open, no failure counts towards one
end
local members = {}
for i = 0, rcall("HLEN", workers_key) do
  members[#members + 1] = 0
  members[#members + 1] = tostring(i)
end
rcall("ZADD", unhold_key, unpack(members))
wake(marker_key)
return rcall("HGETALL", flow_key)
