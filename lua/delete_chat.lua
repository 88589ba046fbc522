#!lua
-- Delete a chat with its history; a reply in flight is ended with an error event first so no
-- reader hangs (its frame in the format of backend/sse.py). The chat's bytes are released from the user's storage. The reply logs go too,
-- except the log of a reply in flight, which its readers still read to its error event: it
-- expires as usual and is listed in the user's index of such logs (so deleting the user finds it).
-- KEYS[1] chat  KEYS[2] messages  KEYS[3] partial  KEYS[4] lease  KEYS[5] chat index
-- KEYS[6] newest reply log  KEYS[7] user  KEYS[8] the reply log before it
-- KEYS[9] the user's logs of deleted chats (sorted set: "<chat id>:<generation>" -> expiry ms)
-- ARGV[1] chat id  ARGV[2] generation seen  ARGV[3] final data JSON
-- ARGV[4] channel  ARGV[5] PUBLISH or SPUBLISH  ARGV[6] log ttl s
-- ARGV[7] 0, or only if nobody wrote to the chat after this (ms; CHAT_RETENTION_DAYS)
-- -> 1 deleted, 0 no such chat, -1 the generation moved on meanwhile (call again),
--    2 kept: written to after ARGV[7]
local reply = redis.call('HMGET', KEYS[1], 'replyGen', 'replyStatus', 'replySeq', 'bytes', 'updatedAt')
if not reply[1] then return 0 end
if reply[1] ~= ARGV[2] then return -1 end
if ARGV[7] ~= '0' and tonumber(reply[5] or '0') > tonumber(ARGV[7]) then return 2 end
if reply[2] == 'queued' or reply[2] == 'streaming' then
  local seq = tonumber(reply[3]) + 1
  local frame = 'id: ' .. ARGV[2] .. '-' .. seq .. '\nevent: error\ndata: ' .. ARGV[3] .. '\n\n'
  redis.call('XADD', KEYS[6], '0-' .. seq, 'f', frame)
  redis.call('EXPIRE', KEYS[6], ARGV[6])
  redis.call(ARGV[5], ARGV[4], frame)
  local clock = redis.call('TIME')
  local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  local ttl = tonumber(ARGV[6]) * 1000
  redis.call('ZREMRANGEBYSCORE', KEYS[9], '-inf', now)
  redis.call('ZADD', KEYS[9], now + ttl, ARGV[1] .. ':' .. ARGV[2])
  redis.call('PEXPIRE', KEYS[9], ttl)  -- every entry expires by now + ttl: the index outlives none
else
  redis.call('DEL', KEYS[6])
end
local stored = redis.call('HGET', KEYS[7], 'storedBytes')
if stored then
  redis.call('HSET', KEYS[7], 'storedBytes', math.max(0, tonumber(stored) - tonumber(reply[4] or '0')))
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[8])
redis.call('ZREM', KEYS[5], ARGV[1])
return 1
