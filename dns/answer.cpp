#include "dns/answer.hpp"

#include <algorithm>
#include <optional>

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

namespace {

bool asked_for(std::uint16_t qtype, std::uint16_t rtype) {
  return rtype == qtype || (qtype == type::kAny && (rtype == type::kA || rtype == type::kAaaa));
}

}  // namespace

AnswerChain follow_chain(const Message& answer) {
  AnswerChain chain;
  if (answer.questions.empty()) return chain;
  const Question& question = answer.questions.front();
  std::vector<Name> names = {question.name};
  std::uint32_t ttl = UINT32_MAX;  // the smallest CNAME TTL on the way to names.back()
  for (;;) {
    const Name& current = names.back();
    std::optional<Name> next;
    std::uint32_t link_ttl = 0;
    for (const Record& r : answer.answers) {
      if (r.type != type::kCname || r.klass != kClassIn || !(r.name == current)) continue;
      auto target = r.cname_target();
      if (!target || (next && !(*next == *target))) {
        chain.end = ChainEnd::kFork;  // unreadable or a second, different target
        break;
      }
      if (!next) link_ttl = r.ttl;
      link_ttl = std::min(link_ttl, r.ttl);
      next = std::move(target);
    }
    if (chain.end == ChainEnd::kFork || !next) break;
    if (std::find(names.begin(), names.end(), *next) != names.end()) {
      chain.end = ChainEnd::kLoop;
      break;
    }
    if (names.size() == kMaxChainNames) {
      chain.end = ChainEnd::kTooLong;
      break;
    }
    ttl = std::min(ttl, link_ttl);
    names.push_back(std::move(*next));
  }
  if (chain.end == ChainEnd::kEnd) {
    for (const Record& r : answer.answers) {
      if (r.klass != kClassIn || !asked_for(question.type, r.type) || !(r.name == names.back())) continue;
      if (auto ip = r.address()) chain.addresses.push_back({*ip, std::min(ttl, r.ttl)});
    }
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
