#pragma once
// Internal to the gateway: what every connection shares (read-only after start, or atomic).
#include "gateway/audit_log.hpp"
#include "gateway/budget.hpp"
#include "gateway/gateway.hpp"
#include "http/response_scrubber.hpp"
#include "tls/certificate_authority.hpp"
#include "tls/contexts.hpp"

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <unordered_map>
#include <vector>
#include <memory>
#include <optional>

namespace airlock::gateway {

enum class ListenerKind : unsigned char { kTransparent, kProxy };

// The standalone pin source's answers, kept like the sandbox keeps DNS pins (secrets-spec §3: at
// least 5 minutes), so a burst of connections to one name does not resolve it each time.
class ResolveCache {
 public:
  static constexpr std::chrono::minutes kHold{5};
  static constexpr std::size_t kMaxNames = 4096;
  // The held answers for `name` when they are fresh and include `destination`.
  std::optional<std::vector<IpAddress>> find(const std::string& name, const IpAddress& destination);
  void store(const std::string& name, const std::vector<IpAddress>& addresses);

 private:
  struct Entry {
    std::vector<IpAddress> addresses;
    std::chrono::steady_clock::time_point resolved;
  };
  std::mutex mutex_;
  std::unordered_map<std::string, Entry> entries_;
};

// The secrets every connection works with: held immutably. A connection takes the current one
// when it starts forwarding and the newest one again at each request boundary (HTTP/1); its
// response side keeps every snapshot a response still in flight may echo. A reload builds a new
// one off the data path and swaps it in; the old values are wiped when the last holder lets go.
struct SecretsSnapshot {
  std::shared_ptr<const secrets::SecretSet> set;
  // Every form of every value of `set` and of the snapshot this one replaced (so that one scrubber
  // masks both wholly during a rotation, even when one value is a prefix of the other); empty when
  // neither has secrets. The previous values live here until the next reload replaces this one.
  std::optional<http::ScrubForms> scrub_forms;
  std::uint64_t generation = 1;
  std::uint64_t covers_from = 0;  // the replaced snapshot's generation when scrub_forms has its values too (0: none)
  // Whether scrub_forms masks every value of the snapshot of generation `g`.
  bool covers(std::uint64_t g) const noexcept {
    return scrub_forms && (g == generation || (covers_from != 0 && covers_from <= g && g < generation));
  }
  std::vector<std::string> retired;  // env names of secrets removed by a reload (sorted; see retired_secrets.hpp)
  bool is_retired(const std::string& env) const { return std::binary_search(retired.begin(), retired.end(), env); }
};

struct Core {
  GatewayOptions options;  // options.secrets is moved into the first snapshot (null after construction)
  ResolveCache resolved;
  Logger logger;
  AuditLog audit;
  std::optional<tls::LeafMinter> minter;
  tls::SslCtxPtr guest_context;
  std::unique_ptr<tls::UpstreamVerifier> upstream;
  std::optional<Budget> budget;                  // made at start(), once the descriptor limit is known

  std::atomic<std::uint64_t> next_id{1};
  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::uint64_t> active{0};
  std::atomic<std::uint64_t> rejected_over_limit{0};
  std::atomic<std::uint64_t> over_budget{0};
  std::atomic<std::uint64_t> idle_released{0};
  std::atomic<std::uint64_t> idle_parked{0};
  std::atomic<std::uint64_t> upstream_released{0};
  std::atomic<std::uint64_t> upstream_pooled{0};
  std::atomic<std::uint64_t> upstream_reused{0};
  std::atomic<std::uint64_t> intercepted{0};
  std::atomic<std::uint64_t> substitutions{0};
  std::atomic<std::uint64_t> blocked{0};
  std::atomic<std::uint64_t> denied{0};
  std::atomic<bool> stopping{false};
  // Per request: from its head complete at the gateway to its response head handed to the guest
  // (HTTP/1 in connection.cpp; an HTTP/2 stream through H2Hooks::answered, from gateway/h2_pump).
  LatencyHistogram request_latency;

 private:
  mutable std::mutex snapshot_mutex_;
  std::shared_ptr<const SecretsSnapshot> snapshot_;
  std::atomic<std::uint64_t> generation_{0};
  std::mutex reload_mutex_;  // one reload at a time (each builds on the snapshot before it)
 public:

  explicit Core(GatewayOptions opts);
  std::shared_ptr<const SecretsSnapshot> snapshot() const;  // the current one (a short lock)
  // The current snapshot's generation, without the lock: a connection compares it with its own to
  // know when to take a new one.
  std::uint64_t generation() const noexcept { return generation_.load(std::memory_order_acquire); }
  // Builds the snapshot of `set` (the scrub forms: control-path work) and swaps it in.
  void replace_secrets(std::shared_ptr<const secrets::SecretSet> set);
  bool intercepts_port(std::uint16_t port) const;
  bool bypassed(std::string_view sni) const;
};

// Runs one accepted connection to its end. `core.active` was incremented by the acceptor and is
// decremented here, however the coroutine ends (even when its frame is destroyed at shutdown).
// `ticket` is the connection's share of the budget (released when the connection ends).
asio::awaitable<void> serve_connection(Core& core, asio::ip::tcp::socket guest, ListenerKind kind,
                                       std::unique_ptr<Budget::Ticket> ticket);

}  // namespace airlock::gateway
