-- Server clock in milliseconds: every worker and the operator share one clock, the Redis server's.
local function now_ms()
  local t = redis.call("TIME")
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers above 1e14 lose digits through Lua's default number formatting; "%.0f" keeps them exact.
local function int_str(n)
  return string.format("%.0f", n)
end
