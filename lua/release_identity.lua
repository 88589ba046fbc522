#!lua
-- Unbind a provider identity from a user id, only if it is still bound to that id (a deleted
-- user's identity; a later login with it makes a new user).
-- KEYS[1] identity  ARGV[1] user id  -> 1 released, 0 bound to another id or to none
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
