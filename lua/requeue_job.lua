#!lua
-- Hand a job back to the queue (worker shutting down): a fresh entry any worker can read, the
-- old one acknowledged and deleted, and its attempt count moved to the new entry, in one step so
-- the job is neither lost, doubled, nor given fresh attempts.
-- KEYS[1] job stream  KEYS[2] attempts hash   ARGV[1] group  ARGV[2] old entry id
-- ARGV[3..] field, value, ...   -> the new entry id
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[1], '*', unpack(fields))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
local attempts = redis.call('HGET', KEYS[2], ARGV[2])
if attempts then
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call('HSET', KEYS[2], id, attempts)
end
return id
