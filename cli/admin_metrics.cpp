#include "cli/admin_metrics.hpp"

#include "cli/build_commit.hpp"  // generated at build time (cmake/git_version.cmake)

#ifndef AIRLOCK_VERSION
#define AIRLOCK_VERSION "unknown"
#endif

namespace airlock::cli {

std::vector<gateway::MetricFamily> gateway_metrics(const gateway::GatewayCounters& c, const dns::ForwarderStats* dns,
                                                   bool ready) {
  using Type = gateway::MetricFamily::Type;
  auto one = [](std::uint64_t v) { return std::vector<gateway::MetricSample>{{{}, v}}; };
  std::vector<gateway::MetricFamily> out = {
      {"airlock_build_info", "The airlock version and commit of this process.", Type::kGauge,
       {{{{"version", AIRLOCK_VERSION}, {"commit", AIRLOCK_BUILD_COMMIT}}, 1}}},
      {"airlock_ready", "1 while the gateway serves (what /readyz answers).", Type::kGauge, one(ready ? 1 : 0)},
      {"airlock_connections_accepted_total", "Connections accepted by the gateway's listeners.", Type::kCounter,
       one(c.accepted)},
      {"airlock_connections_active", "Connections open now.", Type::kGauge, one(c.active)},
      {"airlock_connections_rejected_total", "Connections closed at once, by reason.", Type::kCounter,
       {{{{"reason", "over_limit"}}, c.rejected_over_limit}}},
      {"airlock_connections_intercepted_total", "Connections whose TLS the gateway intercepted.", Type::kCounter,
       one(c.intercepted)},
      {"airlock_connections_denied_total", "Connections the egress policy denied.", Type::kCounter, one(c.denied)},
      {"airlock_substitutions_total", "Placeholders replaced by their value in requests.", Type::kCounter,
       one(c.substitutions)},
      {"airlock_requests_blocked_total", "Requests blocked (violations and unsafe substitutions).", Type::kCounter,
       one(c.blocked)},
  };
  if (dns != nullptr) {
    out.push_back({"airlock_dns_queries_total", "DNS queries from the workload.", Type::kCounter, one(dns->queries.load())});
    out.push_back({"airlock_dns_responses_total", "DNS responses to the workload, by outcome.", Type::kCounter,
                   {{{{"outcome", "answered"}}, dns->answered.load()},
                    {{{"outcome", "truncated"}}, dns->truncated.load()},
                    {{{"outcome", "denied_domain"}}, dns->denied_domain.load()},
                    {{{"outcome", "rebinding"}}, dns->rebinding.load()},
                    {{{"outcome", "servfail"}}, dns->servfail.load()},
                    {{{"outcome", "dropped"}}, dns->dropped.load()}}});
    out.push_back({"airlock_dns_upstream_tries_total", "DNS tries sent to the upstream resolvers, by transport.",
                   Type::kCounter,
                   {{{{"transport", "udp"}}, dns->upstream_udp.load()}, {{{"transport", "tcp"}}, dns->upstream_tcp.load()}}});
  }
  return out;
}

}  // namespace airlock::cli
