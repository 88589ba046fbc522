#!lua flags=no-writes
-- One page of a user's chats after a position, read at one instant (read-only: a full Redis
-- runs it, where it refuses a MULTI): the rest of the position's tie, then the chats below it.
-- KEYS[1] the user's chat index   ARGV[1] score of the position  ARGV[2] most chats below it
-- -> {{member, score, ...} of the tie, {member, score, ...} below, newest first}
return {
  redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[1], 'BYSCORE', 'WITHSCORES'),
  redis.call('ZRANGE', KEYS[1], '(' .. ARGV[1], '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, ARGV[2], 'WITHSCORES'),
}
