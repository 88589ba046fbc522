#!lua
-- Open one SSE stream of a user, unless the user already holds the most streams allowed on all
-- pods together. A stream's entry lasts until its expiry unless the pod holding it extends it
-- (lua/hold_streams.lua): the streams of a dead pod drop out here once they expire.
-- KEYS[1] the user's open streams (sorted set: stream id -> expiry, ms of Redis time)
-- ARGV[1] stream id  ARGV[2] streams per user max  ARGV[3] hold ms
-- -> 1 opened, 0 the user is at the cap
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
-- Every entry expires by now + hold: the key outlives none of them.
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
