#!lua flags=no-writes
-- Rows (or ids) of an index range in one round trip.
-- KEYS[1]: index key
-- ARGV: low, high (BYLEX bounds), desc ('1'/'0'), limit, row key prefix, with rows ('1'/'0')
-- The limit goes to ZRANGE as sent: tonumber() would make a large 64-bit limit a float
-- that ZRANGE refuses.
local members
if ARGV[3] == '1' then
  members = redis.call('ZRANGE', KEYS[1], ARGV[2], ARGV[1], 'BYLEX', 'REV', 'LIMIT', 0, ARGV[4])
else
  members = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2], 'BYLEX', 'LIMIT', 0, ARGV[4])
end
local out = {}
for i = 1, #members do
  local id = string.match(members[i], '(-?%d+)$')
  if ARGV[6] == '1' then
    local fields = redis.call('HGETALL', ARGV[5] .. id)
    if #fields > 0 then
      out[#out + 1] = fields
    end
  else
    out[#out + 1] = id
  end
end
return out
