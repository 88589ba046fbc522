#!lua
-- Generation failed for good: back to NOT_STARTED, unless a newer description took over.
-- KEYS[1] user  ARGV[1] interview id  ->  1 changed, 0 stale
local user = redis.call('HMGET', KEYS[1], 'interviewId', 'status')
if user[1] ~= ARGV[1] or user[2] ~= 'QUESTION_NOT_READY' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'NOT_STARTED', 'generationFailed', 1)
return 1
