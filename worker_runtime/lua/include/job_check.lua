-- What is wrong with a job hash, as the scripts read it, before anything is moved: a job whose
-- hash is missing or garbled is dead-lettered with this reason instead of breaking a script
-- part-way (Redis does not roll back the writes a failing script made before its error).
-- `f` holds the fields read; `numbers` maps an index of `f` to the name of a field that, when
-- present, must be a number. Returns the reason, or nil when the job is usable.
local function job_problem(f, present, numbers)
  if not present then
    return "the job hash is missing (its id was left in a set without it)"
  end
  for i, name in pairs(numbers) do
    if f[i] and not tonumber(f[i]) then
      return "field " .. name .. " is not a number: " .. string.sub(f[i], 1, 40)
    end
  end
  return nil
end
