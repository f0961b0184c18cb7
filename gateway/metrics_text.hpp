#pragma once
// The Prometheus text exposition format (version 0.0.4), pure: metric families in, text out.
// What the admin listener serves at /metrics. Never given a secret value: only counts and the
// names of things (reasons, outcomes), and label values are escaped as the format requires.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace airlock::gateway {

struct MetricSample {
  using Labels = std::vector<std::pair<std::string, std::string>>;  // name, value
  MetricSample(Labels labels_, std::uint64_t value_, std::string suffix_ = {})
      : labels(std::move(labels_)), value(value_), suffix(std::move(suffix_)) {}
  Labels labels;
  std::uint64_t value = 0;
  std::string suffix;  // a histogram's "_bucket" (with an "le" label), "_sum" or "_count"
};

struct MetricFamily {
  enum class Type : std::uint8_t { kCounter, kGauge, kHistogram };
  std::string name;  // [a-zA-Z_:][a-zA-Z0-9_:]*; counters end in _total
  std::string help;
  Type type = Type::kCounter;
  std::vector<MetricSample> samples;
};

// Throws std::invalid_argument for a bad metric or label name (a programming error: names are ours).
std::string render_prometheus(const std::vector<MetricFamily>& families);

}  // namespace airlock::gateway
