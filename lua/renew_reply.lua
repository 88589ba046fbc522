#!lua
-- The writer's heartbeat. KEYS[1] chat  KEYS[2] lease  ARGV[1] generation  ARGV[2] token  ARGV[3] lease ms
local reply = redis.call('HMGET', KEYS[1], 'replyGen', 'replyToken', 'replyStatus')
if reply[1] ~= ARGV[1] or reply[2] ~= ARGV[2] or reply[3] ~= 'streaming' then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
