#!lua
-- The first step of deleting a user (DELETE /user): the user hash, every session, the interview
-- and the open-stream counts go at once, so no token works any more and nothing new can be made
-- for the user (create_chat.lua, start_reply.lua and start_interview.lua need the user hash).
-- The caller names the sessions it read from the index; when the index holds one more (a login
-- raced this), nothing is written and the caller reads again.
-- KEYS[1] user  KEYS[2] sessions index  KEYS[3] questions  KEYS[4] answers  KEYS[5] open streams
-- KEYS[6..] sessions   ARGV[1..] digests of KEYS[6..]
-- -> 1 closed, -1 call again
local named = {}
for i = 1, #ARGV do named[ARGV[i]] = true end
for _, digest in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if not named[digest] then return -1 end
end
redis.call('DEL', unpack(KEYS))
return 1
