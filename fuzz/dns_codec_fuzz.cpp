// libFuzzer target for the DNS wire codec.
//
// Input: one DNS message. Properties checked (trap on failure): no crash or sanitizer report;
// a message that parses re-encodes (unless the uncompressed form exceeds 65535 bytes), the
// re-encoding parses to an equal message and encodes to the same bytes again; the question-only
// parse agrees with the full parse; every name's text form parses back to an equal name; the
// chain, address and rebind helpers and the pin set accept whatever parsed. Pin provenance
// (issue 12, item 1): a chain with no well-defined end has no addresses; what an answer pins is
// pinned under the question name alone, and only addresses the chain yields.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "dns/answer.hpp"
#include "dns/message.hpp"
#include "dns/pin_set.hpp"
#include "policy/policy.hpp"

namespace {

using namespace airlock;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

void check_name(const dns::Name& n) {
  check(n.wire().size() <= dns::kMaxNameBytes);
  auto back = dns::Name::from_text(n.text());
  check(back.has_value() && *back == n);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view wire(reinterpret_cast<const char*>(data), size);

  dns::Header header;
  std::optional<dns::Question> question;
  const std::error_code qec = dns::parse_question(wire, header, question);

  dns::Message m;
  const std::error_code ec = dns::parse(wire, m);
  if (ec) return 0;
  check(!qec);
  check(header == m.header);
  check(question.has_value() == !m.questions.empty());
  if (question) check(*question == m.questions.front());

  for (const auto& q : m.questions) check_name(q.name);
  for (const auto* section : {&m.answers, &m.authority, &m.additional}) {
    for (const auto& r : *section) {
      check_name(r.name);
      if (auto t = r.cname_target()) check_name(*t);
      if (r.type == dns::type::kA) check(r.address().has_value());
    }
  }

  std::string out;
  const std::error_code bec = dns::build(m, out);
  if (bec) {
    check(bec == dns::Errc::kTooLarge);
  } else {
    dns::Message again;
    check(!dns::parse(out, again));
    check(again == m);
    std::string out2;
    check(!dns::build(again, out2));
    check(out2 == out);
  }

  const dns::AnswerChain chain = dns::follow_chain(m);
  check(chain.names.size() <= dns::kMaxChainNames);
  check(chain.end == dns::ChainEnd::kEnd || chain.addresses.empty());
  if (!m.questions.empty()) check(!chain.names.empty() && chain.names.front() == m.questions.front().name.text());
  {
    dns::PinSet fresh([] { return dns::PinTime{}; });
    const std::size_t added = fresh.record(m, dns::PinTime{});
    check(added <= chain.addresses.size());
    for (const auto& a : chain.addresses) {
      for (const std::string& n : fresh.names_for(a.ip, dns::PinTime{})) check(n == chain.names.front());
    }
    check(fresh.size() <= chain.addresses.size());
  }
  static const policy::Policy policy = policy::Policy::from_text(
      std::vector<std::string>{"allow@10.0.0.0/24", "deny@*.blocked.example"},
      {*IpAddress::parse("192.0.2.53")});
  (void)dns::check_answer(m, policy);

  static dns::PinSet pins([] { return dns::PinTime{}; },
                          dns::PinSetOptions{.min_hold = std::chrono::seconds(1),
                                             .max_hold = std::chrono::seconds(10),
                                             .max_entries = 256});
  pins.record(m, dns::PinTime{});
  check(pins.size() <= 256);

  const dns::Message t = dns::truncated(m);
  check(t.header.tc() && t.answers.empty());
  const dns::Message r = dns::make_response(m, dns::rcode::kNxDomain);
  check(r.header.qr() && r.header.rcode() == dns::rcode::kNxDomain && r.header.id == m.header.id);
  return 0;
}
