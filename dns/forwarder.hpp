#pragma once
// The sandbox's DNS server: answers the guest's queries on UDP and TCP (every query the guest
// sends, to any resolver address, is redirected here), forwards them to the host's resolvers,
// and on the way back applies the rebind filter and denied-domain NXDOMAIN and records the
// answer in the PinSet before the guest sees it.
//
// Standalone Asio with C++20 coroutines. Every coroutine runs on one strand made from the
// executor given, so the forwarder may share a multi-threaded io_context. Every wait has a
// timeout; every buffer is bounded (65535 bytes, a DNS message's limit).
#include "dns/message.hpp"
#include "dns/pin_set.hpp"

#include <policy/policy.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ip/udp.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace airlock::dns {

// What happened to one query (for the audit log and tests).
enum class Outcome : std::uint8_t {
  kAnswered,      // the upstream answer, as it came (id restored)
  kTruncated,     // the answer did not fit the guest's UDP size: TC with the question only
  kDeniedDomain,  // NXDOMAIN: the name or its CNAME chain is denied by a domain rule
  kRebinding,     // NXDOMAIN: the answer pointed into private/loopback/link-local/metadata/host space
  kServFail,      // no usable upstream answer after every try
  kFormErr,       // the query could not be parsed, or was not one question
  kNotImp,        // an opcode other than QUERY
  kDropped,       // not answered (a response, not a query; unreadable header)
};
std::string_view to_string(Outcome outcome) noexcept;

struct ForwarderOptions {
  // Resolvers, tried in turn (port 53 unless given). Empty: read_resolv_conf().
  std::vector<asio::ip::udp::endpoint> upstreams;
  std::chrono::milliseconds try_timeout{2000};  // per upstream try, UDP or TCP
  unsigned tries = 2;                           // upstream tries per query, over the resolvers in turn
  std::uint16_t max_udp_payload = 4096;         // cap on the guest's EDNS size
  std::uint16_t advertised_udp_payload = 1232;  // EDNS size in responses the forwarder makes itself
  std::size_t max_udp_in_flight = 256;          // guest UDP queries being resolved; more are dropped
  std::size_t max_tcp_clients = 64;             // guest TCP connections; more are closed at once
  std::chrono::milliseconds tcp_idle_timeout{10000};  // a guest TCP connection waiting for a query
  // Told of every query answered NXDOMAIN by policy (kDeniedDomain, kRebinding) with the query
  // name, for the audit log. Called on the forwarder's strand, never after stop() has returned;
  // it must not call back into the forwarder.
  std::function<void(std::string_view name, Outcome outcome)> on_refused;
};

// Control path: the `nameserver` lines of a resolv.conf (port 53). Throws ConfigError when the
// file cannot be read or names no resolver.
std::vector<asio::ip::udp::endpoint> read_resolv_conf(const std::string& path = "/etc/resolv.conf");


struct ForwarderStats {
  std::atomic<std::uint64_t> queries{0};
  std::atomic<std::uint64_t> upstream_udp{0};   // UDP tries sent upstream
  std::atomic<std::uint64_t> upstream_tcp{0};   // TCP tries (direct for TCP guests, or retries after TC)
  std::atomic<std::uint64_t> tcp_retries{0};    // upstream answered TC over UDP, asked again over TCP
  std::atomic<std::uint64_t> answered{0};
  std::atomic<std::uint64_t> truncated{0};
  std::atomic<std::uint64_t> denied_domain{0};
  std::atomic<std::uint64_t> rebinding{0};
  std::atomic<std::uint64_t> servfail{0};
  std::atomic<std::uint64_t> dropped{0};
};

class Forwarder {
 public:
  enum class Transport : std::uint8_t { kUdp, kTcp };

  // `pins` and `policy` are not owned; they must outlive the forwarder object (not its
  // coroutines: after stop() or destruction no coroutine touches them). Throws ConfigError when
  // options.upstreams is empty and resolv.conf names no resolver.
  Forwarder(asio::any_io_executor executor, ForwarderOptions options, PinSet& pins,
            const policy::Policy& policy);
  ~Forwarder();  // stop()
  Forwarder(const Forwarder&) = delete;
  Forwarder& operator=(const Forwarder&) = delete;

  // Serve guests on sockets that are already bound (e.g. in the gateway's network namespace).
  void serve_udp(asio::ip::udp::socket socket);
  void serve_tcp(asio::ip::tcp::acceptor acceptor);
  // The same from raw descriptors (ownership passes to the forwarder).
  std::error_code serve_udp_fd(int fd);
  std::error_code serve_tcp_fd(int fd);
  // Binds UDP and TCP on `address`:`port` (0: one free port for both) and serves them. Returns the
  // port in `bound_port`.
  std::error_code listen(const asio::ip::address& address, std::uint16_t port, std::uint16_t& bound_port);

  // Stops answering: from its return on, no coroutine reads the policy or writes the pin set;
  // listening sockets and guest connections are closed on the strand; in-flight upstream tries
  // end at their timeout. Safe from any thread, and more than once.
  void stop();

  // Resolves one query as a guest on `transport` would get it: the bytes to send back (empty
  // when dropped). The core of both servers; exposed for tests and for the gateway's own use.
  asio::awaitable<std::string> resolve(std::string query, Transport transport, Outcome* outcome = nullptr);

  const ForwarderStats& stats() const noexcept;
  const ForwarderOptions& options() const noexcept;

  struct Core;  // shared with the coroutines, which may outlive this object

 private:
  std::shared_ptr<Core> core_;
};

}  // namespace airlock::dns
