#!lua
-- Store a stream ticket and index it under its user (so deleting the user finds it), dropping
-- the index entries of tickets that expired.
-- KEYS[1] ticket  KEYS[2] the user's tickets index (sorted set: digest -> expiry ms, Redis time)
-- ARGV[1] the ticket's digest  ARGV[2] "<chat id>:<session digest>"  ARGV[3] ttl ms  -> 1
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[2], ttl)  -- every entry expires by now + ttl: the index outlives none
return 1
