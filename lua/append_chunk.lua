#!lua
-- Append the chunks of one reply that are ready (one or more) to its log and publish them,
-- fenced by generation and writer token so a stale or duplicate worker cannot write. The SSE
-- frames are built here, once, in the format of backend/sse.py (frame(); a unit test parses
-- what this script builds there): each chunk is its own log entry and event id (resume points do
-- not depend on batching), and one message carries them all on the channel. The writer's lease
-- is renewed by its heartbeat (renew_reply.lua), not per chunk.
-- The writer names the seq of the first chunk, so a retry after a lost answer (a timeout) is
-- not appended twice.
-- KEYS[1] chat  KEYS[2] log  KEYS[3] partial text
-- ARGV[1] generation  ARGV[2] token  ARGV[3] log ttl s  ARGV[4] channel  ARGV[5] PUBLISH or SPUBLISH
-- ARGV[6] seq of the first chunk  ARGV[7..] per chunk: data JSON, content
-- ->  seq of the last chunk, or 0 when fenced out
local reply = redis.call('HMGET', KEYS[1], 'replyGen', 'replyToken', 'replyStatus', 'replySeq')
if reply[1] ~= ARGV[1] or reply[2] ~= ARGV[2] or reply[3] ~= 'streaming' then return 0 end
local first = tonumber(ARGV[6])
local count = (#ARGV - 6) / 2
local last = first + count - 1
local current = tonumber(reply[4])
if last <= current then return last end  -- appended already: this is a retry
if first ~= current + 1 then return 0 end
local frames, text = {}, {}
for i = 0, count - 1 do
  local seq = first + i
  local frame = 'id: ' .. ARGV[1] .. '-' .. seq .. '\ndata: ' .. ARGV[7 + 2 * i] .. '\n\n'
  redis.call('XADD', KEYS[2], '0-' .. seq, 'f', frame)
  frames[#frames + 1] = frame
  text[#text + 1] = ARGV[8 + 2 * i]
end
redis.call('HSET', KEYS[1], 'replySeq', last)
if first == 1 then redis.call('EXPIRE', KEYS[2], ARGV[3]) end
redis.call('APPEND', KEYS[3], table.concat(text))
redis.call(ARGV[5], ARGV[4], table.concat(frames))
return last
