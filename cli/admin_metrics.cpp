#include "cli/admin_metrics.hpp"

#include "cli/build_commit.hpp"  // generated at build time (cmake/git_version.cmake)

#ifndef AIRLOCK_VERSION
#define AIRLOCK_VERSION "unknown"
#endif

namespace airlock::cli {

namespace {

std::vector<gateway::MetricSample> by_label(const std::map<std::string, std::uint64_t>& counts, const char* label) {
  std::vector<gateway::MetricSample> out;
  for (const auto& [value, n] : counts) out.push_back({{{label, value}}, n});
  return out;
}

}  // namespace

gateway::MetricFamily request_latency_family(const gateway::LatencyHistogram::Snapshot& latency) {
  std::vector<gateway::MetricSample> samples;
  const auto& bounds = gateway::LatencyHistogram::kBoundsUs;
  for (std::size_t i = 0; i < bounds.size(); ++i)
    samples.push_back({{{"le", std::to_string(bounds[i])}}, latency.cumulative[i], "_bucket"});
  samples.push_back({{{"le", "+Inf"}}, latency.count, "_bucket"});
  samples.push_back({{}, latency.sum_us, "_sum"});
  samples.push_back({{}, latency.count, "_count"});
  return {"airlock_request_latency_microseconds",
          "Per request, from its head complete at the gateway to its response head forwarded to the guest.",
          gateway::MetricFamily::Type::kHistogram, std::move(samples)};
}

void RecordMetrics::count(std::map<std::string, std::uint64_t>& by, const std::optional<std::string_view>& field) {
  std::string value = field ? std::string(*field) : std::string("none");
  if (value.size() > 128) value.resize(128);
  if (by.find(value) == by.end() && by.size() >= kMaxLabelValues) value = "other";
  ++by[value];
}

void RecordMetrics::observe(const gateway::AuditFacts& record) {
  const std::string_view e = record.event;
  if (e.empty()) return;
  std::lock_guard lock(mutex_);
  if (e == "connection") {
    count(decisions_, record.decision);
    bytes_up_ += record.bytes_up;
    bytes_down_ += record.bytes_down;
    const std::uint64_t ms = record.duration_ms;
    for (std::size_t i = 0; i < kDurationBucketsMs.size(); ++i) {
      if (ms <= kDurationBucketsMs[i]) ++duration_buckets_[i];
    }
    duration_sum_ms_ += ms;
    ++duration_count_;
  } else if (e == "violation") {
    count(violations_, record.action);
  } else if (e == "blocked") {
    count(blocks_, record.reason);
  } else if (e == "substitution") {
    count(substitutions_, record.secret);
  } else if (e == "scrubbed") {
    ++scrubs_;
  } else if (e == "misaligned") {
    ++misaligned_;
  }
}

std::vector<gateway::MetricFamily> RecordMetrics::families() const {
  using Type = gateway::MetricFamily::Type;
  std::lock_guard lock(mutex_);
  std::vector<gateway::MetricSample> duration;
  for (std::size_t i = 0; i < kDurationBucketsMs.size(); ++i) {
    duration.push_back({{{"le", std::to_string(kDurationBucketsMs[i])}}, duration_buckets_[i], "_bucket"});
  }
  duration.push_back({{{"le", "+Inf"}}, duration_count_, "_bucket"});
  duration.push_back({{}, duration_sum_ms_, "_sum"});
  duration.push_back({{}, duration_count_, "_count"});
  return {
      {"airlock_connections_total", "Connections ended, by the gateway's decision.", Type::kCounter,
       by_label(decisions_, "decision")},
      {"airlock_violations_total", "Placeholders bound for a host their secret does not allow, by action.",
       Type::kCounter, by_label(violations_, "action")},
      {"airlock_blocks_total", "Requests blocked because a due substitution was unsafe, by reason.", Type::kCounter,
       by_label(blocks_, "reason")},
      {"airlock_substitutions_by_secret_total", "Substitutions, by the secret's environment variable.",
       Type::kCounter, by_label(substitutions_, "secret")},
      {"airlock_scrubbed_connections_total", "Connections whose responses echoed a value (masked).", Type::kCounter,
       {{{}, scrubs_}}},
      {"airlock_misaligned_connections_total", "CONNECT tunnels whose TLS named another host (no substitution).",
       Type::kCounter, {{{}, misaligned_}}},
      {"airlock_bytes_total", "Bytes relayed, by direction.", Type::kCounter,
       {{{{"direction", "up"}}, bytes_up_}, {{{"direction", "down"}}, bytes_down_}}},
      {"airlock_connection_duration_milliseconds", "How long connections lasted.", Type::kHistogram, duration},
  };
}

std::vector<gateway::MetricFamily> gateway_metrics(const gateway::GatewayCounters& c, const dns::ForwarderStats* dns,
                                                   bool ready, const RecordMetrics* records) {
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
      {"airlock_upstream_pooled_total", "Upstream connections handed to an event loop's pool by guest connections at rest.",
       Type::kCounter, one(c.upstream_pooled)},
      {"airlock_upstream_reused_total", "Guest connections served by a pooled upstream connection (no new handshake).",
       Type::kCounter, one(c.upstream_reused)},
  };
  out.push_back(request_latency_family(c.request_latency));
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
  if (records != nullptr) {
    for (auto& f : records->families()) out.push_back(std::move(f));
  }
  return out;
}

}  // namespace airlock::cli
