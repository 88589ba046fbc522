#!lua flags=allow-oom
-- allow-oom: ending a reply must work on a full Redis (its readers would wait otherwise), and it
-- adds only the final frame while it frees the partial text and the lease.
-- End a reply: append the final event, save the (partial) text to the history, free the chat.
-- KEYS[1] chat  KEYS[2] log  KEYS[3] partial text  KEYS[4] lease  KEYS[5] messages  KEYS[6] chat index
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
  redis.call('RPUSH', KEYS[5], cjson.encode({role = 'assistant', content = text, createdAt = tonumber(ARGV[5])}))
  redis.call('LTRIM', KEYS[5], -tonumber(ARGV[11]), -1)
end
redis.call('DEL', KEYS[3], KEYS[4])
redis.call('HSET', KEYS[1], 'replyStatus', 'idle', 'replyToken', '', 'updatedAt', ARGV[5])
redis.call('ZADD', KEYS[6], ARGV[5], ARGV[9])
redis.call(ARGV[8], ARGV[7], frame)
return seq
