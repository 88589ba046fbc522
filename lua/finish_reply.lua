-- End a reply: append the final event, save the (partial) text to the history, free the chat.
-- The saved message's bytes (as start_reply.lua counts them) count against the user's storage
-- (and the chat's bytes), the messages the history cap drops are released, and the previous
-- reply's log goes (only the newest reply is ever resumed).
-- KEYS[1] chat  KEYS[2] log  KEYS[3] partial text  KEYS[4] lease  KEYS[5] messages  KEYS[6] chat index
-- KEYS[7] user  KEYS[8] the previous reply's log
-- ARGV[1] generation  ARGV[2] worker token  ARGV[3] mode  ARGV[4] data JSON  ARGV[5] now ms
-- ARGV[6] log ttl s  ARGV[7] channel  ARGV[8] PUBLISH or SPUBLISH  ARGV[9] chat id
-- ARGV[10] ms a reply may stay queued  ARGV[11] messages kept (the newest)
-- mode: 'done' / 'error' from the writer (token must match); 'stopped' from a user's stop;
-- 'fail' from the worker holding the job after its last attempt (or the API when enqueueing failed);
-- 'reap' from anyone who sees a writer that sent chunks and whose lease expired, or a reply
-- that no worker took within ARGV[10] (its job was lost).
-- -> seq of the final event, or 0 when there was nothing to end
local reply = redis.call('HMGET', KEYS[1], 'replyGen', 'replyToken', 'replyStatus', 'replySeq', 'updatedAt')
if reply[1] ~= ARGV[1] then return 0 end
if reply[3] ~= 'queued' and reply[3] ~= 'streaming' then return 0 end
local mode = ARGV[3]
if (mode == 'done' or mode == 'error') and reply[2] ~= ARGV[2] then return 0 end
if mode == 'reap' then
  if reply[3] == 'streaming' and (reply[4] == '0' or redis.call('EXISTS', KEYS[4]) == 1) then return 0 end
  if reply[3] == 'queued' and tonumber(ARGV[5]) - tonumber(reply[5] or ARGV[5]) <= tonumber(ARGV[10]) then
    return 0
  end
end
local seq = redis.call('HINCRBY', KEYS[1], 'replySeq', 1)
local event = 'error'
if mode == 'done' or mode == 'stopped' then event = 'done' end
local frame = 'id: ' .. ARGV[1] .. '-' .. seq .. '\nevent: ' .. event .. '\ndata: ' .. ARGV[4] .. '\n\n'
redis.call('XADD', KEYS[2], '0-' .. seq, 'f', frame)
redis.call('EXPIRE', KEYS[2], ARGV[6])
local text = redis.call('GET', KEYS[3]) or ''
if text ~= '' or mode == 'done' then
  local keep = tonumber(ARGV[11])
  local dropped = 0
  local excess = redis.call('LLEN', KEYS[5]) + 1 - keep
  if excess > 0 then
    for _, message in ipairs(redis.call('LRANGE', KEYS[5], 0, excess - 1)) do
      dropped = dropped + #message
    end
  end
  local message = cjson.encode({role = 'assistant', content = text, createdAt = tonumber(ARGV[5])})
  redis.call('RPUSH', KEYS[5], message)
  redis.call('LTRIM', KEYS[5], -keep, -1)
  local chat_bytes = tonumber(redis.call('HGET', KEYS[1], 'bytes') or '0')
  redis.call('HSET', KEYS[1], 'bytes', math.max(0, chat_bytes - dropped + #message))
  if redis.call('EXISTS', KEYS[7]) == 1 then  -- never recreated for a user being deleted
    local stored = tonumber(redis.call('HGET', KEYS[7], 'storedBytes') or '0')
    redis.call('HSET', KEYS[7], 'storedBytes', math.max(0, stored - dropped + #message))
  end
end
redis.call('DEL', KEYS[3], KEYS[4], KEYS[8])
redis.call('HSET', KEYS[1], 'replyStatus', 'idle', 'replyToken', '', 'updatedAt', ARGV[5])
redis.call('ZADD', KEYS[6], ARGV[5], ARGV[9])
redis.call(ARGV[8], ARGV[7], frame)
return seq
