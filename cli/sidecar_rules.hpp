#pragma once
// The sidecar's nftables redirect (pure: text in, text out). In a pod every container shares one
// network namespace, so the rules hook the output path: every process's TCP goes to the gateway's
// transparent listener and its DNS (UDP and TCP 53, to any address) to the gateway's DNS
// forwarder, both on loopback; the gateway's own traffic is told apart by its uid (a socket mark
// would need CAP_NET_ADMIN in the long-running gateway). Everything else that would leave the
// namespace is dropped: other UDP (QUIC falls back to TCP), ICMP, raw sockets, IPv4 and IPv6 alike.
#include <cstdint>
#include <string>

namespace airlock::cli {

struct SidecarRedirect {
  std::uint32_t gateway_uid = 0;      // the only uid whose traffic leaves as it is; never 0
  std::uint16_t transparent_port = 15001;
  std::uint16_t dns_port = 15053;
};

inline constexpr const char* kSidecarTable = "airlock_sidecar";  // table inet airlock_sidecar

// One nft script that replaces any earlier airlock_sidecar table atomically (a restart after a
// crash). Throws ConfigError for uid 0 (every root process of the pod would bypass the redirect)
// or a port 0.
std::string sidecar_ruleset(const SidecarRedirect& redirect);
// Removes the table; an absent table is not an error.
std::string sidecar_remove_script();

}  // namespace airlock::cli
