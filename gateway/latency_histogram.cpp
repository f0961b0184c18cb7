#include "gateway/latency_histogram.hpp"

#include <algorithm>

namespace airlock::gateway {

void LatencyHistogram::observe(std::chrono::steady_clock::duration latency) noexcept {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(latency).count();
  const std::uint64_t v = us > 0 ? static_cast<std::uint64_t>(us) : 0;
  const std::size_t i =
      static_cast<std::size_t>(std::lower_bound(kBoundsUs.begin(), kBoundsUs.end(), v) - kBoundsUs.begin());
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_us_.fetch_add(v, std::memory_order_relaxed);
}

LatencyHistogram::Snapshot LatencyHistogram::snapshot() const noexcept {
  Snapshot s;
  std::uint64_t running = 0;
  for (std::size_t i = 0; i < kBoundsUs.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = running;
  }
  s.count = running + buckets_[kBoundsUs.size()].load(std::memory_order_relaxed);
  s.sum_us = sum_us_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace airlock::gateway
