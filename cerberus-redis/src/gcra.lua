-- GCRA over several windows at once, atomically: the call is admitted only if every window admits it,
-- and nothing is written when any window refuses (no window spends quota on a refused call).
--
-- KEYS[i]: the i-th window's key, holding its theoretical arrival time (TAT) in microseconds.
-- ARGV[2i-1], ARGV[2i]: the i-th window's emission interval and period, in microseconds.
-- Returns {1, -1, 0} when admitted, {0, index, wait_us} when refused: the 0-based index of the window
-- that frees up last, and when every window will admit the call.
--
-- Time is the Redis server's, so that every gateway instance counts on one clock.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tats = {}
local refused, longest = -1, 0
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local period = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then
    tat = now
  end
  local new_tat = tat + interval
  local allow_at = new_tat - period
  if allow_at > now then
    local wait = allow_at - now
    if wait > longest then
      refused, longest = i - 1, wait
    end
  else
    tats[i] = new_tat
  end
end
if refused >= 0 then
  return {0, refused, longest}
end
for i = 1, #KEYS do
  -- The state is worth keeping until the TAT has passed: after that, a fresh key holds the same.
  local ttl_ms = math.ceil((tats[i] - now) / 1000) + 1
  redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX', ttl_ms)
end
return {1, -1, 0}
