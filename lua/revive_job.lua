#!lua
-- Put a dead letter back in its job stream with fresh attempts (the admin CLI's retry).
-- KEYS[1] dead-letter stream  KEYS[2] job stream   ARGV[1] dead letter id
-- ARGV[2..] the job's field, value, ...   -> the new job's entry id, or false when the letter is gone
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return false end
local fields = {}
for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
return redis.call('XADD', KEYS[2], '*', unpack(fields))
