-- Atomic commit of one transaction (one system cluster).
-- KEYS[1]: a key of the cluster; it only routes the call to the cluster's slot.
-- ARGV[1]: msgpack [checks, pushes, publishes, freed]
--   checks    {'V', row_key, version} | {'N', row_key} | {'U', index_key, low, high, field}
--   pushes    Redis commands run verbatim once every check passed
--   publishes {channel, payload} change events, published after the writes
--   freed     {index_key = {row_id = true}}: index entries this commit removes, so a
--             unique value they hold may be taken by another row of the same commit
local payload = cmsgpack.unpack(ARGV[1])
local checks, pushes, publishes, freed = payload[1], payload[2], payload[3], payload[4]

for i = 1, #checks do
  local c = checks[i]
  local op = c[1]
  if op == 'V' then
    local v = redis.call('HGET', c[2], '_version')
    if v ~= c[3] then
      return {'VER', c[2], tostring(v), c[3]}
    end
  elseif op == 'N' then
    if redis.call('EXISTS', c[2]) == 1 then
      return {'NX', c[2]}
    end
  elseif op == 'U' then
    local hit = redis.call('ZRANGE', c[2], c[3], c[4], 'BYLEX', 'LIMIT', 0, 1)
    if #hit > 0 then
      local holder = string.match(hit[1], '(-?%d+)$')
      local f = freed[c[2]]
      if not (f and f[holder]) then
        return {'UNIQ', c[2], c[5], holder}
      end
    end
  end
end

for i = 1, #pushes do
  redis.call(unpack(pushes[i]))
end
for i = 1, #publishes do
  redis.call('PUBLISH', publishes[i][1], publishes[i][2])
end
return 'OK'
