-- wrk script for bench/learning_cost.py: the peer kit's four request shapes (facebook
-- Referer, utm_source=facebook, iPhone, desktop), each sent as a browser's page view
-- (Accept: text/html) without a cookie: every request is a new visitor's first exposure,
-- the worst case for counting.
local reqs = {}
local n = 0

init = function(args)
  local p = wrk.path
  local sep = string.find(p, "?", 1, true) and "&" or "?"
  local html = "text/html,application/xhtml+xml"
  local desktop = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
  local iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
  reqs[1] = wrk.format("GET", p, { ["Accept"] = html, ["Referer"] = "https://www.facebook.com/acme/posts/123", ["User-Agent"] = desktop })
  reqs[2] = wrk.format("GET", p .. sep .. "utm_source=facebook&utm_medium=social", { ["Accept"] = html, ["User-Agent"] = desktop })
  reqs[3] = wrk.format("GET", p, { ["Accept"] = html, ["User-Agent"] = iphone })
  reqs[4] = wrk.format("GET", p, { ["Accept"] = html, ["User-Agent"] = desktop, ["Referer"] = "https://www.google.com/" })
end

request = function()
  n = n + 1
  return reqs[(n % 4) + 1]
end
