#pragma once
// What `airlock gateway --admin` serves at /metrics: the gateway's counters and, in sidecar mode,
// the DNS forwarder's, as Prometheus metric families. Counts and names only, never a value.
#include <dns/forwarder.hpp>
#include <gateway/gateway.hpp>
#include <gateway/metrics_text.hpp>

#include <vector>

namespace airlock::cli {

// `dns` may be null (no forwarder: the gateway alone).
std::vector<gateway::MetricFamily> gateway_metrics(const gateway::GatewayCounters& counters,
                                                   const dns::ForwarderStats* dns, bool ready);

}  // namespace airlock::cli
