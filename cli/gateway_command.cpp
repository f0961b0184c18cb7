// `airlock gateway`: the gateway on its own, as a transparent or explicit (CONNECT) proxy.
#include "cli/admin_metrics.hpp"
#include "cli/commands.hpp"
#include "cli/config.hpp"
#include "cli/egress.hpp"
#include "cli/sidecar.hpp"

#include <airlock/errors.hpp>
#include <gateway/admin_server.hpp>
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
#include <sys/stat.h>
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
  // --sidecar: in the workload's network namespace (a pod).
  bool sidecar = false;
  bool redirect = false;  // install the redirect itself (needs CAP_NET_ADMIN) and run as --user
  std::string user;
  std::uint16_t transparent_port = 15001;
  std::uint16_t dns_port = 15053;
  std::vector<std::string> dns_servers;
  std::string export_ca;
  std::string admin;  // admin listener (metrics, health): loopback or unix:/path; off when empty
  bool admin_reload = false;  // POST /reload on the admin listener
};

struct InitRedirectArgs {
  std::uint32_t gateway_uid = 0;
  std::uint16_t transparent_port = 15001;
  std::uint16_t dns_port = 15053;
  bool remove = false;
};

// Writes the CA certificate where the workload reads it (a volume both mount): a temporary file
// renamed into place, so a reader never sees half a certificate.
void export_ca_certificate(const std::string& pem, const std::string& path) {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) throw ConfigError("--export-ca " + path + ": cannot write: " + std::strerror(errno));
  const bool ok = std::fwrite(pem.data(), 1, pem.size(), f) == pem.size();
  if (std::fclose(f) != 0 || !ok || ::chmod(tmp.c_str(), 0644) != 0 || std::rename(tmp.c_str(), path.c_str()) != 0) {
    throw ConfigError("--export-ca " + path + ": cannot write: " + std::strerror(errno));
  }
}

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

std::shared_ptr<const secrets::SecretSet> secret_set(AirlockConfig& config) {
  secrets::EngineOptions engine;
  engine.max_body_bytes = config.sandbox.network.max_body_bytes;
  return std::make_shared<secrets::SecretSet>(std::move(config.sandbox.secrets),
                                              config.sandbox.network.on_secret_violation, engine);
}

// SIGHUP and POST /reload: the config file read again, its secrets (added, removed, values from
// `value_from` read anew) swapped in for connections that start from now on. Read off the data
// path; a config error keeps the running set and is reported (it never holds a value). Only the
// secrets (with [network] on_secret_violation and max_body_bytes, which belong to them) change:
// listeners, egress, intercept ports and upstream CAs need a restart.
class Reloader {
 public:
  Reloader(std::string path, gateway::Gateway& gw) : path_(std::move(path)), gw_(gw) {}
  gateway::AdminResult reload() {
    std::lock_guard lock(mutex_);  // SIGHUP and the admin listener: one at a time
    gateway::AdminResult r;
    try {
      AirlockConfig config = load_config(path_);
      const std::size_t count = config.sandbox.secrets.size();
      const std::uint64_t generation = gw_.replace_secrets(secret_set(config));
      generation_ = generation;
      r.ok = true;
      r.message = "airlock gateway: reloaded " + path_ + ": " + std::to_string(count) + " secret" +
                  (count == 1 ? "" : "s") + " (generation " + std::to_string(generation) + ")";
    } catch (const std::exception& e) {
      r.message = "airlock gateway: reload failed, the running secrets stay: " + std::string(e.what());
    }
    ++(r.ok ? reloaded_ : failed_);
    std::cerr << r.message << "\n" << std::flush;
    return r;
  }
  std::vector<gateway::MetricFamily> families() const {
    using Type = gateway::MetricFamily::Type;
    return {{"airlock_config_reloads_total", "Reloads of the config (SIGHUP, POST /reload), by result.", Type::kCounter,
             {{{{"result", "ok"}}, reloaded_.load()}, {{{"result", "failed"}}, failed_.load()}}},
            {"airlock_secrets_generation", "The secret set in use: 1 at start, one more at each reload that took.",
             Type::kGauge, {{{}, generation_.load()}}}};
  }

 private:
  std::string path_;
  gateway::Gateway& gw_;
  std::mutex mutex_;
  std::atomic<std::uint64_t> reloaded_{0}, failed_{0}, generation_{1};
};

int run_gateway(const GatewayArgs& args) {
  AirlockConfig config = load_config(args.config);
  GatewaySettings& settings = config.gateway;
  if (!args.transparent.empty()) settings.transparent_listen = args.transparent;
  if (!args.proxy.empty()) settings.proxy_listen = args.proxy;
  if (!args.audit_log.empty()) settings.audit_log = args.audit_log;
  if (!args.log_level.empty()) settings.log_level = args.log_level;
  if (args.sidecar) {
    // The redirect sends every other process's TCP to loopback: the listener is there, nowhere else.
    if (!args.transparent.empty()) throw ConfigError("--sidecar listens on loopback at --transparent-port; --transparent does not apply");
    if (::geteuid() == 0) {
      throw ConfigError("--sidecar must not serve as root: the redirect excludes the gateway's uid, and every root "
                        "process of the pod would bypass it; run it as a uid of its own (or --redirect --user UID)");
    }
    const std::string port = std::to_string(args.transparent_port);
    settings.transparent_listen = "127.0.0.1:" + port;
    if (loopback_v6_available()) settings.transparent_listen += ",[::1]:" + port;
  }
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
  options.secrets = secret_set(config);
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

  // Signals are taken synchronously by this thread; every thread started from
  // here on (DNS, gateway, admin) inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  raise_descriptor_limit();

  // The sidecar sees the workload's DNS (the redirect sends it here): its answers are the pin set,
  // as in `airlock run`, and the host-DNS mode does not apply.
  std::unique_ptr<SidecarDns> dns;
  if (args.sidecar) {
    dns = std::make_unique<SidecarDns>(args.dns_port, args.dns_servers, *options.policy, settings.audit_log, *level);
    options.pins = &dns->pins();
  } else if (!args.dns_servers.empty()) {
    throw ConfigError("--dns-server applies only to --sidecar");
  }

  // A block-and-terminate violation (on a loop thread) wakes the main thread's signal wait with a
  // SIGTERM of its own: the main thread sleeps until a signal and never polls.
  std::atomic<bool> terminate{false};
  options.on_terminate = [&terminate](const std::string&) {
    terminate = true;
    ::kill(::getpid(), SIGTERM);
  };
  RecordMetrics record_metrics;  // outlives the gateway (declared before it)
  if (!args.admin.empty()) options.on_record = [&record_metrics](const gateway::AuditFacts& r) { record_metrics.observe(r); };

  gateway::Gateway gw(std::move(options));
  Reloader reloader(args.config, gw);
  // Up before the gateway serves, so /readyz says 503 until it does and again while it stops.
  std::atomic<bool> ready{false};
  std::unique_ptr<gateway::AdminServer> admin;
  if (!args.admin.empty()) {
    admin = std::make_unique<gateway::AdminServer>(
        args.admin, gateway::AdminHandlers{
                        [&gw, &dns, &ready, &record_metrics, &reloader] {
                          auto families = gateway_metrics(gw.counters(), dns ? &dns->stats() : nullptr, ready.load(),
                                                          &record_metrics);
                          for (auto& f : reloader.families()) families.push_back(std::move(f));
                          return gateway::render_prometheus(families);
                        },
                        [&ready] { return ready.load(); },
                        args.admin_reload ? std::function<gateway::AdminResult()>([&reloader] { return reloader.reload(); })
                                          : nullptr});
  }
  gw.start();
  ready = true;
  gateway::GatewayEndpoints endpoints = gw.endpoints();
  if (!args.export_ca.empty()) export_ca_certificate(gw.ca_certificate_pem(), args.export_ca);
  std::string ready_line = "airlock gateway ready transparent=" + join(endpoints.transparent) + " proxy=" + join(endpoints.proxy);
  if (dns) ready_line += " dns=" + join(dns->endpoints());
  if (admin) ready_line += " admin=" + admin->endpoint();
  ready_line += "\n";
  std::cout << ready_line << std::flush;
  if (args.ready_fd >= 0) {
    ssize_t ignored = ::write(args.ready_fd, ready_line.data(), ready_line.size());
    (void)ignored;
    ::close(args.ready_fd);
  }

  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0 || sig != SIGHUP) break;
    reloader.reload();
  }
  ready = false;
  gw.stop();
  admin.reset();
  dns.reset();
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
      "placeholder is substituted on transparent connections. With --sidecar the workload's DNS comes to the "
      "gateway's forwarder and its answers are the pins, as in `airlock run`.\n"
      "Egress: --egress rules, then [network] egress, then the defaults (allow public TCP, deny the rest): a "
      "denied connection is reset (a CONNECT gets 403) and audited with the rule.\n"
      "Reload: SIGHUP (or POST /reload on the admin listener with --admin-reload) reads --config again and swaps "
      "in its secrets (added, removed, values read anew from value_from) for connections that start from then on; "
      "open connections keep theirs and are not dropped. A config error keeps the running secrets. Listeners, "
      "egress, intercept ports and upstream CAs need a restart.\n"
      "Exit status: 0 after SIGTERM/SIGINT, 3 after a block-and-terminate violation, 2 on a configuration error.");
  command->add_option("--config", args->config, "the airlock.toml with secrets, [network] and [gateway] (required)");
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
  command->add_flag("--sidecar", args->sidecar,
                    "run in the workload's network namespace (a pod): transparent listener and DNS forwarder on "
                    "loopback, pinned by the workload's own DNS; the redirect comes from init-redirect or --redirect");
  command->add_flag("--redirect", args->redirect,
                    "with --sidecar, as root: install the redirect (excluding --user), serve as --user, remove the "
                    "redirect after a clean stop (kept after a failure: the workload fails closed)");
  command->add_option("--user", args->user, "UID[:GID] the --redirect gateway runs as (not 0)");
  command->add_option("--transparent-port", args->transparent_port, "with --sidecar: the redirect's TCP port (default 15001)");
  command->add_option("--dns-port", args->dns_port, "with --sidecar: the redirect's DNS port (default 15053)");
  command->add_option("--dns-server", args->dns_servers,
                      "with --sidecar: IP[:PORT] of the resolver the DNS forwarder asks (default: /etc/resolv.conf)")
      ->allow_extra_args(false);
  command->add_option("--admin", args->admin,
                      "admin listener: GET /metrics (Prometheus), /healthz, /readyz; 127.0.0.1:PORT, [::1]:PORT or "
                      "unix:/path (off by default)");
  command->add_flag("--admin-reload", args->admin_reload,
                    "also answer POST /reload on the admin listener (anyone who can reach it can trigger a reload: "
                    "prefer a unix socket)");
  command->add_option("--export-ca", args->export_ca,
                      "write the CA certificate (PEM) to this file once listening (a volume the workload trusts)");

  auto init = std::make_shared<InitRedirectArgs>();
  CLI::App* init_redirect = command->add_subcommand(
      "init-redirect",
      "Install (or --remove) the sidecar's nftables redirect in this network namespace and exit: the init step for "
      "a pod whose long-running gateway has no CAP_NET_ADMIN");
  init_redirect->add_option("--gateway-uid", init->gateway_uid, "the uid the sidecar gateway runs as (not 0)");
  init_redirect->add_option("--transparent-port", init->transparent_port, "the gateway's --transparent-port (default 15001)");
  init_redirect->add_option("--dns-port", init->dns_port, "the gateway's --dns-port (default 15053)");
  init_redirect->add_flag("--remove", init->remove, "remove the redirect instead");
  init_redirect->callback([init] {
    if (init->remove) {
      apply_nft(sidecar_remove_script());
      std::cout << "airlock gateway: redirect removed\n";
      return;
    }
    if (init->gateway_uid == 0) throw ConfigError("init-redirect needs --gateway-uid UID (not 0)");
    apply_nft(sidecar_ruleset({init->gateway_uid, init->transparent_port, init->dns_port}));
    std::cout << "airlock gateway: redirect installed: TCP to :" << init->transparent_port << ", DNS to :"
              << init->dns_port << ", uid " << init->gateway_uid << " excluded\n";
  });

  command->callback([args, init_redirect] {
    if (init_redirect->parsed()) return;
    if (args->config.empty()) throw ConfigError("--config is required");
    if (args->admin_reload && args->admin.empty()) throw ConfigError("--admin-reload needs --admin");
    if ((args->redirect || !args->user.empty()) && !args->sidecar) throw ConfigError("--redirect and --user apply only to --sidecar");
    int status = 0;
    if (args->redirect) {
      if (args->user.empty()) throw ConfigError("--redirect needs --user UID[:GID]: the gateway must not serve as root");
      const UserIds user = parse_user_ids(args->user);
      status = run_with_redirect({static_cast<std::uint32_t>(user.uid), args->transparent_port, args->dns_port}, user,
                                 [args] { return run_gateway(*args); });
    } else {
      status = run_gateway(*args);
    }
    if (status != 0) throw CLI::RuntimeError(status);
  });
}

}  // namespace airlock::cli
