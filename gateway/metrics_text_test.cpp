#include "gateway/metrics_text.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

namespace airlock::gateway {
namespace {

TEST(MetricsText, RendersHelpTypeAndSamples) {
  std::vector<MetricFamily> families = {
      {"airlock_connections_accepted_total", "Connections accepted.", MetricFamily::Type::kCounter, {{{}, 7}}},
      {"airlock_connections_active", "Open connections.", MetricFamily::Type::kGauge, {{{}, 2}}},
      {"airlock_dns_answers_total", "DNS answers by outcome.", MetricFamily::Type::kCounter,
       {{{{"outcome", "answered"}}, 5}, {{{"outcome", "rebinding"}}, 1}}},
  };
  EXPECT_EQ(render_prometheus(families),
            "# HELP airlock_connections_accepted_total Connections accepted.\n"
            "# TYPE airlock_connections_accepted_total counter\n"
            "airlock_connections_accepted_total 7\n"
            "# HELP airlock_connections_active Open connections.\n"
            "# TYPE airlock_connections_active gauge\n"
            "airlock_connections_active 2\n"
            "# HELP airlock_dns_answers_total DNS answers by outcome.\n"
            "# TYPE airlock_dns_answers_total counter\n"
            "airlock_dns_answers_total{outcome=\"answered\"} 5\n"
            "airlock_dns_answers_total{outcome=\"rebinding\"} 1\n");
}

TEST(MetricsText, EscapesLabelValuesAndHelp) {
  std::vector<MetricFamily> families = {
      {"airlock_build_info", "Version\\commit\nof this build.", MetricFamily::Type::kGauge,
       {{{{"version", "0.1.0"}, {"commit", "a\"b\\c\nd"}}, 1}}},
  };
  EXPECT_EQ(render_prometheus(families),
            "# HELP airlock_build_info Version\\\\commit\\nof this build.\n"
            "# TYPE airlock_build_info gauge\n"
            "airlock_build_info{version=\"0.1.0\",commit=\"a\\\"b\\\\c\\nd\"} 1\n");
}

TEST(MetricsText, RendersAHistogram) {
  std::vector<MetricFamily> families = {
      {"airlock_connection_duration_milliseconds", "How long connections lasted.", MetricFamily::Type::kHistogram,
       {{{{"le", "10"}}, 1, "_bucket"}, {{{"le", "+Inf"}}, 2, "_bucket"}, {{}, 1005, "_sum"}, {{}, 2, "_count"}}},
  };
  EXPECT_EQ(render_prometheus(families),
            "# HELP airlock_connection_duration_milliseconds How long connections lasted.\n"
            "# TYPE airlock_connection_duration_milliseconds histogram\n"
            "airlock_connection_duration_milliseconds_bucket{le=\"10\"} 1\n"
            "airlock_connection_duration_milliseconds_bucket{le=\"+Inf\"} 2\n"
            "airlock_connection_duration_milliseconds_sum 1005\n"
            "airlock_connection_duration_milliseconds_count 2\n");
  EXPECT_THROW(render_prometheus({{"h", "", MetricFamily::Type::kHistogram, {{{}, 1, "_max"}}}}), std::invalid_argument);
}

TEST(MetricsText, RefusesBadNames) {
  EXPECT_THROW(render_prometheus({{"1bad", "", MetricFamily::Type::kGauge, {}}}), std::invalid_argument);
  EXPECT_THROW(render_prometheus({{"a b", "", MetricFamily::Type::kGauge, {}}}), std::invalid_argument);
  EXPECT_THROW(render_prometheus({{"ok", "", MetricFamily::Type::kGauge, {{{{"__reserved", "x"}}, 1}}}}),
               std::invalid_argument);
  EXPECT_THROW(render_prometheus({{"ok", "", MetricFamily::Type::kGauge, {{{{"a:b", "x"}}, 1}}}}), std::invalid_argument);
  EXPECT_NO_THROW(render_prometheus({{"ns:ok_total", "", MetricFamily::Type::kCounter, {{{{"a_b1", "x"}}, 1}}}}));
}

}  // namespace
}  // namespace airlock::gateway
