#!lua
-- Consume a pending login's state, exactly once.
-- KEYS[1] state  KEYS[2] pending states   ARGV[1] state  -> the grant JSON, or false
local grant = redis.call('GET', KEYS[1])
if not grant then return false end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return grant
