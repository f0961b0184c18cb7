#pragma once
// Request latency (issue 17 item 4): from a request's head complete at the gateway to its
// response's head handed to the guest, per HTTP/1 request (an HTTP/2 stream records the same
// span through observe()). Lock-free: every connection thread observes into one histogram.
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace airlock::gateway {

class LatencyHistogram {
 public:
  // Upper bounds in microseconds (Prometheus `le`), then +Inf.
  static constexpr std::array<std::uint64_t, 17> kBoundsUs = {
      100,    250,    500,     1'000,   2'500,   5'000,     10'000,    25'000,    50'000,
      100'000, 250'000, 500'000, 1'000'000, 2'500'000, 5'000'000, 10'000'000, 60'000'000};

  struct Snapshot {
    std::array<std::uint64_t, kBoundsUs.size()> cumulative{};  // observations <= kBoundsUs[i]
    std::uint64_t count = 0;                                   // all of them (the +Inf bucket)
    std::uint64_t sum_us = 0;
  };

  // A negative duration (a clock that went back) counts as 0.
  void observe(std::chrono::steady_clock::duration latency) noexcept;
  Snapshot snapshot() const noexcept;

 private:
  std::array<std::atomic<std::uint64_t>, kBoundsUs.size() + 1> buckets_{};  // per bucket, the last is +Inf
  std::atomic<std::uint64_t> sum_us_{0};
};

}  // namespace airlock::gateway
