-- bench/auth.lua: every request carries "Authorization: <key>", cycling
-- through the keys in @KEYS@ (one per line; bench/auth.sh fills in the
-- path). The requests are formatted once, in init, so the per-request cost
-- on the load side is a table lookup, equal for every target.
local reqs = {}
local i = 0

function init(args)
    for key in io.lines("@KEYS@") do
        reqs[#reqs + 1] = wrk.format(nil, nil, { ["Authorization"] = key })
    end
    if #reqs == 0 then
        error("no keys in @KEYS@")
    end
end

function request()
    i = i % #reqs + 1
    return reqs[i]
end
