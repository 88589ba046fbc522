-- Append one chunk to the reply's log and publish it, fenced by generation and writer token
-- so a stale or duplicate worker cannot write. The SSE frame is built here, once, and is what
-- both the log and the channel carry.
-- The writer's lease is renewed by its heartbeat (renew_reply.lua), not per chunk.
-- The writer names the seq it appends, so a retry after a lost answer (a timeout) is not
-- appended twice.
-- KEYS[1] chat  KEYS[2] log  KEYS[3] partial text
-- ARGV[1] generation  ARGV[2] token  ARGV[3] data JSON  ARGV[4] content  ARGV[5] log ttl s
-- ARGV[6] channel  ARGV[7] PUBLISH or SPUBLISH  ARGV[8] seq of this chunk
-- ->  seq, or 0 when fenced out
local reply = redis.call('HMGET', KEYS[1], 'replyGen', 'replyToken', 'replyStatus', 'replySeq')
if reply[1] ~= ARGV[1] or reply[2] ~= ARGV[2] or reply[3] ~= 'streaming' then return 0 end
local seq = tonumber(ARGV[8])
if seq <= tonumber(reply[4]) then return seq end  -- appended already: this is a retry
if seq ~= tonumber(reply[4]) + 1 then return 0 end
redis.call('HSET', KEYS[1], 'replySeq', seq)
local frame = 'id: ' .. ARGV[1] .. '-' .. seq .. '\ndata: ' .. ARGV[3] .. '\n\n'
redis.call('XADD', KEYS[2], '0-' .. seq, 'f', frame)
if seq == 1 then redis.call('EXPIRE', KEYS[2], ARGV[5]) end
redis.call('APPEND', KEYS[3], ARGV[4])
redis.call(ARGV[7], ARGV[6], frame)
return seq
