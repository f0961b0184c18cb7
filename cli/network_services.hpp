#pragma once
// What `airlock run` and `airlock serve` share: a sandbox with its network services (the DNS
// forwarder filling the pin set, and the gateway), set up in the one order that keeps the
// invariants (the nftables guard from the egress policy, the gateway's CA trusted by the guest
// before the command starts).
#include "cli/config.hpp"
#include "sandbox/sandbox.hpp"

#include "dns/forwarder.hpp"
#include "dns/pin_set.hpp"
#include "gateway/gateway.hpp"
#include "policy/policy.hpp"

#include <asio/io_context.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace airlock::cli {

// AIRLOCK_TIMING=1: phase times on stderr (for benchmarks; no values, only labels and ms).
void phase(const char* label);

void close_all(sandbox::GatewaySockets& sockets);

// The sandbox's side of the network: the DNS forwarder (filling the pin set) and the gateway,
// both serving sockets that live in the sandbox's gateway namespace, their upstream sockets in
// the host's. block-and-terminate ends the sandbox.
class NetworkServices {
 public:
  // Takes the sockets it serves out of `sockets` (what is left there is the caller's to close).
  NetworkServices(sandbox::Sandbox& box, sandbox::GatewaySockets& sockets,
                  std::vector<SecretBinding> secrets, const NetworkConfig& network,
                  const GatewaySettings& settings, const std::vector<std::string>& dns_servers,
                  std::shared_ptr<const policy::Policy> policy, const gateway::BudgetLimits& budget);
  ~NetworkServices();

  // Reload: the gateway's connections from now on use these secrets (with the running [network]).
  // Returns the new generation.
  std::uint64_t replace_secrets(std::vector<SecretBinding> secrets);

 private:
  static gateway::LogLevel log_level(const GatewaySettings& settings);
  void record_refusal(std::string_view name, dns::Outcome outcome);

  NetworkConfig network_;
  dns::PinSet pins_;
  std::shared_ptr<const policy::Policy> policy_;
  gateway::Logger logger_;
  gateway::AuditLog dns_audit_;  // the same file as the gateway's (appended line by line)
  asio::io_context io_;
  std::unique_ptr<dns::Forwarder> forwarder_;
  std::thread dns_thread_;
  std::unique_ptr<gateway::Gateway> gateway_;
};

// A sandbox and its network services, set up; start() has not been called. Destroying it stops
// the services first, then tears the sandbox down.
struct SandboxWithNetwork {
  std::unique_ptr<sandbox::Sandbox> box;
  std::unique_ptr<NetworkServices> services;
};
// `egress_first` are rules before `network.egress` (airlock run's --egress).
SandboxWithNetwork make_sandbox_with_network(sandbox::SandboxOptions options, const std::vector<SecretBinding>& secrets,
                                             const NetworkConfig& network, const GatewaySettings& settings,
                                             const std::vector<std::string>& egress_first,
                                             const std::vector<std::string>& dns_servers,
                                             const gateway::BudgetLimits& budget);

// What a sandbox may make the gateway spend outside its cgroup. The sandbox is the gateway's
// only client, so its budget is the gateway's: memory as much as the guest itself may use
// (`guest_memory`, its --memory; kDefaultSandboxMemory without one) unless [gateway]
// memory_budget or `gateway_memory` (--gateway-memory) says otherwise; connections
// kDefaultSandboxConnections unless [gateway] max_connections or `max_connections` (> 0) does.
inline constexpr std::uint64_t kDefaultSandboxMemory = 256u << 20;
inline constexpr std::uint64_t kDefaultSandboxConnections = 1024;
gateway::BudgetLimits sandbox_budget(const GatewaySettings& settings, std::optional<std::uint64_t> guest_memory,
                                     std::optional<std::uint64_t> gateway_memory = std::nullopt,
                                     std::uint64_t max_connections = 0);

}  // namespace airlock::cli
