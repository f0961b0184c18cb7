#pragma once
// What an answer says about names and addresses: the CNAME chain from the query name, the
// addresses at the end of it, and every address the message carries anywhere. Pure.
#include "dns/message.hpp"

#include <policy/policy.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace airlock::dns {

inline constexpr std::size_t kMaxChainNames = 16;  // the query name plus 15 CNAME links

struct ChainAddress {
  IpAddress ip;
  std::uint32_t ttl = 0;  // the smallest TTL on the way: every CNAME link before it and itself
};

struct AnswerChain {
  std::vector<std::string> names;         // Name::text() of the query name, then each CNAME target
  std::vector<ChainAddress> addresses;    // class-IN A/AAAA answers owned by a name in `names`
};

// Follows CNAME records in the answer section from the first question's name. Records that are
// not on the chain are ignored. The chain stops at a loop or after kMaxChainNames names.
AnswerChain follow_chain(const Message& answer);

// Every address in the message, for the rebind filter: A/AAAA data in any section and the
// ipv4hint/ipv6hint parameters of SVCB/HTTPS records (clients connect to those too).
std::vector<IpAddress> all_addresses(const Message& message);

// The rebind filter's verdict on an upstream answer (policy::Policy::check_answer over the
// chain's names and all_addresses()).
policy::AnswerVerdict check_answer(const Message& answer, const policy::Policy& policy);

}  // namespace airlock::dns
