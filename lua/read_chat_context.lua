#!lua flags=no-writes
-- What a chat job tells the LLM, read in one call on the multiplexed path (a job start in a burst
-- no longer waits for a pooled connection twice): the user's profile and the chat's newest messages.
-- KEYS[1] user  KEYS[2] messages   ARGV[1] messages kept (the newest)
-- -> {{field, value, ...} of the user's hash, {message JSON, ...}}
return {redis.call('HGETALL', KEYS[1]), redis.call('LRANGE', KEYS[2], -tonumber(ARGV[1]), -1)}
