#pragma once
// Internal to the gateway: the I/O around an H2Bridge (gateway/h2_bridge.hpp, which is pure).
#include "gateway/h2_bridge.hpp"
#include "gateway/streams.hpp"

#include <asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace airlock::gateway {

// The I/O around an H2Bridge: reads both sides, feeds the bridge, writes what it owes each side,
// until both sessions are done or `hooks` says stop. Writes are serialized per stream.
class H2Hooks {
 public:
  virtual ~H2Hooks() = default;
  // Audit and log what one batch of input brought, all at once (one audit write), before the
  // bytes that carry it leave.
  virtual void notify(const std::vector<H2Notice>& notices) = 0;
  virtual void touch() = 0;                    // activity (the idle timeout)
  virtual bool within_budget(std::size_t held) = 0;  // false: over budget, the connection was closed
  virtual bool aborted() = 0;                  // the connection was closed (timeout, terminate)
  virtual void close(bool reset_guest) = 0;
  virtual void bytes(std::size_t up, std::size_t down) = 0;
  // A stream's final response head was written to the guest: `latency` from its request head's
  // arrival (the request-latency histogram, one observation per stream, as per HTTP/1 request).
  virtual void answered(std::chrono::steady_clock::duration latency) = 0;
  // The newest secrets when they are newer than `generation` (a reload), else null: the streams
  // the guest opens from then on are gated with them (H2Bridge::use_snapshot).
  virtual std::shared_ptr<const SecretsSnapshot> newer_secrets(std::uint64_t generation) = 0;
};

asio::awaitable<void> run_h2_bridge(Stream& guest, Stream& upstream, H2Bridge& bridge, H2Hooks& hooks,
                                    std::size_t read_size);

}  // namespace airlock::gateway
