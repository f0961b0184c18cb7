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

// How following the chain ended. Only kEnd yields addresses: an answer whose chain loops, runs
// past kMaxChainNames or forks has no well-defined end, so it pins nothing.
enum class ChainEnd : std::uint8_t {
  kEnd,      // the last name owns no CNAME
  kLoop,     // a CNAME points back at a name already on the chain
  kTooLong,  // the kMaxChainNames-th name still owns a CNAME
  kFork,     // a name on the chain owns CNAMEs with different targets
};

struct AnswerChain {
  std::vector<std::string> names;         // Name::text() of the query name, then each CNAME target
  ChainEnd end = ChainEnd::kEnd;
  // With kEnd: the class-IN address records of the asked type (A for A, AAAA for AAAA, both for
  // ANY) owned by names.back(). Empty otherwise.
  std::vector<ChainAddress> addresses;
};

// Follows CNAME records in the answer section from the first question's name (issue 12, item 1):
// each step takes the CNAME owned by the current name wherever it sits in the section (order
// does not matter, the anchor does), names compared case-insensitively. Records owned by names
// off the chain, and address records owned by any chain name but the last, are ignored.
AnswerChain follow_chain(const Message& answer);

// Every address in the message, for the rebind filter: A/AAAA data in any section and the
// ipv4hint/ipv6hint parameters of SVCB/HTTPS records (clients connect to those too).
std::vector<IpAddress> all_addresses(const Message& message);

// The rebind filter's verdict on an upstream answer (policy::Policy::check_answer over the
// chain's names and all_addresses()).
policy::AnswerVerdict check_answer(const Message& answer, const policy::Policy& policy);

}  // namespace airlock::dns
