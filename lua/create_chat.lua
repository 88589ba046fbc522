-- KEYS[1] chat  KEYS[2] user's chat index   ARGV[1] chat id  ARGV[2] now ms
redis.call('HSET', KEYS[1], 'createdAt', ARGV[2], 'updatedAt', ARGV[2], 'title', '',
  'replyGen', 0, 'replyStatus', 'idle', 'replySeq', 0, 'replyToken', '')
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
