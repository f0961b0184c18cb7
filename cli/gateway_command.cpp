// `airlock gateway`: the gateway on its own, as a transparent or explicit (CONNECT) proxy.
#include "cli/commands.hpp"
#include "cli/config.hpp"
#include "cli/egress.hpp"

#include <airlock/errors.hpp>
#include <gateway/gateway.hpp>
#include <gateway/resolved_pins.hpp>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <mutex>

#include <sys/resource.h>
#include <unistd.h>

namespace airlock::cli {
namespace {

struct GatewayArgs {
  std::string config;
  std::string transparent;
  std::string proxy;
  std::string audit_log;
  std::string log_level;
  std::string ca_cert;
  std::string ca_key;
  std::vector<std::string> egress;
  int ready_fd = -1;
  int threads = 0;
};

// Many concurrent connections need two descriptors each: take the hard limit.
void raise_descriptor_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
}

std::string join(const std::vector<std::string>& items) {
  if (items.empty()) return "-";
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ",") + i;
  return out;
}

int run_gateway(const GatewayArgs& args) {
  AirlockConfig config = load_config(args.config);
  GatewaySettings& settings = config.gateway;
  if (!args.transparent.empty()) settings.transparent_listen = args.transparent;
  if (!args.proxy.empty()) settings.proxy_listen = args.proxy;
  if (!args.audit_log.empty()) settings.audit_log = args.audit_log;
  if (!args.log_level.empty()) settings.log_level = args.log_level;
  if (settings.transparent_listen.empty() && settings.proxy_listen.empty())
    throw ConfigError("no listener: give --transparent ADDR and/or --proxy ADDR (or [gateway] transparent_listen / proxy_listen)");
  auto level = gateway::parse_log_level(settings.log_level.empty() ? "info" : settings.log_level);
  if (!level) throw ConfigError("log level " + quote_for_message(settings.log_level) + " is not one of error, warn, info, debug, trace");

  // Without the sandbox's DNS there is no pin set. resolve_pins_with_host_dns = true selects the
  // standalone pin source (resolve the SNI with the host resolver); otherwise transparent
  // connections are never pinned (no substitution), while CONNECT tunnels pin what the gateway
  // resolved itself.
  static const gateway::ResolvedPins no_pins;  // pins nothing
  gateway::GatewayOptions options;
  secrets::EngineOptions engine;
  engine.max_body_bytes = config.sandbox.network.max_body_bytes;
  options.secrets = std::make_shared<secrets::SecretSet>(std::move(config.sandbox.secrets),
                                                         config.sandbox.network.on_secret_violation, engine);
  options.network = config.sandbox.network;
  options.transparent_listen = settings.transparent_listen;
  options.proxy_listen = settings.proxy_listen;
  options.audit_log_path = settings.audit_log;
  options.home = settings.home;
  options.ca_certificate_file = args.ca_cert;
  options.ca_key_file = args.ca_key;
  options.threads = args.threads;
  options.log_level = *level;
  options.pins = settings.resolve_pins_with_host_dns ? nullptr : &no_pins;
  options.policy = make_egress_policy(args.egress, config.sandbox.network.egress);
  // Standalone: a global budget for all clients, and one per client (source address).
  if (settings.memory_budget) options.limits.memory_bytes = *settings.memory_budget;
  if (settings.client_memory_budget) options.limits.client_memory_bytes = *settings.client_memory_budget;
  if (settings.max_connections) options.limits.connections = *settings.max_connections;
  if (settings.max_client_connections) options.limits.client_connections = *settings.max_client_connections;
  options.limits.reserve_connections = options.limits.connections / 10;
  options.audit_fail_open = settings.audit_fail_open;

  std::atomic<bool> terminate{false};
  options.on_terminate = [&terminate](const std::string&) { terminate = true; };

  // Signals are taken synchronously by this thread; every gateway thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  raise_descriptor_limit();

  gateway::Gateway gw(std::move(options));
  gw.start();
  gateway::GatewayEndpoints endpoints = gw.endpoints();
  std::string ready = "airlock gateway ready transparent=" + join(endpoints.transparent) + " proxy=" + join(endpoints.proxy) + "\n";
  std::cout << ready << std::flush;
  if (args.ready_fd >= 0) {
    ssize_t ignored = ::write(args.ready_fd, ready.data(), ready.size());
    (void)ignored;
    ::close(args.ready_fd);
  }

  while (!terminate) {
    timespec tick{0, 100'000'000};
    int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig > 0) break;
  }
  gw.stop();
  if (terminate) {
    std::cerr << "airlock gateway: exiting after a block-and-terminate violation\n";
    return 3;
  }
  return 0;
}

}  // namespace

void add_gateway_command(CLI::App& app) {
  auto args = std::make_shared<GatewayArgs>();
  CLI::App* command = app.add_subcommand("gateway", "Run the airlock gateway on its own (transparent or explicit proxy)");
  command->footer(
      "DNS pins: a CONNECT tunnel is pinned to the addresses the gateway resolved for its authority. Transparent "
      "connections have no sandbox DNS here: with [gateway] resolve_pins_with_host_dns = true the gateway resolves "
      "the SNI (or Host) with this host's resolver and pins the original destination when it is among the answers "
      "(a weaker, standalone mode: the workload's own DNS is not seen); otherwise nothing is pinned for them and no "
      "placeholder is substituted on transparent connections.\n"
      "Egress: --egress rules, then [network] egress, then the defaults (allow public TCP, deny the rest): a "
      "denied connection is reset (a CONNECT gets 403) and audited with the rule.\n"
      "Exit status: 0 after SIGTERM/SIGINT, 3 after a block-and-terminate violation, 2 on a configuration error.");
  command->add_option("--config", args->config, "the airlock.toml with secrets, [network] and [gateway]")->required();
  command->add_option("--transparent", args->transparent, "transparent listener (redirected traffic), e.g. 127.0.0.1:15001");
  command->add_option("--proxy", args->proxy, "explicit HTTP proxy listener (CONNECT / absolute-form), e.g. 127.0.0.1:3128");
  command->add_option("--audit-log", args->audit_log, "append JSON-lines audit records to this file");
  command->add_option("--log-level", args->log_level, "error, warn, info (default), debug");
  command->add_option("--ca-cert", args->ca_cert, "use this CA certificate (PEM) instead of the one under the home directory");
  command->add_option("--ca-key", args->ca_key, "the key (PEM) of --ca-cert");
  command->add_option("--egress", args->egress,
                      "RULE: an egress rule, before the config file's (allow@10.1.2.0/24:tcp:443, deny@metadata)")
      ->allow_extra_args(false);
  command->add_option("--ready-fd", args->ready_fd, "also write the ready line to this descriptor, then close it");
  command->add_option("--threads", args->threads, "event-loop threads (default: one per core)");
  command->callback([args] {
    int status = run_gateway(*args);
    if (status != 0) throw CLI::RuntimeError(status);
  });
}

}  // namespace airlock::cli
