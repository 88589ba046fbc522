#!lua
-- Bind a provider identity to a user id, once; never overwrites. Two racing first logins
-- both get the winner's id. Also moves an oidc identity made before issuers were kept: the
-- user id of the old key (ai:identity:oidc:<sub>) is bound under the new one
-- (ai:identity:oidc:<issuer>:<sub>); the old key is read by the caller, as the two keys may
-- live in different Redis Cluster slots.
-- KEYS[1] identity  ARGV[1] user id to bind (a fresh candidate, or the old key's)  ->  the bound user id
local bound = redis.call('GET', KEYS[1])
if bound then return bound end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
