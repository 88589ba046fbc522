#!lua
-- A job failed for good: a dead letter with its fields, error, attempts and time, and the job
-- gone from its stream with its attempt count, in one step (never lost, never both).
-- KEYS[1] job stream  KEYS[2] attempts hash  KEYS[3] dead-letter stream
-- ARGV[1] group  ARGV[2] entry id  ARGV[3] error  ARGV[4] failed at (ms)  ARGV[5] dead-letter cap
-- ARGV[6..] the job's field, value, ...   -> the dead letter's id
local attempts = redis.call('HGET', KEYS[2], ARGV[2]) or '0'
local fields = {'job', ARGV[2], 'stream', KEYS[1], 'error', ARGV[3], 'attempts', attempts, 'failedAt', ARGV[4]}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', unpack(fields))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
return id
