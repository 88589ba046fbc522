#!lua flags=no-writes
-- A user's interview read at one instant (read-only: a full Redis runs it, where it refuses a MULTI).
-- KEYS[1] user  KEYS[2] questions  KEYS[3] answers  ->  {flat HGETALL of each}
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3])}
