-- wrk upload scenario: POST a 64 KiB JSON body that holds the placeholder $MSB_BENCH_KEY_0
-- (airlock substitutes it in the body; the other variants forward it unchanged), with the
-- same placeholder in Authorization. Passed to wrk with -s (from stdin only one thread sees it).
local prefix = '{"key":"$MSB_BENCH_KEY_0","pad":"'
local suffix = '"}'
wrk.method = "POST"
wrk.path = "/upload"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $MSB_BENCH_KEY_0"
wrk.body = prefix .. string.rep("a", 65536 - #prefix - #suffix) .. suffix
