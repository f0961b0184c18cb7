#include "cli/network_services.hpp"
#include "cli/sidecar.hpp"

#include "cli/egress.hpp"

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <unistd.h>

namespace airlock::cli {

void phase(const char* label) {
  static const bool on = std::getenv("AIRLOCK_TIMING") != nullptr;
  static const auto start = std::chrono::steady_clock::now();
  if (on) {
    std::cerr << "airlock: timing: " << label << " "
              << std::chrono::duration_cast<std::chrono::microseconds>(
                     std::chrono::steady_clock::now() - start).count() / 1000.0
              << " ms\n";
  }
}

void close_all(sandbox::GatewaySockets& sockets) {
  for (auto* list : {&sockets.transparent, &sockets.dns_udp, &sockets.dns_tcp}) {
    for (int fd : *list) ::close(fd);
    list->clear();
  }
}


NetworkServices::NetworkServices(sandbox::Sandbox& box, sandbox::GatewaySockets& sockets,
                                 std::vector<SecretBinding> secrets, const NetworkConfig& network,
                                 const GatewaySettings& settings, const std::vector<std::string>& dns_servers,
                                 std::shared_ptr<const policy::Policy> policy, const gateway::BudgetLimits& budget)
    : network_(network),
      pins_([] { return dns::PinClock::now(); }),
      policy_(std::move(policy)),
      logger_(log_level(settings)),
      dns_audit_(settings.audit_log) {
  dns::ForwarderOptions dns_options;
  for (const std::string& server : dns_servers) dns_options.upstreams.push_back(parse_resolver(server, "--dns-server"));
  dns_options.on_refused = [this](std::string_view name, dns::Outcome outcome) { record_refusal(name, outcome); };
  forwarder_ = std::make_unique<dns::Forwarder>(io_.get_executor(), dns_options, pins_, *policy_);
  for (int fd : std::exchange(sockets.dns_udp, {})) {
    if (forwarder_->serve_udp_fd(fd)) throw sandbox::SandboxError("DNS: cannot serve UDP");
  }
  for (int fd : std::exchange(sockets.dns_tcp, {})) {
    if (forwarder_->serve_tcp_fd(fd)) throw sandbox::SandboxError("DNS: cannot serve TCP");
  }
  dns_thread_ = std::thread([this] { io_.run(); });
  phase("dns started");

  gateway::GatewayOptions options;
  secrets::EngineOptions engine;
  engine.max_body_bytes = network.max_body_bytes;
  options.secrets = std::make_shared<secrets::SecretSet>(std::move(secrets),
                                                         network.on_secret_violation, engine);
  options.network = network;
  options.transparent_fds = sockets.transparent;
  options.audit_log_path = settings.audit_log;
  options.home = settings.home;
  options.log_level = log_level(settings);
  options.pins = &pins_;
  options.policy = policy_;
  options.on_terminate = [&box](const std::string& reason) { box.terminate(reason); };
  options.limits = budget;
  options.audit_fail_open = settings.audit_fail_open;
  gateway_ = std::make_unique<gateway::Gateway>(std::move(options));
  sockets.transparent.clear();  // the gateway owns them now
  phase("gateway constructed");
  gateway_->start();
  box.trust_ca(gateway_->ca_certificate_pem());
}

std::uint64_t NetworkServices::replace_secrets(std::vector<SecretBinding> secrets) {
  secrets::EngineOptions engine;
  engine.max_body_bytes = network_.max_body_bytes;
  return gateway_->replace_secrets(
      std::make_shared<secrets::SecretSet>(std::move(secrets), network_.on_secret_violation, engine));
}

NetworkServices::~NetworkServices() {
  if (gateway_) {
    gateway_->stop();
    gateway_->wait();
  }
  if (forwarder_) forwarder_->stop();
  io_.stop();
  if (dns_thread_.joinable()) dns_thread_.join();
}

gateway::LogLevel NetworkServices::log_level(const GatewaySettings& settings) {
  const auto level = gateway::parse_log_level(settings.log_level.empty() ? "warn" : settings.log_level);
  if (!level) throw ConfigError("log level " + settings.log_level + " is not one of error, warn, info, debug");
  return *level;
}

void NetworkServices::record_refusal(std::string_view name, dns::Outcome outcome) {
  record_dns_refusal(dns_audit_, logger_, name, outcome);
}

SandboxWithNetwork make_sandbox_with_network(sandbox::SandboxOptions options, const std::vector<SecretBinding>& secrets,
                                             const NetworkConfig& network, const GatewaySettings& settings,
                                             const std::vector<std::string>& egress_first,
                                             const std::vector<std::string>& dns_servers,
                                             const gateway::BudgetLimits& budget) {
  auto policy = make_egress_policy(egress_first, network.egress);
  options.blocked_destinations = guard_destinations(*policy);
  SandboxWithNetwork out;
  out.box = std::make_unique<sandbox::Sandbox>(std::move(options), secrets);
  phase("gateway namespace ready");
  sandbox::GatewaySockets sockets = out.box->take_gateway_sockets();
  std::vector<SecretBinding> for_gateway;
  for (const SecretBinding& s : secrets) for_gateway.push_back(s.clone());
  try {
    out.services = std::make_unique<NetworkServices>(*out.box, sockets, std::move(for_gateway), network, settings,
                                                     dns_servers, std::move(policy), budget);
  } catch (...) {
    close_all(sockets);
    throw;
  }
  phase("gateway and dns started");
  return out;
}

gateway::BudgetLimits sandbox_budget(const GatewaySettings& settings, std::optional<std::uint64_t> guest_memory,
                                     std::optional<std::uint64_t> gateway_memory, std::uint64_t max_connections) {
  std::uint64_t memory = guest_memory.value_or(kDefaultSandboxMemory);
  if (settings.memory_budget) memory = *settings.memory_budget;
  if (gateway_memory) memory = *gateway_memory;
  std::uint64_t connections = settings.max_connections.value_or(kDefaultSandboxConnections);
  if (max_connections > 0) connections = max_connections;
  gateway::BudgetLimits limits;
  limits.memory_bytes = limits.client_memory_bytes = memory;
  limits.connections = limits.client_connections = connections;
  limits.reserve_connections = 0;  // one client: nobody to keep room for
  return limits;
}

}  // namespace airlock::cli
