#!lua
-- Open a session in one step: create the user on its first login, forget expired sessions, and
-- drop the sessions past SESSIONS_PER_USER_MAX (those that expire first: the oldest logins).
-- The caller names the sessions it expects to drop (every key is declared); when others must go
-- (a login raced this one) nothing is written and the caller reads the index again.
-- KEYS[1] user  KEYS[2] new session  KEYS[3] the user's sessions index  KEYS[4..] sessions to drop
-- ARGV[1] user id  ARGV[2] username  ARGV[3] now ms  ARGV[4] session ttl s  ARGV[5] provider
-- ARGV[6] '1': create the user when missing (a fresh id); '0': the user must exist
-- ARGV[7] sessions per user max  ARGV[8] the new session's digest  ARGV[9] identity key
-- ARGV[10] identity key without issuer it was found by ('' when none)  ARGV[11..] digests of KEYS[4..]
-- -> 1 logged in, 0 no such user (the identity points at a deleted user), -1 call again
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[6] ~= '1' then return 0 end
  redis.call('HSET', KEYS[1], 'userId', ARGV[1], 'username', ARGV[2], 'createdAt', ARGV[3],
    'provider', ARGV[5], 'skillDescription', '', 'status', 'NOT_STARTED', 'interviewId', 0)
end
local now = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local excess = redis.call('ZCARD', KEYS[3]) + 1 - tonumber(ARGV[7])
if excess > 0 then
  local named = {}
  for i = 11, #ARGV do named[ARGV[i]] = KEYS[i - 7] end
  local oldest = redis.call('ZRANGE', KEYS[3], 0, excess - 1)
  local drop = {}
  for _, digest in ipairs(oldest) do
    if not named[digest] then return -1 end
    drop[#drop + 1] = named[digest]
  end
  redis.call('DEL', unpack(drop))
  redis.call('ZREM', KEYS[3], unpack(oldest))
end
redis.call('HSET', KEYS[1], 'identity', ARGV[9])
if ARGV[10] ~= '' then redis.call('HSET', KEYS[1], 'legacyIdentity', ARGV[10]) end
local expiry = now + tonumber(ARGV[4]) * 1000
redis.call('SET', KEYS[2], ARGV[3], 'PX', expiry - now)
redis.call('ZADD', KEYS[3], expiry, ARGV[8])
local last = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[3], last[2])  -- the index outlives none of its sessions
return 1
