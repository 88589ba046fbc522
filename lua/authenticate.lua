#!lua flags=no-writes
-- One round trip per authenticated request: the user's hash when the session is alive.
-- KEYS[1] session  KEYS[2] user  ->  flat HGETALL of the user, or false
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local user = redis.call('HGETALL', KEYS[2])
if #user == 0 then return false end
return user
