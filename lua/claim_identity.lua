-- Bind a provider identity to a user id, once. Two racing first logins both get the
-- winner's id. KEYS[1] identity  ARGV[1] candidate user id  ->  the bound user id
local bound = redis.call('GET', KEYS[1])
if bound then return bound end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
