#pragma once
// The TLS-intercepting gateway (issue 4): accepts every TCP connection of a sandbox (transparent
// listener, original destination from SO_ORIGINAL_DST) or of other workloads (explicit proxy:
// CONNECT and absolute-form HTTP), classifies the first flight, intercepts TLS on the intercepted
// ports, runs the secrets engine on requests and forwards them to the original destination.
//
// Threads: one io_context per thread (default: one per core); connections are spread over them
// and each connection lives on one thread (no locking on the data path).
#include "gateway/audit_log.hpp"
#include "gateway/budget.hpp"
#include "gateway/latency_histogram.hpp"

#include <airlock/secret.hpp>
#include <policy/policy.hpp>
#include <secrets/engine/engine.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace airlock::gateway {

struct GatewayTimeouts {
  std::chrono::milliseconds first_flight{10'000};  // the client's first bytes (ClientHello / request)
  std::chrono::milliseconds server_first{1'000};   // silence before a non-intercepted port is spliced
  std::chrono::milliseconds connect{10'000};       // TCP connect upstream
  std::chrono::milliseconds handshake{10'000};     // each TLS handshake
  std::chrono::milliseconds head{10'000};          // a request head, from its first byte to its empty line
  std::chrono::milliseconds idle{300'000};         // no bytes either way
  // An intercepted HTTP/1 connection idle this long between requests closes its upstream TLS
  // connection (~14 KiB of OpenSSL state) and keeps the guest's; its next request connects and
  // verifies the upstream again (resuming its TLS session when the server allows). 0: never.
  std::chrono::milliseconds upstream_idle_release{30'000};
  std::chrono::milliseconds stop_grace{5'000};     // stop(): time for open connections to finish
};

struct GatewayOptions {
  std::shared_ptr<const secrets::SecretSet> secrets;  // required
  NetworkConfig network;
  std::vector<int> transparent_fds;  // already-bound listening sockets to adopt (the gateway owns them)
  std::vector<int> proxy_fds;
  std::string transparent_listen;  // or addresses to bind ("127.0.0.1:15001"; port 0: any; a
                                   // comma-separated list binds each: "0.0.0.0:15001,[::]:15001")
  std::string proxy_listen;
  std::string audit_log_path;      // empty: no audit log
  std::string home;                // CA directory; empty: $AIRLOCK_HOME or ~/.airlock
  std::string ca_certificate_file; // both set: use this CA instead of the one under `home`
  std::string ca_key_file;
  int threads = 0;                 // 0: one per core
  // The sandbox's DNS pin set. nullptr: standalone pin mode (weaker): the gateway resolves the
  // SNI (or the plain-HTTP Host) with the host resolver and pins the destination for that name
  // when it is among the answers. CONNECT tunnels always use the gateway's own resolution.
  const secrets::PinQuery* pins = nullptr;
  // The egress policy, decided for every connection once its first flight is read (with the TLS
  // SNI) and, for the explicit proxy, for each resolved address before connecting. A denied
  // connection is reset (the proxy answers 403) and audited with the rule that denied it.
  // nullptr: no egress policy, every destination is allowed.
  std::shared_ptr<const policy::Policy> policy;
  // Called (from a gateway thread) after a block-and-terminate violation. Must not call stop() or
  // wait() inline; signal another thread instead.
  std::function<void(const std::string& reason)> on_terminate;
  // Sees every audit record as it is written (also without an audit log file), e.g. for metrics.
  AuditLog::Observer on_record;
  GatewayTimeouts timeouts;
  // Memory held and connections open on clients' behalf, in total and per client (source
  // address). `connections` is lowered at start() to what the descriptor limit allows (two per
  // connection, with a margin), so accept never runs out of descriptors.
  BudgetLimits limits;
  // A failing audit log (disk full, I/O error): by default a request that needs a substitution
  // is blocked while its record cannot be written (fail closed); true lets it go on (fail open).
  bool audit_fail_open = false;
  std::size_t buffer_bytes = 16 * 1024;  // per direction: at most this much is read before it is written on
  // Each event loop's pool of idle, verified upstream HTTP/1 TLS connections (issue 15): an
  // intercepted guest connection that ends, or parks, at rest hands its upstream connection to
  // its loop's pool, and the next guest connection with the same key (destination, SNI, ALPN,
  // trust, client) takes it instead of connecting and verifying again. A pooled connection is
  // closed when the upstream sends anything, after timeouts.upstream_idle_release (0: no pool),
  // or when these bounds push it out (the oldest first). 0: no pool.
  std::size_t upstream_pool_per_key = 32;
  std::size_t upstream_pool_per_loop = 128;
  LogLevel log_level = LogLevel::kInfo;
  std::string system_roots_dir = "/etc/ssl/certs";  // upstream trust besides network.upstream_cas
};

struct GatewayEndpoints {
  std::vector<std::string> transparent;  // "127.0.0.1:15001"
  std::vector<std::string> proxy;
};

struct GatewayCounters {
  std::uint64_t accepted = 0;
  std::uint64_t active = 0;
  std::uint64_t rejected_over_limit = 0;  // refused by a connection limit (per client, total, reserve)
  std::uint64_t intercepted = 0;
  std::uint64_t substitutions = 0;
  std::uint64_t blocked = 0;
  std::uint64_t denied = 0;  // by the egress policy
  std::uint64_t over_budget = 0;  // requests blocked by the memory budget
  std::uint64_t idle_released = 0;  // request rewriters given back by idle connections (made again on their next bytes)
  std::uint64_t idle_parked = 0;    // idle relays whose coroutines ended (they wait with plain socket handlers)
  std::uint64_t upstream_released = 0;  // upstream connections closed by long-idle guest connections (timeouts.upstream_idle_release)
  std::uint64_t upstream_pooled = 0;    // upstream connections handed to their loop's pool by guest connections at rest
  std::uint64_t upstream_reused = 0;    // guest connections served by a pooled upstream connection (no connect, no handshake)
  LatencyHistogram::Snapshot request_latency{};  // request head in to response head out, per request
};

class Gateway {
 public:
  // Loads the CA, the upstream trust and the audit log. Throws ConfigError.
  explicit Gateway(GatewayOptions options);
  ~Gateway();  // stops if running
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Binds or adopts the listeners and starts the threads; returns once listening.
  // Throws ConfigError (bad address, bind failure, no listener at all).
  void start();
  // Graceful stop: stop accepting, give open connections `stop_grace` to finish, then close the
  // rest. Idempotent; safe from any thread except a gateway thread.
  void stop();
  // Blocks until stop() has completed.
  void wait();

  // Reload: connections that start forwarding from now on use `secrets`; a connection already
  // forwarding keeps the set it started with until it ends (nothing is dropped). The old values
  // are wiped when the last connection holding them ends. Safe from any thread. Returns the new
  // generation (1 is the set given at construction). Throws ConfigError when `secrets` is null.
  std::uint64_t replace_secrets(std::shared_ptr<const secrets::SecretSet> secrets);

  GatewayEndpoints endpoints() const;
  GatewayCounters counters() const;
  // The PEM certificate of the CA the guests must trust.
  std::string ca_certificate_pem() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace airlock::gateway
