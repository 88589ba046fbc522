-- Hand a job back to the queue (worker shutting down): a fresh entry any worker can read,
-- and the old one acknowledged, in one step so the job is neither lost nor doubled.
-- KEYS[1] job stream   ARGV[1] group  ARGV[2] old entry id  ARGV[3..] field, value, ...
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[1], '*', unpack(fields))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return id
