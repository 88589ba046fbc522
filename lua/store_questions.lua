#!lua
-- Store a generated question set and open the interview, only if the job still belongs to
-- the user's current interview (a newer description wins; a stale result is dropped).
-- KEYS[1] user  KEYS[2] questions  KEYS[3] answers
-- ARGV[1] interview id  ARGV[2] first question id (drawn from the global counter, so ids are
-- unique across users and never reused), then per question: JSON, choice count, correct index
-- -> 1 stored, 0 stale
local user = redis.call('HMGET', KEYS[1], 'interviewId', 'status')
if user[1] ~= ARGV[1] or user[2] ~= 'QUESTION_NOT_READY' then return 0 end
local count = (#ARGV - 2) / 3
local first = tonumber(ARGV[2])
local ids = {}
redis.call('DEL', KEYS[2], KEYS[3])
for i = 0, count - 1 do
  local id = tostring(first + i)
  ids[#ids + 1] = id
  redis.call('HSET', KEYS[2], id, ARGV[3 + i * 3], 'n:' .. id, ARGV[4 + i * 3], 'c:' .. id, ARGV[5 + i * 3])
end
redis.call('HSET', KEYS[1], 'status', 'IN_PROGRESS', 'questionIds', table.concat(ids, ','), 'total', count)
return 1
