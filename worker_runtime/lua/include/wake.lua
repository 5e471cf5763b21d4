-- Wake one idle worker blocked on BZPOPMIN of the marker. A single member keeps the set tiny; the
-- woken worker re-adds it after its claim if work remains, so wake-ups chain across idle workers.
local function wake(marker_key)
  redis.call("ZADD", marker_key, 0, "0")
end
