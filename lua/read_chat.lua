#!lua flags=no-writes
-- A chat and its newest messages, read at one instant. A read-only script, not a MULTI: a full
-- Redis (OOM) refuses every command queued in a transaction, reads included, but runs this.
-- KEYS[1] chat  KEYS[2] messages   ARGV[1] messages kept (the newest)
-- -> {createdAt, replyGen, replyStatus, replySeq, {message JSON, ...}} (nil fields: no such chat)
local chat = redis.call('HMGET', KEYS[1], 'createdAt', 'replyGen', 'replyStatus', 'replySeq')
return {chat[1], chat[2], chat[3], chat[4], redis.call('LRANGE', KEYS[2], -tonumber(ARGV[1]), -1)}
