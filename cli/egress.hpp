#pragma once
// The egress policy as the commands build it from `[network] egress` and `--egress`.
#include <policy/policy.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::cli {

// Parses one rule and checks that airlock can honour it: the gateway relays TCP only (and DNS
// through its forwarder), so an allow rule for UDP or ICMP alone is refused instead of being
// silently ineffective. Throws ConfigError "rule '<text>': <what is wrong>".
policy::Rule parse_egress_rule(std::string_view text);

// The policy: the command line's rules first, then the config file's, then the defaults. The
// `host` group is this host's interface addresses.
std::shared_ptr<const policy::Policy> make_egress_policy(const std::vector<std::string>& command_line,
                                                         const std::vector<std::string>& config_file);

// The sandbox's nftables guard (TCP reset before the gateway): the default blocked ranges and
// this host's addresses, each with its IPv6 forms (sandbox::with_ipv4_embeddings), less every
// range an allow rule of `policy` opens (the gateway decides those).
std::vector<std::string> guard_destinations(const policy::Policy& policy);

}  // namespace airlock::cli
