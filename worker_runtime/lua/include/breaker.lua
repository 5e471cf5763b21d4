-- Circuit breakers, one per job name, configured per queue in the flow hash: breaker_failures
-- consecutive failed attempts ("0": no such trigger), or a share breaker_ratio of failed attempts
-- among at least breaker_min_attempts in the last breaker_window_ms, open it for
-- breaker_cooloff_ms. State in the `breakers` hash: job name -> "open:<until ms>" (its jobs are
-- parked: claims of that name stop), or "half:<until ms>" (one job let through to try; the others
-- parked until its verdict, or until then); no field: closed. Consecutive failures are counted in
-- `breaker_fails`, the attempts of the window in `breaker_window` (below).

-- The breaker's state of `name`: "open" or "half" and its until (ms), or nil when closed.
local function breaker_state(breakers_key, name)
  local raw = redis.call("HGET", breakers_key, name)
  if not raw then
    return nil, nil
  end
  local state, untill = string.match(raw, "^(%a+):(%d+)$")
  return state, tonumber(untill)
end

-- The sliding window of a job name: a ring of WINDOW_BUCKETS buckets, each `width` =
-- floor(window / WINDOW_BUCKETS) ms of the server clock, bucket = floor(now / width), in the
-- `breaker_window` hash: "b:<name>" -> the newest bucket counted, "a<slot>:<name>" and
-- "f<slot>:<name>" -> the attempts and failures of bucket slot = bucket mod WINDOW_BUCKETS. When
-- the newest bucket moves on, the slots it passes are emptied (they held counts a window old), so
-- every count present is within the window: the current bucket and the WINDOW_BUCKETS - 1 before
-- it. An attempt counts while younger than window - width and never once older than the window.
-- An outcome costs an HGET and an HINCRBY (two for a failure), and the turn of a bucket an HDEL
-- and an HSET: no number is formatted on the way. At most 1 + 2 x WINDOW_BUCKETS fields per job
-- name, whatever the rate. Counted only while the breaker is closed.
local WINDOW_BUCKETS = 10
local SLOT_DIGITS = "0123456789"

-- The ratio trigger from the flow hash's fields, or nil when it is not configured.
local function breaker_ratio(ratio, window_ms, min_attempts)
  local share, window, least = tonumber(ratio), tonumber(window_ms), tonumber(min_attempts)
  if share and window and least and window >= WINDOW_BUCKETS then
    return {share = share, width = math.floor(window / WINDOW_BUCKETS), least = least}
  end
  return nil
end

-- The field of `kind` ("a" attempts, "f" failures) of ring slot `slot` for `name`.
local function window_field(kind, slot, name)
  return kind .. string.sub(SLOT_DIGITS, slot + 1, slot + 1) .. ":" .. name
end

-- Every field of `name`'s window.
local function window_fields(name)
  local fields = {"b:" .. name}
  for slot = 0, WINDOW_BUCKETS - 1 do
    fields[#fields + 1] = window_field("a", slot, name)
    fields[#fields + 1] = window_field("f", slot, name)
  end
  return fields
end

-- Count one attempt of `name` (failed or not) in the bucket of `now`.
local function window_count(window_key, name, ratio, now, failed)
  local bucket = math.floor(now / ratio.width)
  local newest = tonumber(redis.call("HGET", window_key, "b:" .. name))
  if not newest or bucket > newest then
    if newest then -- the ring turned: empty the slots from the one after the newest to now's
      local stale = {}
      for passed = math.max(newest + 1, bucket - WINDOW_BUCKETS + 1), bucket do
        stale[#stale + 1] = window_field("a", passed % WINDOW_BUCKETS, name)
        stale[#stale + 1] = window_field("f", passed % WINDOW_BUCKETS, name)
      end
      redis.call("HDEL", window_key, unpack(stale))
    end
    redis.call("HSET", window_key, "b:" .. name, int_str(bucket))
    newest = bucket
  end
  -- (A clock stepped back counts in the newest bucket: its own slot may hold a newer one.)
  local slot = newest % WINDOW_BUCKETS
  redis.call("HINCRBY", window_key, window_field("a", slot, name), 1)
  if failed then
    redis.call("HINCRBY", window_key, window_field("f", slot, name), 1)
  end
end

-- Count a failed attempt of `name`; true when its window now holds at least `least` attempts of
-- which at least `share` failed.
local function window_tripped(window_key, name, ratio, now)
  window_count(window_key, name, ratio, now, true)
  local attempts, failures = 0, 0
  local counts = redis.call("HMGET", window_key, unpack(window_fields(name)))
  for i = 2, #counts, 2 do -- after "b:": attempts, failures of each slot
    attempts = attempts + (tonumber(counts[i]) or 0)
    failures = failures + (tonumber(counts[i + 1]) or 0)
  end
  return attempts >= ratio.least and failures / attempts >= ratio.share
end

-- A failed attempt of a job named `name`: count it; open the breaker at `threshold` consecutive
-- failures (0: never by a run), when the window's ratio trips (`ratio`, nil: not configured), or
-- again when the job let through half-open failed. An opened breaker starts with an empty window.
-- Returns true when it opened.
local function breaker_failed(breakers_key, fails_key, window_key, name, threshold, cooloff, ratio, now)
  local state = breaker_state(breakers_key, name)
  local trip = state == "half"
  if threshold >= 1 then
    local fails = redis.call("HINCRBY", fails_key, name, 1)
    trip = trip or (state == nil and fails >= threshold)
  end
  if not trip and ratio and state == nil then
    trip = window_tripped(window_key, name, ratio, now)
  end
  if trip then
    redis.call("HSET", breakers_key, name, "open:" .. int_str(now + cooloff))
    if ratio then
      redis.call("HDEL", window_key, unpack(window_fields(name)))
    end
  end
  return trip
end

-- A completed attempt of `name`: the failures are no longer consecutive, the window counts it;
-- a half-open breaker closes.
local function breaker_succeeded(breakers_key, fails_key, window_key, name, ratio, now)
  redis.call("HDEL", fails_key, name)
  local state = breaker_state(breakers_key, name)
  if state == "half" then
    redis.call("HDEL", breakers_key, name)
  elseif state == nil and ratio then
    window_count(window_key, name, ratio, now, false)
  end
end
