#!lua
-- Log out one session: its key and its entry in the user's sessions index.
-- KEYS[1] session  KEYS[2] the user's sessions index   ARGV[1] the session's digest  -> 1
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
