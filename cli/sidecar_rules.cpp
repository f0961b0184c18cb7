#include "cli/sidecar_rules.hpp"

#include <airlock/errors.hpp>

namespace airlock::cli {

std::string sidecar_ruleset(const SidecarRedirect& redirect) {
  if (redirect.gateway_uid == 0) {
    throw ConfigError("the gateway's uid must not be 0: every root process of the pod would bypass the redirect; "
                      "run the gateway as a uid of its own (e.g. 1337)");
  }
  if (redirect.transparent_port == 0 || redirect.dns_port == 0 || redirect.transparent_port == redirect.dns_port) {
    throw ConfigError("the transparent and DNS ports must be two different ports above 0");
  }
  const std::string uid = std::to_string(redirect.gateway_uid);
  const std::string tp = std::to_string(redirect.transparent_port);
  const std::string dp = std::to_string(redirect.dns_port);
  const std::string table = std::string("inet ") + kSidecarTable;
  std::string r;
  // Declaring then deleting makes the delete succeed whether or not the table exists; the whole
  // file is one transaction, so there is no moment without the rules during a replacement.
  r += "table " + table + " {}\n";
  r += "delete table " + table + "\n";
  r += "table " + table + " {\n";
  r += "  chain nat_output {\n";
  r += "    type nat hook output priority -100; policy accept;\n";
  r += "    meta skuid " + uid + " return\n";
  // DNS first: a resolver the workload runs itself, even on loopback, is not asked.
  r += "    udp dport 53 redirect to :" + dp + "\n";
  r += "    tcp dport 53 redirect to :" + dp + "\n";
  // Loopback and the pod's own addresses stay inside the pod (other containers' ports).
  r += "    fib daddr type local return\n";
  r += "    meta l4proto tcp redirect to :" + tp + "\n";
  r += "  }\n";
  r += "  chain filter_output {\n";
  r += "    type filter hook output priority filter; policy drop;\n";
  r += "    meta skuid " + uid + " accept\n";
  r += "    oifname \"lo\" accept\n";
  r += "    ct status dnat accept\n";
  // The kernel's own neighbour discovery, or IPv6 does not work at all. The kernel sends it from a
  // socket without a file, which has no uid: the uid match (any uid at all) tells a process's raw
  // socket, whose forged ND would otherwise leave the pod, from the kernel.
  const std::string nd = "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit }";
  r += "    meta skuid 0-4294967295 " + nd + " drop\n";
  r += "    ip6 hoplimit 255 " + nd + " accept\n";
  // A fast failure for UDP (QUIC falls back to TCP); anything else is dropped silently.
  r += "    meta l4proto udp reject\n";
  r += "  }\n";
  r += "}\n";
  return r;
}

std::string sidecar_remove_script() {
  const std::string table = std::string("inet ") + kSidecarTable;
  return "table " + table + " {}\ndelete table " + table + "\n";
}

}  // namespace airlock::cli
