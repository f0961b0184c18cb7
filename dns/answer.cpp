#include "dns/answer.hpp"

#include <algorithm>

namespace airlock::dns {
namespace {

// SVCB/HTTPS (RFC 9460): priority, target name (never compressed), then key/length/value params.
void svcb_hints(const std::string& rdata, std::vector<IpAddress>& out) {
  std::size_t pos = 2;
  // Skip the target name.
  while (pos < rdata.size()) {
    const auto len = static_cast<unsigned char>(rdata[pos]);
    if (len == 0) { ++pos; break; }
    if (len & 0xc0) return;
    pos += 1 + len;
  }
  while (pos + 4 <= rdata.size()) {
    const unsigned key = (static_cast<unsigned char>(rdata[pos]) << 8) | static_cast<unsigned char>(rdata[pos + 1]);
    const std::size_t len = (static_cast<unsigned char>(rdata[pos + 2]) << 8) | static_cast<unsigned char>(rdata[pos + 3]);
    pos += 4;
    if (pos + len > rdata.size()) return;
    const std::size_t width = key == 4 ? 4 : key == 6 ? 16 : 0;  // ipv4hint, ipv6hint
    if (width != 0) {
      for (std::size_t at = pos; at + width <= pos + len; at += width) {
        IpAddress ip;
        ip.family = width == 4 ? IpAddress::Family::kV4 : IpAddress::Family::kV6;
        std::copy(rdata.begin() + static_cast<std::ptrdiff_t>(at),
                  rdata.begin() + static_cast<std::ptrdiff_t>(at + width), ip.bytes.begin());
        out.push_back(ip);
      }
    }
    pos += len;
  }
}

}  // namespace

AnswerChain follow_chain(const Message& answer) {
  AnswerChain chain;
  if (answer.questions.empty()) return chain;
  std::vector<Name> names = {answer.questions.front().name};
  std::vector<std::uint32_t> ttl_to = {UINT32_MAX};  // smallest CNAME TTL before names[i]
  while (names.size() < kMaxChainNames) {
    const Name& current = names.back();
    auto it = std::find_if(answer.answers.begin(), answer.answers.end(), [&](const Record& r) {
      return r.type == type::kCname && r.klass == kClassIn && r.name == current;
    });
    if (it == answer.answers.end()) break;
    auto target = it->cname_target();
    if (!target || std::find(names.begin(), names.end(), *target) != names.end()) break;
    ttl_to.push_back(std::min(ttl_to.back(), it->ttl));
    names.push_back(std::move(*target));
  }
  for (const Record& r : answer.answers) {
    if (r.klass != kClassIn) continue;
    auto ip = r.address();
    if (!ip) continue;
    auto owner = std::find(names.begin(), names.end(), r.name);
    if (owner == names.end()) continue;
    const auto index = static_cast<std::size_t>(owner - names.begin());
    chain.addresses.push_back({*ip, std::min(ttl_to[index], r.ttl)});
  }
  chain.names.reserve(names.size());
  for (const Name& n : names) chain.names.push_back(n.text());
  return chain;
}

std::vector<IpAddress> all_addresses(const Message& message) {
  std::vector<IpAddress> out;
  for (const auto* section : {&message.answers, &message.authority, &message.additional}) {
    for (const Record& r : *section) {
      if (auto ip = r.address()) {
        out.push_back(*ip);
      } else if (r.type == type::kSvcb || r.type == type::kHttps) {
        svcb_hints(r.rdata, out);
      }
    }
  }
  return out;
}

policy::AnswerVerdict check_answer(const Message& answer, const policy::Policy& policy) {
  const AnswerChain chain = follow_chain(answer);
  const std::vector<IpAddress> addresses = all_addresses(answer);
  return policy.check_answer(chain.names, addresses);
}

}  // namespace airlock::dns
