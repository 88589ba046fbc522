#!lua
-- A worker takes a reply generation: it becomes the only writer (its token is the fence).
-- KEYS[1] chat  KEYS[2] lease   ARGV[1] generation  ARGV[2] worker token  ARGV[3] lease ms
-- -> 1 claimed, 0 nothing to do (superseded, stopped, deleted),
--    2 another worker already sent chunks and died: the caller ends the reply with an error
local reply = redis.call('HMGET', KEYS[1], 'replyGen', 'replyStatus', 'replySeq')
if reply[1] ~= ARGV[1] then return 0 end
if reply[2] == 'queued' or (reply[2] == 'streaming' and reply[3] == '0') then
  redis.call('HSET', KEYS[1], 'replyStatus', 'streaming', 'replyToken', ARGV[2])
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  return 1
end
if reply[2] == 'streaming' then return 2 end
return 0
