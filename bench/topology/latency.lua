-- wrk script for scripts/bench (keep-alive scenario with BENCH_COUNTERS): only done(), so wrk
-- keeps sending its one prepared request; prints the latency distribution's tail (µs).
done = function(summary, latency, requests)
  local out = {}
  for _, p in ipairs({50, 90, 99, 99.9, 99.99}) do
    out[#out + 1] = string.format("p%s=%d", tostring(p), latency:percentile(p))
  end
  io.write(string.format("tail_us mean=%.0f stdev=%.0f max=%d %s\n", latency.mean, latency.stdev,
    latency.max, table.concat(out, " ")))
end
