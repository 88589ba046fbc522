#!lua flags=allow-oom
-- allow-oom: ending a reply must work on a full Redis (its readers would wait otherwise), and it
-- adds only the final frame while it frees the partial text and the lease.
-- End a reply: append the final event, save the (partial) text to the history, free the chat,
-- and compact the finished log into one string. The saved message's bytes (as start_reply.lua
-- counts them) count against the user's storage (and the chat's bytes), the messages the history
-- cap drops are released, and the previous reply's log goes (only the newest reply is resumed).
-- Frames are built in the format of backend/sse.py
-- (frame(); the compacted log: expand_compacted()); a unit test parses what this script builds.
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
-- The compacted log (backend/sse.py, expand_compacted): each chunk's length in bytes, the
-- reply's text (KEYS[3], whole already) and the final event, in one string that answers every
-- event id as the Stream did: about 1.4 KiB for a 200-word reply whose Stream took 13.7 KiB.
-- Only a complete log whose every chunk is exactly {"content": <string>} and whose contents add
-- up to the text is compacted; any other stays a Stream. Readers take either form
-- (read_log.lua). Bounded: the loop holds Redis about a microsecond per entry.
local text = redis.call('GET', KEYS[3]) or ''
local compacted = nil
if seq <= 20000 then
  local entries = redis.call('XRANGE', KEYS[2], '-', '+')
  if #entries == seq then
    local sizes, total = {}, 0
    for i = 1, seq - 1 do
      local entry = entries[i]
      local head = 'id: ' .. ARGV[1] .. '-' .. i .. '\ndata: {"content":'
      local body = entry[2][2]
      local literal = string.sub(body, #head + 1, -4)  -- the content's JSON string
      local size = nil
      if entry[1] == '0-' .. i and string.sub(body, 1, #head) == head and string.sub(body, -3) == '}\n\n'
          and string.sub(literal, 1, 1) == '"' then
        if not string.find(literal, '\\', 1, true) then
          if string.find(literal, '"', 2, true) == #literal then size = #literal - 2 end
        else
          local ok, decoded = pcall(cjson.decode, literal)
          if ok and type(decoded) == 'string' then size = #decoded end
        end
      end
      if not size then
        sizes = nil
        break
      end
      if size < 255 then sizes[i] = string.char(size) else sizes[i] = '\255' .. size .. ';' end
      total = total + size
    end
    if sizes and total == #text then
      local blob = table.concat(sizes)
      compacted = #blob .. ' ' .. event .. '\n' .. blob .. text .. ARGV[4]
    end
  end
end
if compacted then
  redis.call('SET', KEYS[2], compacted, 'EX', ARGV[6])  -- replaces the Stream
else
  redis.call('EXPIRE', KEYS[2], ARGV[6])
end
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
