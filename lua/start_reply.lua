#!lua
-- Store the user's prompt and open a new reply generation: one reply in flight per chat.
-- KEYS[1] chat  KEYS[2] messages  KEYS[3] chat index
-- ARGV[1] chat id  ARGV[2] message JSON  ARGV[3] title  ARGV[4] now ms  ARGV[5] messages kept (the newest)
-- -> new generation, -1 no such chat, -2 a reply is already in flight
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HGET', KEYS[1], 'replyStatus') ~= 'idle' then return -2 end
local gen = redis.call('HINCRBY', KEYS[1], 'replyGen', 1)
redis.call('HSET', KEYS[1], 'replyStatus', 'queued', 'replySeq', 0, 'replyToken', '', 'updatedAt', ARGV[4])
if redis.call('HGET', KEYS[1], 'title') == '' then redis.call('HSET', KEYS[1], 'title', ARGV[3]) end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[5]), -1)
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
return gen
