#include "cli/sidecar_rules.hpp"

#include <airlock/errors.hpp>

#include <gtest/gtest.h>

namespace airlock::cli {
namespace {

std::size_t find_or_fail(const std::string& text, const std::string& what) {
  const std::size_t at = text.find(what);
  EXPECT_NE(at, std::string::npos) << "missing: " << what;
  return at;
}

TEST(SidecarRules, RedirectsEveryOtherUidAndExcludesTheGateway) {
  const std::string r = sidecar_ruleset({1337, 15001, 15053});
  const std::size_t skip = find_or_fail(r, "meta skuid 1337 return\n");
  const std::size_t dns = find_or_fail(r, "udp dport 53 redirect to :15053\n");
  find_or_fail(r, "tcp dport 53 redirect to :15053\n");
  const std::size_t local = find_or_fail(r, "fib daddr type local return\n");
  const std::size_t tcp = find_or_fail(r, "meta l4proto tcp redirect to :15001\n");
  // Order is the policy: the gateway first, DNS before the local exemption, TCP last.
  EXPECT_LT(skip, dns);
  EXPECT_LT(dns, local);
  EXPECT_LT(local, tcp);
  // Everything else that leaves is dropped, in one inet table (IPv4 and IPv6).
  find_or_fail(r, "table inet airlock_sidecar {\n");
  find_or_fail(r, "type filter hook output priority filter; policy drop;\n");
  find_or_fail(r, "meta skuid 1337 accept\n");
  // Neighbour discovery only from the kernel (no uid), never from a process's raw socket.
  const std::size_t forged = find_or_fail(r, "meta skuid 0-4294967295 icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } drop\n");
  const std::size_t kernel = find_or_fail(r, "ip6 hoplimit 255 icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept\n");
  EXPECT_LT(forged, kernel);
  EXPECT_EQ(r.find("ip daddr"), std::string::npos);
}

TEST(SidecarRules, ReplacesAnEarlierTableInOneTransaction) {
  const std::string r = sidecar_ruleset({1000, 1, 2});
  EXPECT_EQ(r.rfind("table inet airlock_sidecar {}\ndelete table inet airlock_sidecar\n", 0), 0u);
  EXPECT_EQ(sidecar_remove_script(), "table inet airlock_sidecar {}\ndelete table inet airlock_sidecar\n");
}

TEST(SidecarRules, RefusesRootAndBadPorts) {
  EXPECT_THROW(sidecar_ruleset({0, 15001, 15053}), ConfigError);
  EXPECT_THROW(sidecar_ruleset({1337, 0, 15053}), ConfigError);
  EXPECT_THROW(sidecar_ruleset({1337, 15001, 0}), ConfigError);
  EXPECT_THROW(sidecar_ruleset({1337, 15001, 15001}), ConfigError);
}

}  // namespace
}  // namespace airlock::cli
