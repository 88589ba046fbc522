#!lua
-- A failed generation is retried (the admin CLI): the interview waits for questions again,
-- only if it is still the user's current one and still failed.
-- KEYS[1] user  ARGV[1] interview id  ->  1 reopened, 0 not (superseded or not failed)
local user = redis.call('HMGET', KEYS[1], 'interviewId', 'status', 'generationFailed')
if user[1] ~= ARGV[1] or user[2] ~= 'NOT_STARTED' or user[3] ~= '1' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'QUESTION_NOT_READY', 'generationFailed', 0)
return 1
