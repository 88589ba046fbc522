#!lua
-- A new skill description starts a new interview: earlier questions and answers go, and the
-- interview id moves on so any generation job still running for the old one is fenced out.
-- KEYS[1] user  KEYS[2] questions  KEYS[3] answers   ARGV[1] description  ->  new interview id
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local interview = redis.call('HINCRBY', KEYS[1], 'interviewId', 1)
redis.call('HSET', KEYS[1], 'skillDescription', ARGV[1], 'status', 'QUESTION_NOT_READY',
  'questionIds', '', 'total', 0, 'generationFailed', 0)
redis.call('HDEL', KEYS[1], 'score')
redis.call('DEL', KEYS[2], KEYS[3])
return interview
