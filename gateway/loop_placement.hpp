#pragma once
// Which event loop a new connection goes to: the one with the fewest open connections, ties
// taken in turn from `start` (a rotating index), so equal loops still alternate. Round robin
// alone hands every loop the same number of connections however fast it gets through them: a
// loop that is slower for a while (it also runs the acceptors, a long handshake, its thread
// preempted or CPU-capped) then holds the others back (docs/performance.md, scenario 6). Pure.
#include <atomic>
#include <cstddef>
#include <span>

namespace airlock::gateway {

inline std::size_t least_loaded(std::span<const std::atomic<std::size_t>> open, std::size_t start) noexcept {
  if (open.empty()) return 0;
  std::size_t best = start % open.size();
  std::size_t fewest = open[best].load(std::memory_order_relaxed);
  for (std::size_t k = 1; k < open.size(); ++k) {
    const std::size_t i = (start + k) % open.size();
    const std::size_t n = open[i].load(std::memory_order_relaxed);
    if (n < fewest) best = i, fewest = n;
  }
  return best;
}

}  // namespace airlock::gateway
