#!lua flags=no-writes
-- The workers' capacity as their live reports (report_capacity.lua) add up.
-- KEYS[1] reports  KEYS[2] expiries
-- -> {slots, ms until the first running job should end (-1: none can tell),
--     average chat job ms weighted by slots (-1: none known)}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local slots, soonest = 0, -1
local timed_slots, timed_ms = 0, 0
for _, consumer in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], now, '+inf')) do
  local report = redis.call('HGET', KEYS[1], consumer)
  if report then
    local s, at, job = string.match(report, '^(%d+) (-?%d+) (-?%d+)$')
    s, at, job = tonumber(s), tonumber(at), tonumber(job)
    slots = slots + s
    if at >= 0 then
      local wait = math.max(0, at - now)
      if soonest < 0 or wait < soonest then soonest = wait end
    end
    if job >= 0 then
      timed_slots = timed_slots + s
      timed_ms = timed_ms + s * job
    end
  end
end
local average = -1
if timed_slots > 0 then average = math.floor(timed_ms / timed_slots) end
return {slots, soonest, average}
