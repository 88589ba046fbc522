#!lua
-- Create the user on first login (idempotent) and open a session in one step.
-- KEYS[1] user  KEYS[2] session
-- ARGV[1] user id  ARGV[2] username  ARGV[3] createdAt ms  ARGV[4] session ttl s  ARGV[5] provider
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'userId', ARGV[1], 'username', ARGV[2], 'createdAt', ARGV[3],
    'provider', ARGV[5], 'skillDescription', '', 'status', 'NOT_STARTED', 'interviewId', 0)
end
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4])
return 1
