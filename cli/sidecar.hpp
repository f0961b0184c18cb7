#pragma once
// `airlock gateway --sidecar`: the gateway in the workload's own network namespace (a pod).
// The control-path pieces: applying the redirect (cli/sidecar_rules.hpp) with nft, running the
// gateway as an unprivileged uid while a privileged keeper holds the redirect, and the DNS
// forwarder whose answers are the gateway's pin set, as `airlock run` has it.
#include "cli/sidecar_rules.hpp"

#include <dns/forwarder.hpp>
#include <dns/pin_set.hpp>
#include <gateway/audit_log.hpp>

#include <asio/io_context.hpp>

#include <functional>
#include <memory>
#include <string>
#include <sys/types.h>
#include <thread>
#include <vector>

namespace airlock::cli {

// Runs `nft -f -` with `script` in this network namespace. Throws std::runtime_error with nft's
// message when it fails (no CAP_NET_ADMIN, no nftables in the kernel).
void apply_nft(const std::string& script);

struct UserIds {
  uid_t uid = 0;
  gid_t gid = 0;
};
// "UID" or "UID:GID" (numbers; a pod names users by number). Throws ConfigError.
UserIds parse_user_ids(const std::string& text);

// --redirect: installs the redirect excluding `user`, then runs `gateway` in a child process that
// has dropped to `user` (no capabilities, no supplementary groups, no new privileges) while this
// process stays privileged only to undo the redirect: SIGTERM/SIGINT/SIGHUP are passed to the
// child; when it exits 0 the redirect is removed; after a crash or an error exit it is kept, so
// the workload's traffic fails closed (it reaches no listener) instead of leaving unfiltered.
// Returns the child's exit status (128 + signal when killed).
int run_with_redirect(const SidecarRedirect& redirect, UserIds user, const std::function<int()>& gateway);

// True when ::1 can be bound here (IPv6 on loopback).
bool loopback_v6_available();

// The DNS forwarder of the sidecar on 127.0.0.1:port (and [::1]:port), filling the pin set the
// gateway checks; refusals are audited beside the gateway's records and warned.
class SidecarDns {
 public:
  SidecarDns(std::uint16_t port, const std::vector<std::string>& upstreams, const policy::Policy& policy,
             const std::string& audit_log, gateway::LogLevel level);
  ~SidecarDns();
  SidecarDns(const SidecarDns&) = delete;
  SidecarDns& operator=(const SidecarDns&) = delete;
  const dns::PinSet& pins() const noexcept { return pins_; }
  std::vector<std::string> endpoints() const { return endpoints_; }
  const dns::ForwarderStats& stats() const noexcept { return forwarder_->stats(); }

 private:
  void record_refusal(std::string_view name, dns::Outcome outcome);

  dns::PinSet pins_;
  gateway::Logger logger_;
  gateway::AuditLog audit_;
  asio::io_context io_;
  std::unique_ptr<dns::Forwarder> forwarder_;
  std::thread thread_;
  std::vector<std::string> endpoints_;
};

// `IP`, `IP:PORT` or `[IPv6]:PORT` (port 53 by default). Throws ConfigError naming `flag`.
asio::ip::udp::endpoint parse_resolver(const std::string& text, const std::string& flag);
// A query the policy answered NXDOMAIN (the sandbox's and the sidecar's forwarder): a dns_refused
// audit record beside the gateway's, and a warning.
void record_dns_refusal(gateway::AuditLog& audit, gateway::Logger& logger, std::string_view name,
                        dns::Outcome outcome);

}  // namespace airlock::cli
