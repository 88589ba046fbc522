#!lua
-- Log out every session of a user. The caller names the sessions it read from the index; when
-- the index holds one more (a login raced this), nothing is written and the caller reads again.
-- KEYS[1] the user's sessions index  KEYS[2..] its sessions   ARGV[1..] digests of KEYS[2..]
-- -> sessions ended, or -1 call again
local named = {}
for i = 1, #ARGV do named[ARGV[i]] = true end
for _, digest in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if not named[digest] then return -1 end
end
local ended = 0
if #KEYS > 1 then ended = redis.call('DEL', unpack(KEYS, 2)) end
redis.call('DEL', KEYS[1])
return ended
