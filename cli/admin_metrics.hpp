#pragma once
// What `airlock gateway --admin` serves at /metrics: the gateway's counters and, in sidecar mode,
// the DNS forwarder's, as Prometheus metric families. Counts and names only, never a value.
#include <dns/forwarder.hpp>
#include <gateway/gateway.hpp>
#include <gateway/metrics_text.hpp>

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace airlock::cli {

// Metrics the gateway's audit records carry (it sees each one through GatewayOptions::on_record):
// connections by decision, violations by action, blocks by reason, scrubs, substitutions by secret
// (the env name, never a value), bytes each way, and a histogram of connection durations.
// Thread-safe. Label values come from records the guest can influence (a block's reason), so each
// label keeps at most kMaxLabelValues distinct values ("other" past that) of at most 128 bytes.
class RecordMetrics {
 public:
  static constexpr std::size_t kMaxLabelValues = 32;
  static constexpr std::array<std::uint64_t, 10> kDurationBucketsMs = {1, 5, 10, 50, 100, 500, 1000, 5000, 30000, 300000};

  void observe(const gateway::AuditFacts& record);
  std::vector<gateway::MetricFamily> families() const;

 private:
  static void count(std::map<std::string, std::uint64_t>& by, const std::optional<std::string_view>& value);

  mutable std::mutex mutex_;
  std::map<std::string, std::uint64_t> decisions_, violations_, blocks_, substitutions_;
  std::uint64_t scrubs_ = 0, misaligned_ = 0, bytes_up_ = 0, bytes_down_ = 0;
  std::array<std::uint64_t, kDurationBucketsMs.size()> duration_buckets_{};
  std::uint64_t duration_sum_ms_ = 0, duration_count_ = 0;
};

// The gateway's request latency histogram (buckets in microseconds; no label but `le`).
gateway::MetricFamily request_latency_family(const gateway::LatencyHistogram::Snapshot& latency);

// `dns` and `records` may be null (no forwarder: the gateway alone; no record metrics).
std::vector<gateway::MetricFamily> gateway_metrics(const gateway::GatewayCounters& counters,
                                                   const dns::ForwarderStats* dns, bool ready,
                                                   const RecordMetrics* records = nullptr);

}  // namespace airlock::cli
