#include "cli/admin_metrics.hpp"

#include <gtest/gtest.h>

namespace airlock::cli {
namespace {

TEST(AdminMetrics, GatewayCountersAndDnsOutcomes) {
  gateway::GatewayCounters c;
  c.accepted = 5;
  c.active = 1;
  c.substitutions = 3;
  c.denied = 2;
  dns::ForwarderStats stats;
  stats.queries = 9;
  stats.answered = 7;
  stats.rebinding = 1;
  stats.denied_domain = 1;
  const std::string text = gateway::render_prometheus(gateway_metrics(c, &stats, true));
  for (const char* line : {"airlock_connections_accepted_total 5\n", "airlock_connections_active 1\n",
                           "airlock_substitutions_total 3\n", "airlock_connections_denied_total 2\n",
                           "airlock_ready 1\n", "airlock_dns_queries_total 9\n",
                           "airlock_dns_responses_total{outcome=\"answered\"} 7\n",
                           "airlock_dns_responses_total{outcome=\"rebinding\"} 1\n",
                           "airlock_dns_responses_total{outcome=\"denied_domain\"} 1\n",
                           "airlock_dns_responses_total{outcome=\"servfail\"} 0\n"}) {
    EXPECT_NE(text.find(line), std::string::npos) << line;
  }
}

TEST(AdminMetrics, NoDnsFamiliesWithoutAForwarder) {
  const std::string text = gateway::render_prometheus(gateway_metrics({}, nullptr, false));
  EXPECT_EQ(text.find("airlock_dns_"), std::string::npos);
  EXPECT_NE(text.find("airlock_ready 0\n"), std::string::npos);
}

}  // namespace
}  // namespace airlock::cli
