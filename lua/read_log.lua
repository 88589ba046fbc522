#!lua flags=no-writes
-- A page of a reply's log, whichever form it has: the live Stream (append_chunk.lua) or the
-- string a finished reply's log is compacted into (finish_reply.lua; backend/sse.py reads it).
-- KEYS[1] log
-- ARGV[1] seq after which to read  ARGV[2] entries at most (the Stream's page)
-- -> {0, entries after ARGV[1]} for a Stream (also when there is no log yet), {1, value} compacted
if redis.call('TYPE', KEYS[1])['ok'] == 'string' then
  return {1, redis.call('GET', KEYS[1])}
end
return {0, redis.call('XRANGE', KEYS[1], '0-' .. (tonumber(ARGV[1]) + 1), '+', 'COUNT', ARGV[2])}
