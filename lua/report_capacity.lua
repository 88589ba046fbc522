#!lua
-- A worker's capacity, for the API's load shedding; reports of workers that stopped reporting expire.
-- KEYS[1] reports (hash: consumer -> "slots free_at_ms job_ms")  KEYS[2] expiries (zset: consumer -> ms)
-- ARGV[1] consumer  ARGV[2] slots (0 withdraws the report: a worker shutting down)
-- ARGV[3] ms until its first running job should end (-1: none can tell)
-- ARGV[4] average ms of its chat jobs (-1: none finished yet)  ARGV[5] ttl ms             -> 1
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 100)
if #gone > 0 then
  redis.call('HDEL', KEYS[1], unpack(gone))
  redis.call('ZREM', KEYS[2], unpack(gone))
end
if tonumber(ARGV[2]) == 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
local free_in = tonumber(ARGV[3])
local free_at = -1
if free_in >= 0 then free_at = now + free_in end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. free_at .. ' ' .. ARGV[4])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[1])
return 1
