-- wrk script: signed GitHub push deliveries for the firecrest-ci webhook benchmark.
-- Each thread signs its own pool of distinct push bodies with HMAC-SHA256 (pure
-- LuaJIT, below) at start-up, then cycles through them, one new delivery id per
-- request. The Python driver fills in SECRET, REPOSITORY and TEMPLATE.
local bit = require("bit")
local band, bor, bxor, bnot = bit.band, bit.bor, bit.bxor, bit.bnot
local rshift, lshift, ror, tobit, tohex = bit.rshift, bit.lshift, bit.ror, bit.tobit, bit.tohex

local K = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}

local function sha256(message)
  local length = #message
  local padding = (55 - length) % 64
  local bits = length * 8
  message = message .. "\128" .. string.rep("\0", padding) .. "\0\0\0\0"
    .. string.char(band(rshift(bits, 24), 255), band(rshift(bits, 16), 255), band(rshift(bits, 8), 255), band(bits, 255))
  local H = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 }
  local w = {}
  for block = 1, #message, 64 do
    for j = 1, 16 do
      local a, b, c, d = string.byte(message, block + (j - 1) * 4, block + (j - 1) * 4 + 3)
      w[j] = bor(lshift(a, 24), lshift(b, 16), lshift(c, 8), d)
    end
    for j = 17, 64 do
      local v15, v2 = w[j - 15], w[j - 2]
      local s0 = bxor(ror(v15, 7), ror(v15, 18), rshift(v15, 3))
      local s1 = bxor(ror(v2, 17), ror(v2, 19), rshift(v2, 10))
      w[j] = tobit(w[j - 16] + s0 + w[j - 7] + s1)
    end
    local a, b, c, d, e, f, g, h = H[1], H[2], H[3], H[4], H[5], H[6], H[7], H[8]
    for j = 1, 64 do
      local S1 = bxor(ror(e, 6), ror(e, 11), ror(e, 25))
      local ch = bxor(band(e, f), band(bnot(e), g))
      local t1 = tobit(h + S1 + ch + K[j] + w[j])
      local S0 = bxor(ror(a, 2), ror(a, 13), ror(a, 22))
      local maj = bxor(band(a, b), band(a, c), band(b, c))
      h, g, f, e, d, c, b, a = g, f, e, tobit(d + t1), c, b, a, tobit(t1 + S0 + maj)
    end
    H[1], H[2], H[3], H[4] = tobit(H[1] + a), tobit(H[2] + b), tobit(H[3] + c), tobit(H[4] + d)
    H[5], H[6], H[7], H[8] = tobit(H[5] + e), tobit(H[6] + f), tobit(H[7] + g), tobit(H[8] + h)
  end
  local raw = {}
  for i = 1, 8 do
    local x = H[i]
    raw[i] = string.char(band(rshift(x, 24), 255), band(rshift(x, 16), 255), band(rshift(x, 8), 255), band(x, 255))
  end
  return table.concat(raw)
end

local function hex(raw)
  return (raw:gsub(".", function(c) return string.format("%02x", string.byte(c)) end))
end

function hmac_sha256(key, message)
  if #key > 64 then key = sha256(key) end
  key = key .. string.rep("\0", 64 - #key)
  local inner = key:gsub(".", function(c) return string.char(bxor(string.byte(c), 0x36)) end)
  local outer = key:gsub(".", function(c) return string.char(bxor(string.byte(c), 0x5c)) end)
  return hex(sha256(outer .. sha256(inner .. message)))
end

SECRET = SECRET or "@@SECRET@@"
TEMPLATE = TEMPLATE or [==[@@TEMPLATE@@]==]
POOL = tonumber("@@POOL@@") or 200
-- Which wrk run this is (warm-up or measured): delivery ids never repeat across runs.
RUN = "@@RUN@@"

local thread_id = 0
local threads = {}

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
  table.insert(threads, thread)
end

function init(args)
  bodies, signatures, counter = {}, {}, 0
  accepted, other = 0, 0
  for i = 1, POOL do
    local sha = string.format("%08x%08x%08x%08x%08x", tid, i, math.random(0, 0x7fffffff), 0, math.random(0, 0x7fffffff))
    local body = TEMPLATE:gsub("@@SHA@@", sha)
    bodies[i] = body
    signatures[i] = "sha256=" .. hmac_sha256(SECRET, body)
  end
end

function request()
  counter = counter + 1
  local i = (counter - 1) % POOL + 1
  local headers = {
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = "push",
    ["X-GitHub-Delivery"] = string.format("bench-%s-%d-%d", RUN, tid, counter),
    ["X-Hub-Signature-256"] = signatures[i],
  }
  return wrk.format("POST", "/webhooks/github", headers, bodies[i])
end

function response(status, headers, body)
  if status == 202 then accepted = accepted + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local total_accepted, total_other = 0, 0
  for _, thread in ipairs(threads) do
    total_accepted = total_accepted + thread:get("accepted")
    total_other = total_other + thread:get("other")
  end
  io.write(string.format("BENCH accepted=%d\nBENCH other=%d\nBENCH requests=%d\n", total_accepted, total_other, summary.requests))
  for _, p in ipairs({ 50, 90, 99, 99.9 }) do
    io.write(string.format("BENCH p%s_ms=%.3f\n", tostring(p), latency:percentile(p) / 1000))
  end
end
