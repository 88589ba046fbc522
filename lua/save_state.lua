#!lua
-- Store a pending login's state unless the service already holds LOGIN_STATES_MAX of them.
-- KEYS[1] state  KEYS[2] pending states (sorted set: state -> expiry ms, Redis time)
-- ARGV[1] state  ARGV[2] grant JSON  ARGV[3] ttl ms  ARGV[4] pending states max
-- -> 0 stored, else ms until the oldest pending state expires (the ceiling is reached)
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) - now)
end
local ttl = tonumber(ARGV[3])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[2], ttl)  -- every entry expires by now + ttl: the index outlives none
return 0
