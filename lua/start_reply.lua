#!lua
-- Store the user's prompt and open a new reply generation: one reply in flight per chat. The
-- prompt's bytes as stored (its message JSON: the UTF-8 text, escaped, with role and time) count
-- against the user's storage (the user hash's storedBytes, and the chat's bytes, released when
-- the chat goes); the oldest messages the history cap drops are released in the same step.
-- KEYS[1] chat  KEYS[2] messages  KEYS[3] chat index  KEYS[4] user
-- ARGV[1] chat id  ARGV[2] message JSON  ARGV[3] title  ARGV[4] now ms  ARGV[5] messages kept (the newest)
-- ARGV[6] storage max bytes (per user)
-- -> new generation, -1 no such chat (or user), -2 a reply is already in flight, -3 over the storage max
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[4]) == 0 then return -1 end
if redis.call('HGET', KEYS[1], 'replyStatus') ~= 'idle' then return -2 end
local size = #ARGV[2]
local dropped = 0
local excess = redis.call('LLEN', KEYS[2]) + 1 - tonumber(ARGV[5])
if excess > 0 then
  for _, message in ipairs(redis.call('LRANGE', KEYS[2], 0, excess - 1)) do
    dropped = dropped + #message
  end
end
local stored = tonumber(redis.call('HGET', KEYS[4], 'storedBytes') or '0')
if size > dropped and stored - dropped + size > tonumber(ARGV[6]) then return -3 end
local gen = redis.call('HINCRBY', KEYS[1], 'replyGen', 1)
local chat_bytes = tonumber(redis.call('HGET', KEYS[1], 'bytes') or '0')
redis.call('HSET', KEYS[1], 'replyStatus', 'queued', 'replySeq', 0, 'replyToken', '', 'updatedAt', ARGV[4],
  'bytes', math.max(0, chat_bytes - dropped + size))
if redis.call('HGET', KEYS[1], 'title') == '' then redis.call('HSET', KEYS[1], 'title', ARGV[3]) end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[5]), -1)
redis.call('HSET', KEYS[4], 'storedBytes', math.max(0, stored - dropped + size))
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
return gen
