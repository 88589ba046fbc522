#!lua
-- Create a chat unless the user already holds the most chats allowed.
-- KEYS[1] chat  KEYS[2] user's chat index   ARGV[1] chat id  ARGV[2] now ms  ARGV[3] chats per user max
-- -> 1 created, 0 the user is at the cap
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], 'createdAt', ARGV[2], 'updatedAt', ARGV[2], 'title', '',
  'replyGen', 0, 'replyStatus', 'idle', 'replySeq', 0, 'replyToken', '')
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
