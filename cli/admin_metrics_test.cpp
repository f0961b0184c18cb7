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

TEST(AdminMetrics, RequestLatencyIsAHistogramInMicroseconds) {
  gateway::LatencyHistogram h;
  h.observe(std::chrono::microseconds(80));
  h.observe(std::chrono::milliseconds(30));
  h.observe(std::chrono::seconds(90));
  gateway::GatewayCounters c;
  c.request_latency = h.snapshot();
  const std::string text = gateway::render_prometheus(gateway_metrics(c, nullptr, true));
  for (const char* line : {"# TYPE airlock_request_latency_microseconds histogram\n",
                           "airlock_request_latency_microseconds_bucket{le=\"100\"} 1\n",
                           "airlock_request_latency_microseconds_bucket{le=\"25000\"} 1\n",
                           "airlock_request_latency_microseconds_bucket{le=\"50000\"} 2\n",
                           "airlock_request_latency_microseconds_bucket{le=\"60000000\"} 2\n",
                           "airlock_request_latency_microseconds_bucket{le=\"+Inf\"} 3\n",
                           "airlock_request_latency_microseconds_sum 90030080\n",
                           "airlock_request_latency_microseconds_count 3\n"}) {
    EXPECT_NE(text.find(line), std::string::npos) << line;
  }
  // Only `le` labels: nothing a request carries (a host, a path, a placeholder) becomes one.
  const std::size_t family = text.find("airlock_request_latency_microseconds_bucket");
  const std::size_t end = text.find("airlock_request_latency_microseconds_sum");
  for (std::size_t at = text.find('{', family); at < end; at = text.find('{', at + 1))
    EXPECT_EQ(text.compare(at, 5, "{le=\""), 0);
}

TEST(AdminMetrics, NoDnsFamiliesWithoutAForwarder) {
  const std::string text = gateway::render_prometheus(gateway_metrics({}, nullptr, false));
  EXPECT_EQ(text.find("airlock_dns_"), std::string::npos);
  EXPECT_NE(text.find("airlock_ready 0\n"), std::string::npos);
}

}  // namespace
}  // namespace airlock::cli

namespace airlock::cli {
namespace {

// A JSON record as the audit log hands it to its observer (the facts are views into it: the
// temporary lives through the call).
gateway::AuditFacts facts(const nlohmann::ordered_json& record) { return gateway::AuditFacts::of(record); }

TEST(RecordMetrics, CountsWhatTheAuditRecordsSay) {
  RecordMetrics m;
  m.observe(facts({{"event", "connection"}, {"decision", "allowed"}, {"bytes_up", 100u}, {"bytes_down", 2000u}, {"duration_ms", 7u}}));
  m.observe(facts({{"event", "connection"}, {"decision", "denied"}, {"bytes_up", 0u}, {"bytes_down", 0u}, {"duration_ms", 0u}}));
  m.observe(facts({{"event", "violation"}, {"action", "block-and-log"}}));
  m.observe(facts({{"event", "blocked"}, {"reason", "encoded body"}}));
  m.observe(facts({{"event", "substitution"}, {"secret", "API_KEY"}}));
  m.observe(facts({{"event", "scrubbed"}}));
  m.observe(facts({{"no", "event"}}));
  const std::string text = gateway::render_prometheus(m.families());
  for (const char* line : {"airlock_connections_total{decision=\"allowed\"} 1\n",
                           "airlock_connections_total{decision=\"denied\"} 1\n",
                           "airlock_violations_total{action=\"block-and-log\"} 1\n",
                           "airlock_blocks_total{reason=\"encoded body\"} 1\n",
                           "airlock_substitutions_by_secret_total{secret=\"API_KEY\"} 1\n",
                           "airlock_scrubbed_connections_total 1\n",
                           "airlock_bytes_total{direction=\"up\"} 100\n", "airlock_bytes_total{direction=\"down\"} 2000\n",
                           "airlock_connection_duration_milliseconds_bucket{le=\"1\"} 1\n",
                           "airlock_connection_duration_milliseconds_bucket{le=\"10\"} 2\n",
                           "airlock_connection_duration_milliseconds_bucket{le=\"+Inf\"} 2\n",
                           "airlock_connection_duration_milliseconds_sum 7\n",
                           "airlock_connection_duration_milliseconds_count 2\n"}) {
    EXPECT_NE(text.find(line), std::string::npos) << line;
  }
}

TEST(RecordMetrics, LabelValuesFromHostileRecordsAreBounded) {
  RecordMetrics m;
  for (int i = 0; i < 1000; ++i) m.observe(facts({{"event", "blocked"}, {"reason", "reason " + std::to_string(i) + std::string(500, 'x')}}));
  const auto families = m.families();
  const auto& blocks = families[2];
  ASSERT_EQ(blocks.name, "airlock_blocks_total");
  EXPECT_EQ(blocks.samples.size(), RecordMetrics::kMaxLabelValues + 1);  // 32 reasons and "other"
  std::uint64_t total = 0;
  for (const auto& s : blocks.samples) {
    EXPECT_LE(s.labels[0].second.size(), 128u);
    total += s.value;
  }
  EXPECT_EQ(total, 1000u);
}

}  // namespace
}  // namespace airlock::cli

namespace airlock::cli {
namespace {

// The per-request records reach the metrics as facts, no longer parsed back from their text:
// what /metrics says is the same as when each record was parsed (the old path), for the records
// the gateway writes both ways (substitutions as AuditRecords, the rest as JSON).
TEST(RecordMetrics, FactsGiveTheSameMetricsAsTheParsedRecords) {
  RecordMetrics direct, parsed;
  gateway::AuditLog log("");  // no file: the observer still sees every record
  log.set_observer([&](const gateway::AuditFacts& f) { direct.observe(f); });
  const std::vector<std::string> secrets = {"API_KEY", "OTHER", "WEIRD\"NAME\\x", "API_KEY"};
  for (std::size_t i = 0; i < secrets.size(); ++i) {
    gateway::AuditRecord r("substitution");
    r.number("connection", i).string("sni", "api.example.com").string("secret", secrets[i]).string("host", "api.example.com");
    ASSERT_TRUE(log.write(r, {.event = "substitution", .secret = secrets[i]}));
    parsed.observe(facts(nlohmann::ordered_json::parse(r.object())));
  }
  for (const nlohmann::ordered_json& j :
       {nlohmann::ordered_json{{"event", "connection"}, {"decision", "allowed"}, {"bytes_up", 10u}, {"duration_ms", 3u}},
        nlohmann::ordered_json{{"event", "blocked"}, {"reason", "over the memory budget"}},
        nlohmann::ordered_json{{"event", "violation"}, {"action", "block"}},
        nlohmann::ordered_json{{"event", "scrubbed"}}, nlohmann::ordered_json{{"event", "misaligned"}},
        nlohmann::ordered_json{{"event", "connection"}, {"decision", 7}}}) {
    ASSERT_TRUE(log.write(j));
    parsed.observe(facts(nlohmann::ordered_json::parse(j.dump())));
  }
  const std::string text = gateway::render_prometheus(direct.families());
  EXPECT_EQ(text, gateway::render_prometheus(parsed.families()));
  EXPECT_NE(text.find("airlock_substitutions_by_secret_total{secret=\"API_KEY\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("airlock_connections_total{decision=\"none\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("airlock_misaligned_connections_total 1\n"), std::string::npos) << text;
}

}  // namespace
}  // namespace airlock::cli
