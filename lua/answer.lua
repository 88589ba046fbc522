#!lua
-- Record an answer; the one that completes the set moves the interview to SUCCESS, once.
-- KEYS[1] user  KEYS[2] questions  KEYS[3] answers   ARGV[1] question id  ARGV[2] answer
-- -> 'recorded' | 'completed' | 'not_in_progress' | 'unknown_question' | 'out_of_range'
if redis.call('HGET', KEYS[1], 'status') ~= 'IN_PROGRESS' then return 'not_in_progress' end
local choices = redis.call('HGET', KEYS[2], 'n:' .. ARGV[1])
if not choices then return 'unknown_question' end
local answer = tonumber(ARGV[2])
if answer < 0 or answer >= tonumber(choices) then return 'out_of_range' end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
if redis.call('HLEN', KEYS[3]) < tonumber(redis.call('HGET', KEYS[1], 'total')) then
  return 'recorded'
end
local score = 0
local given = redis.call('HGETALL', KEYS[3])
for i = 1, #given, 2 do
  if redis.call('HGET', KEYS[2], 'c:' .. given[i]) == given[i + 1] then score = score + 1 end
end
redis.call('HSET', KEYS[1], 'status', 'SUCCESS', 'score', score)
return 'completed'
