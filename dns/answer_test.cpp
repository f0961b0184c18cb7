#include "dns/answer.hpp"

#include <gtest/gtest.h>

namespace airlock::dns {
namespace {

Name name(std::string_view text) { return *Name::from_text(text); }
IpAddress ip(std::string_view text) { return *IpAddress::parse(text); }

Message answer(std::string_view qname, std::vector<Record> records) {
  Message m;
  m.header.set_qr(true);
  m.questions.push_back({name(qname), type::kA, kClassIn});
  m.answers = std::move(records);
  return m;
}

const std::vector<IpAddress> kHost = {ip("192.0.2.53")};

using policy::AnswerVerdict;

TEST(RebindFilter, PrivateAnswersAreRebinding) {
  const policy::Policy p({}, kHost);
  EXPECT_EQ(check_answer(answer("ok.example", {Record::a_or_aaaa(name("ok.example"), ip("8.8.8.8"), 60)}), p),
            AnswerVerdict::kPass);
  for (const char* bad : {"10.0.0.1", "127.0.0.1", "169.254.169.254", "fd00:ec2::254", "::1", "fe80::1",
                          "100.64.1.1", "192.0.2.53", "::ffff:10.0.0.1"}) {
    EXPECT_EQ(check_answer(answer("evil.example", {Record::a_or_aaaa(name("evil.example"), ip(bad), 60)}), p),
              AnswerVerdict::kRebinding) << bad;
  }
  // Behind a CNAME, off the chain, in the additional section, or in an HTTPS hint: still caught.
  EXPECT_EQ(check_answer(answer("a.example", {Record::cname(name("a.example"), name("b.example"), 60),
                                              Record::a_or_aaaa(name("b.example"), ip("10.0.0.1"), 60)}), p),
            AnswerVerdict::kRebinding);
  EXPECT_EQ(check_answer(answer("a.example", {Record::a_or_aaaa(name("a.example"), ip("8.8.8.8"), 60),
                                              Record::a_or_aaaa(name("z.example"), ip("127.0.0.1"), 60)}), p),
            AnswerVerdict::kRebinding);
  Message extra = answer("a.example", {Record::a_or_aaaa(name("a.example"), ip("8.8.8.8"), 60)});
  extra.additional.push_back(Record::a_or_aaaa(name("ns.example"), ip("192.168.0.1"), 60));
  EXPECT_EQ(check_answer(extra, p), AnswerVerdict::kRebinding);
  Message https = answer("a.example", {});
  Record h;
  h.name = name("a.example");
  h.type = type::kHttps;
  using namespace std::string_literals;
  h.rdata = "\0\1"s + "\0"s + "\0\4\0\4"s + "\xa9\xfe\xa9\xfe"s;
  https.answers.push_back(h);
  EXPECT_EQ(check_answer(https, p), AnswerVerdict::kRebinding);
}

// Issue 12, item 2: an answer whose AAAA embeds a non-public IPv4 address is rebinding.
TEST(RebindFilter, Ipv6FormsOfPrivateAddressesAreRebinding) {
  const policy::Policy p({}, kHost);
  auto aaaa = [](const char* address) {
    return answer("api.example", {Record::a_or_aaaa(name("api.example"), ip(address), 60)});
  };
  for (const char* bad : {"64:ff9b::a9fe:a9fe", "64:ff9b::a00:1", "64:ff9b::7f00:1", "64:ff9b:1:a9fe:a9:fe00::",
                          "64:ff9b:1::a00:1", "2002:a9fe:a9fe::", "2002:c0a8:101::1", "2002:c000:235::1",
                          "::a9fe:a9fe", "::ffff:a9fe:a9fe", "2001:0:a9fe:a9fe::1", "2001:0:808:808::f5ff:fffe",
                          "fec0::1"}) {
    EXPECT_EQ(check_answer(aaaa(bad), p), AnswerVerdict::kRebinding) << bad;
  }
  for (const char* fine : {"64:ff9b::808:808", "2002:808:808::1", "2606:4700::1111"}) {
    EXPECT_EQ(check_answer(aaaa(fine), p), AnswerVerdict::kPass) << fine;
  }
  // An allow of the IPv4 range does not let its NAT64 form through; naming the form does.
  const policy::Policy v4 = policy::Policy::from_text(std::vector<std::string>{"allow@169.254.169.254"}, kHost);
  EXPECT_EQ(check_answer(aaaa("64:ff9b::a9fe:a9fe"), v4), AnswerVerdict::kRebinding);
  const policy::Policy v6 = policy::Policy::from_text(std::vector<std::string>{"allow@[64:ff9b::a9fe:a9fe]"}, kHost);
  EXPECT_EQ(check_answer(aaaa("64:ff9b::a9fe:a9fe"), v6), AnswerVerdict::kPass);
}

TEST(RebindFilter, ExplicitAddressRuleAllows) {
  const policy::Policy p = policy::Policy::from_text(
      std::vector<std::string>{"allow@10.0.0.0/24:tcp:443", "deny@*.blocked.example"}, kHost);
  EXPECT_EQ(check_answer(answer("intra.example", {Record::a_or_aaaa(name("intra.example"), ip("10.0.0.1"), 60)}), p),
            AnswerVerdict::kPass);
  EXPECT_EQ(check_answer(answer("intra.example", {Record::a_or_aaaa(name("intra.example"), ip("10.0.1.1"), 60)}), p),
            AnswerVerdict::kRebinding);
  EXPECT_EQ(check_answer(answer("x.blocked.example", {}), p), AnswerVerdict::kDeniedDomain);
  EXPECT_EQ(check_answer(answer("ok.example", {Record::cname(name("ok.example"), name("x.blocked.example"), 60),
                                               Record::a_or_aaaa(name("x.blocked.example"), ip("8.8.8.8"), 60)}),
                         p),
            AnswerVerdict::kDeniedDomain);
}

}  // namespace
}  // namespace airlock::dns
