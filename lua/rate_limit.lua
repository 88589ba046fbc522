#!lua
-- GCRA: at most ARGV[2] requests in a burst, refilling one every ARGV[1] ms.
-- KEYS[1] limiter  ->  0 when allowed, else milliseconds until the next one is.
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allowed_at = new_tat - burst * interval
if now < allowed_at then return math.ceil(allowed_at - now) end
redis.call('SET', KEYS[1], new_tat, 'PX', math.max(1, math.ceil(new_tat - now)))
return 0
