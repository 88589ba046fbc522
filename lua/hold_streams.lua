#!lua
-- Extend the streams of one user that this pod still has open (never re-adds a closed one).
-- KEYS[1] the user's open streams (see lua/open_stream.lua)
-- ARGV[1] hold ms  ARGV[2..] stream ids
-- -> how many were still there
local clock = redis.call('TIME')
local expiry = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000) + tonumber(ARGV[1])
local held = 0
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], expiry, ARGV[i])
    held = held + 1
  end
end
if held > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return held
