#!lua
-- Create a chat unless the user already holds the most chats allowed (or is being deleted).
-- KEYS[1] chat  KEYS[2] user's chat index  KEYS[3] user
-- ARGV[1] chat id  ARGV[2] now ms  ARGV[3] chats per user max
-- -> 1 created, 0 the user is at the cap, -1 no such user
if redis.call('EXISTS', KEYS[3]) == 0 then return -1 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], 'createdAt', ARGV[2], 'updatedAt', ARGV[2], 'title', '',
  'replyGen', 0, 'replyStatus', 'idle', 'replySeq', 0, 'replyToken', '', 'bytes', 0)
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
