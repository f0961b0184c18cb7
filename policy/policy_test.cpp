#include "policy/policy.hpp"

#include <gtest/gtest.h>

#include <utility>

namespace airlock::policy {
namespace {

IpAddress ip(std::string_view text) { return *IpAddress::parse(text); }

// Pins as a list of (address, name).
class FakePins : public secrets::PinQuery {
 public:
  std::vector<std::pair<IpAddress, std::string>> pins;
  bool pinned(const IpAddress& a, const HostPattern& p) const override {
    for (const auto& [x, name] : pins) {
      if (x == a && p.matches(name)) return true;
    }
    return false;
  }
};

const std::vector<IpAddress> kHost = {ip("192.0.2.53"), ip("2001:db8::53")};

Policy make(std::vector<std::string> lines) { return Policy::from_text(lines, kHost); }

Action decide(const Policy& p, std::string_view dst, Protocol proto, std::uint16_t port,
              std::string_view sni = {}, const secrets::PinQuery* pins = nullptr) {
  return p.decide(Flow{ip(dst), proto, port, sni}, pins).action;
}

constexpr auto kAllow = Action::kAllow;
constexpr auto kDeny = Action::kDeny;
constexpr auto kTcp = Protocol::kTcp;
constexpr auto kUdp = Protocol::kUdp;
constexpr auto kIcmp = Protocol::kIcmp;

TEST(Policy, DefaultAllowsPublicAndDnsToHostOnly) {
  const Policy p = make({});
  EXPECT_EQ(p.rules().size(), 2u);
  EXPECT_EQ(p.rules()[0].to_string(), "allow@public:tcp");
  EXPECT_EQ(p.rules()[1].to_string(), "allow@host:any:53");
  EXPECT_EQ(decide(p, "8.8.8.8", kTcp, 443), kAllow);
  EXPECT_EQ(decide(p, "2606:4700::1111", kTcp, 22), kAllow);
  // Other UDP and ICMP are dropped by default.
  EXPECT_EQ(decide(p, "8.8.8.8", kUdp, 53), kDeny);
  EXPECT_EQ(decide(p, "8.8.8.8", kUdp, 123), kDeny);
  EXPECT_EQ(decide(p, "8.8.8.8", kIcmp, 0), kDeny);
  EXPECT_EQ(decide(p, "192.0.2.53", kUdp, 53), kAllow);
  EXPECT_EQ(decide(p, "192.0.2.53", kTcp, 53), kAllow);
  EXPECT_EQ(decide(p, "2001:db8::53", kUdp, 53), kAllow);
  EXPECT_EQ(decide(p, "192.0.2.53", kTcp, 22), kDeny);
  for (const char* dst : {"10.0.0.1", "172.16.5.5", "192.168.0.1", "100.64.0.1", "fd12::1", "127.0.0.1", "::1",
                          "169.254.169.254", "::ffff:169.254.169.254", "fd00:ec2::254", "fe80::1", "224.0.0.251",
                          "ff02::fb", "0.0.0.0", "198.51.100.7", "2001:db8::1", "64:ff9b::a00:1"}) {
    EXPECT_EQ(decide(p, dst, kTcp, 443), kDeny) << dst;
    EXPECT_EQ(decide(p, dst, kUdp, 53), kDeny) << dst;
  }
  const auto d = p.decide(Flow{ip("10.0.0.1"), kTcp, 80, {}}, nullptr);
  EXPECT_EQ(d.rule, Decision::kNoRule);
  EXPECT_EQ(p.decide(Flow{ip("8.8.8.8"), kTcp, 80, {}}, nullptr).rule, 0u);
}

TEST(Policy, EachGroupAllowedAndDeniedAsWritten) {
  struct Case { const char* group; const char* inside; const char* outside; };
  const Case cases[] = {
      {"private", "10.9.9.9", "127.0.0.1"},
      {"loopback", "127.0.0.2", "10.0.0.1"},
      {"link-local", "fe80::9", "fd00::9"},
      {"metadata", "169.254.169.254", "169.254.169.253"},
      {"multicast", "239.1.2.3", "10.0.0.1"},
      {"host", "192.0.2.53", "192.0.2.54"},
  };
  for (const auto& c : cases) {
    const Policy allow = make({std::string("allow@") + c.group});
    EXPECT_EQ(decide(allow, c.inside, kTcp, 8080), kAllow) << c.group;
    EXPECT_EQ(decide(allow, c.inside, kUdp, 9), kAllow) << c.group;
    EXPECT_EQ(decide(allow, c.outside, kTcp, 8080), kDeny) << c.group;
    const Policy deny = make({std::string("deny@") + c.group});
    EXPECT_EQ(decide(deny, c.inside, kTcp, 53), kDeny) << c.group;
  }
  const Policy deny_public = make({"deny@public"});
  EXPECT_EQ(decide(deny_public, "8.8.8.8", kTcp, 443), kDeny);
  EXPECT_EQ(decide(deny_public, "192.0.2.53", kUdp, 53), kAllow);
  const Policy deny_host = make({"deny@host"});
  EXPECT_EQ(decide(deny_host, "192.0.2.53", kUdp, 53), kDeny);
  EXPECT_EQ(decide(deny_host, "8.8.8.8", kTcp, 53), kAllow);
}

TEST(Policy, QuicAndDnsOverTlsAreDeniedBeforeAnyRule) {
  const Policy p = make({"allow@8.8.8.8", "allow@public"});
  EXPECT_EQ(decide(p, "8.8.8.8", kUdp, 443), kDeny);
  EXPECT_EQ(p.decide(Flow{ip("8.8.8.8"), kUdp, 443, {}}, nullptr).rule, Decision::kQuic);
  EXPECT_EQ(decide(p, "8.8.8.8", kTcp, 853), kDeny);
  EXPECT_EQ(p.decide(Flow{ip("8.8.8.8"), kTcp, 853, {}}, nullptr).rule, Decision::kDnsOverTls);
  EXPECT_EQ(decide(p, "8.8.8.8", kTcp, 443), kAllow);
  EXPECT_EQ(decide(p, "8.8.8.8", kUdp, 853), kAllow);
  EXPECT_EQ(decide(p, "1.1.1.1", kUdp, 123), kAllow);
}

TEST(Policy, IcmpFollowsRulesWithoutPorts) {
  const Policy p = make({"allow@8.8.8.8:icmp", "allow@1.1.1.1:any:53", "allow@9.9.9.9"});
  EXPECT_EQ(decide(p, "8.8.8.8", kIcmp, 0), kAllow);
  EXPECT_EQ(decide(p, "8.8.8.8", kUdp, 53), kDeny);
  EXPECT_EQ(decide(p, "1.1.1.1", kIcmp, 0), kDeny);  // a port rule never matches ICMP
  EXPECT_EQ(decide(p, "9.9.9.9", kIcmp, 0), kAllow);
  EXPECT_EQ(decide(p, "10.0.0.1", kIcmp, 0), kDeny);
}

TEST(Policy, FirstMatchWins) {
  const Policy p = make({"allow@metadata", "deny@link-local"});
  EXPECT_EQ(decide(p, "169.254.169.254", kTcp, 80), kAllow);
  EXPECT_EQ(decide(p, "169.254.1.1", kTcp, 80), kDeny);
  const Policy q = make({"deny@link-local", "allow@metadata"});
  EXPECT_EQ(decide(q, "169.254.169.254", kTcp, 80), kDeny);
  const Policy r = make({"deny@10.1.2.3", "allow@10.1.2.0/24"});
  EXPECT_EQ(decide(r, "10.1.2.3", kTcp, 80), kDeny);
  EXPECT_EQ(decide(r, "10.1.2.4", kTcp, 80), kAllow);
  EXPECT_EQ(r.decide(Flow{ip("10.1.2.4"), kTcp, 80, {}}, nullptr).rule, 1u);
}

TEST(Policy, AddressRulesWithProtocolsAndPorts) {
  const Policy p = make({"allow@10.1.2.0/24:tcp:80,443", "allow@[2001:db8::1]:tcp:443-450",
                         "deny@8.8.8.8:udp:53", "allow@198.51.100.7"});
  EXPECT_EQ(decide(p, "10.1.2.9", kTcp, 80), kAllow);
  EXPECT_EQ(decide(p, "10.1.2.9", kTcp, 443), kAllow);
  EXPECT_EQ(decide(p, "::ffff:10.1.2.9", kTcp, 443), kAllow);
  EXPECT_EQ(decide(p, "10.1.2.9", kTcp, 8080), kDeny);
  EXPECT_EQ(decide(p, "10.1.2.9", kUdp, 80), kDeny);
  EXPECT_EQ(decide(p, "10.1.3.9", kTcp, 80), kDeny);
  EXPECT_EQ(decide(p, "2001:db8::1", kTcp, 443), kAllow);
  EXPECT_EQ(decide(p, "2001:db8::1", kTcp, 450), kAllow);
  EXPECT_EQ(decide(p, "2001:db8::1", kTcp, 451), kDeny);
  EXPECT_EQ(decide(p, "2001:db8::1", kUdp, 443), kDeny);
  EXPECT_EQ(decide(p, "2001:db8::2", kTcp, 443), kDeny);
  EXPECT_EQ(decide(p, "8.8.8.8", kUdp, 53), kDeny);
  EXPECT_EQ(decide(p, "8.8.8.8", kTcp, 53), kAllow);
  EXPECT_EQ(decide(p, "198.51.100.7", kUdp, 9999), kAllow);
}

TEST(Policy, DomainRulesNeedThePinAndTheSni) {
  FakePins pins;
  pins.pins = {{ip("10.7.0.1"), "api.internal.example"}, {ip("10.7.0.2"), "other.example"},
               {ip("10.7.0.3"), "a.b.corp.example"}, {ip("10.7.0.4"), "corp.example"}};
  const Policy p = make({"allow@api.internal.example:tcp:443", "allow@*.corp.example", "allow@.apex.example"});
  // Pinned and SNI matches (or no SNI).
  EXPECT_EQ(decide(p, "10.7.0.1", kTcp, 443, "api.internal.example", &pins), kAllow);
  EXPECT_EQ(decide(p, "10.7.0.1", kTcp, 443, "", &pins), kAllow);
  // Wrong port.
  EXPECT_EQ(decide(p, "10.7.0.1", kTcp, 80, "api.internal.example", &pins), kDeny);
  // Forged SNI toward a pinned address of another name; hard-coded address never pinned.
  EXPECT_EQ(decide(p, "10.7.0.2", kTcp, 443, "api.internal.example", &pins), kDeny);
  EXPECT_EQ(decide(p, "10.7.0.9", kTcp, 443, "api.internal.example", &pins), kDeny);
  // Pinned, but the SNI names another host.
  EXPECT_EQ(decide(p, "10.7.0.1", kTcp, 443, "other.example", &pins), kDeny);
  // No pin source: nothing is pinned.
  EXPECT_EQ(decide(p, "10.7.0.1", kTcp, 443, "api.internal.example", nullptr), kDeny);
  // Wildcard: subdomains at any depth, not the apex.
  EXPECT_EQ(decide(p, "10.7.0.3", kTcp, 8443, "a.b.corp.example", &pins), kAllow);
  EXPECT_EQ(decide(p, "10.7.0.4", kTcp, 443, "corp.example", &pins), kDeny);
  // .apex.example: the apex and its subdomains.
  pins.pins.push_back({ip("10.7.0.5"), "apex.example"});
  pins.pins.push_back({ip("10.7.0.6"), "www.apex.example"});
  EXPECT_EQ(decide(p, "10.7.0.5", kTcp, 443, "apex.example", &pins), kAllow);
  EXPECT_EQ(decide(p, "10.7.0.6", kTcp, 443, "www.apex.example", &pins), kAllow);
  EXPECT_EQ(decide(p, "10.7.0.6", kTcp, 443, "xapex.example", &pins), kDeny);
}

TEST(Policy, DomainDenyMatchesOnSniOrPin) {
  FakePins pins;
  pins.pins = {{ip("8.8.4.4"), "blocked.example"}, {ip("8.8.4.4"), "shared.example"}};
  const Policy p = make({"deny@blocked.example"});
  // SNI names the denied domain: denied wherever it goes.
  EXPECT_EQ(decide(p, "1.1.1.1", kTcp, 443, "blocked.example", &pins), kDeny);
  // No SNI: denied when the address is pinned to it.
  EXPECT_EQ(decide(p, "8.8.4.4", kTcp, 80, "", &pins), kDeny);
  // Another SNI on a shared address: the deny does not match; public is allowed.
  EXPECT_EQ(decide(p, "8.8.4.4", kTcp, 443, "shared.example", &pins), kAllow);
  EXPECT_EQ(decide(p, "1.1.1.1", kTcp, 80, "", &pins), kAllow);
}

TEST(Policy, DeniedDomains) {
  const Policy p = make({"allow@api.evil.example:tcp:443", "deny@*.evil.example", "deny@bad.example:tcp:80",
                         "deny@.gone.example"});
  EXPECT_TRUE(p.denies_domain("x.evil.example"));
  EXPECT_TRUE(p.denies_domain("X.Evil.Example."));
  EXPECT_FALSE(p.denies_domain("api.evil.example"));  // first matching domain rule allows
  EXPECT_FALSE(p.denies_domain("evil.example"));
  EXPECT_FALSE(p.denies_domain("bad.example"));       // port-limited deny: other ports still allowed
  EXPECT_TRUE(p.denies_domain("gone.example"));
  EXPECT_TRUE(p.denies_domain("a.gone.example"));
  EXPECT_FALSE(p.denies_domain("good.example"));
}

TEST(Policy, RebindCheck) {
  const Policy p = make({"allow@10.1.2.0/24:tcp:443", "deny@10.1.0.0/16", "allow@10.0.0.0/8", "deny@*.evil.example"});
  const std::vector<std::string> names = {"app.example"};
  auto check = [&](std::vector<IpAddress> addresses, const std::vector<std::string>& n = {"app.example"}) {
    return p.check_answer(n, addresses);
  };
  EXPECT_EQ(check({ip("8.8.8.8"), ip("2606:4700::1")}), AnswerVerdict::kPass);
  EXPECT_EQ(check({ip("198.51.100.7")}), AnswerVerdict::kPass);  // documentation space is not rebinding
  EXPECT_EQ(check({ip("224.0.0.1")}), AnswerVerdict::kPass);
  EXPECT_EQ(check({ip("10.1.2.7")}), AnswerVerdict::kPass);      // explicit allow (any port)
  EXPECT_EQ(check({ip("10.1.3.7")}), AnswerVerdict::kRebinding); // explicit deny first
  EXPECT_EQ(check({ip("10.9.9.9")}), AnswerVerdict::kPass);      // allowed by 10/8
  EXPECT_EQ(check({ip("8.8.8.8"), ip("127.0.0.1")}), AnswerVerdict::kRebinding);
  EXPECT_EQ(check({ip("::1")}), AnswerVerdict::kRebinding);
  EXPECT_EQ(check({ip("172.16.0.1")}), AnswerVerdict::kRebinding);
  EXPECT_EQ(check({ip("fd00::1")}), AnswerVerdict::kRebinding);
  EXPECT_EQ(check({ip("169.254.169.254")}), AnswerVerdict::kRebinding);
  EXPECT_EQ(check({ip("::ffff:169.254.169.254")}), AnswerVerdict::kRebinding);
  EXPECT_EQ(check({ip("::ffff:127.0.0.1")}), AnswerVerdict::kRebinding);
  EXPECT_EQ(check({ip("fe80::1")}), AnswerVerdict::kRebinding);
  EXPECT_EQ(check({ip("192.0.2.53")}), AnswerVerdict::kRebinding);  // the gateway itself
  EXPECT_EQ(check({ip("8.8.8.8")}, {"app.example", "x.evil.example"}), AnswerVerdict::kDeniedDomain);
  EXPECT_EQ(check({}, {"x.evil.example"}), AnswerVerdict::kDeniedDomain);
}

TEST(Policy, RebindExceptionsComeOnlyFromConfiguredRules) {
  // The default allow@host:any:53 does not let a name point at the gateway.
  EXPECT_FALSE(make({}).answer_address_allowed(ip("192.0.2.53")));
  EXPECT_TRUE(make({"allow@host:tcp:8080"}).answer_address_allowed(ip("192.0.2.53")));
  EXPECT_TRUE(make({"allow@private"}).answer_address_allowed(ip("10.0.0.1")));
  EXPECT_FALSE(make({"allow@private"}).answer_address_allowed(ip("127.0.0.1")));
  EXPECT_TRUE(make({"allow@loopback"}).answer_address_allowed(ip("127.0.0.1")));
  EXPECT_FALSE(make({"allow@public"}).answer_address_allowed(ip("10.0.0.1")));
  EXPECT_TRUE(make({"allow@metadata"}).answer_address_allowed(ip("169.254.169.254")));
  EXPECT_FALSE(make({"deny@metadata", "allow@link-local"}).answer_address_allowed(ip("169.254.169.254")));
  EXPECT_TRUE(make({"deny@metadata", "allow@link-local"}).answer_address_allowed(ip("169.254.1.1")));
  // A domain rule is not an address rule.
  EXPECT_FALSE(make({"allow@internal.example"}).answer_address_allowed(ip("10.0.0.1")));
}

TEST(Policy, WithoutDefaultsEverythingUnmatchedIsDenied) {
  const Policy p(std::vector<Rule>{parse_rule_or_throw("allow@8.8.8.8")}, kHost, false);
  EXPECT_EQ(p.rules().size(), 1u);
  EXPECT_EQ(decide(p, "8.8.8.8", kTcp, 443), kAllow);
  EXPECT_EQ(decide(p, "1.1.1.1", kTcp, 443), kDeny);
  EXPECT_EQ(decide(p, "192.0.2.53", kUdp, 53), kDeny);
}

TEST(Policy, OpensOnlyWhatAnAllowRuleNamesByAddress) {
  auto cidr = [](std::string_view t) { return *Cidr::parse(t); };
  EXPECT_FALSE(make({}).opens(cidr("10.0.0.0/8")));  // the defaults open nothing private
  const Policy p = make({"allow@10.1.2.0/24:tcp:80", "allow@link-local", "allow@api.example.com",
                         "deny@192.168.0.0/16", "allow@public", "allow@host:tcp:8080"});
  EXPECT_TRUE(p.opens(cidr("10.0.0.0/8")));          // contains the rule's range
  EXPECT_TRUE(p.opens(cidr("10.1.2.128/25")));       // inside it
  EXPECT_FALSE(p.opens(cidr("10.2.0.0/16")));        // beside it
  EXPECT_TRUE(p.opens(cidr("169.254.0.0/16")));      // a group
  EXPECT_TRUE(p.opens(cidr("fe80::/10")));
  EXPECT_FALSE(p.opens(cidr("192.168.0.0/16")));     // a deny opens nothing
  EXPECT_FALSE(p.opens(cidr("172.16.0.0/12")));      // domains and public open no private range
  EXPECT_FALSE(p.opens(cidr("fc00::/7")));
  EXPECT_TRUE(p.opens(cidr("192.0.2.53")));          // host: the gateway's own address
  EXPECT_TRUE(p.opens(cidr("::ffff:0:0/96")));       // IPv4-mapped space holds 10.1.2.0/24 too
  EXPECT_FALSE(make({"allow@10.1.2.0/24"}).opens(cidr("fc00::/7")));
}

// Issue 12, item 2: the IPv6 forms of a non-public IPv4 address are decided like it.
const char* const kMetadataForms[] = {"169.254.169.254", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe",
                                      "64:ff9b:1:a9fe:a9:fe00::", "2002:a9fe:a9fe::", "::a9fe:a9fe",
                                      "2001:0:a9fe:a9fe::", "2001:0:808:808::5601:5601"};

TEST(Policy, EmbeddedFormsOfTheMetadataAddressAreNeverPublic) {
  const Policy defaults = make({});
  FakePins pins;
  for (const char* form : kMetadataForms) pins.pins.push_back({ip(form), "api.example.com"});
  const Policy domain = make({"allow@api.example.com:tcp:443", "deny@metadata"});
  const Policy group_deny = make({"deny@link-local", "allow@api.example.com:tcp:443"});
  for (const char* form : kMetadataForms) {
    EXPECT_EQ(decide(defaults, form, kTcp, 80), Action::kDeny) << form;
    EXPECT_FALSE(defaults.answer_address_allowed(ip(form))) << form;
    EXPECT_EQ(decide(group_deny, form, kTcp, 443, "api.example.com", &pins), Action::kDeny) << form;
    EXPECT_EQ(group_deny.explain(group_deny.decide(Flow{ip(form), kTcp, 443, "api.example.com"}, &pins)),
              "deny@link-local") << form;
  }
  // A public address behind NAT64 is public (IPv6-only networks with DNS64); in 6to4 or Teredo
  // it is reserved, so not public.
  EXPECT_EQ(decide(defaults, "64:ff9b::808:808", kTcp, 443), Action::kAllow);
  EXPECT_EQ(decide(defaults, "2002:808:808::1", kTcp, 443), Action::kDeny);
  EXPECT_TRUE(defaults.answer_address_allowed(ip("64:ff9b::808:808")));
  EXPECT_TRUE(defaults.answer_address_allowed(ip("2002:808:808::1")));
}

TEST(Policy, CidrDeniesCoverEmbeddedFormsAllowsNameExactly) {
  const Policy p = make({"deny@10.0.0.0/8", "allow@[64:ff9b::/96]:tcp:443", "allow@[2002::/16]:tcp:443"});
  for (const char* form : {"64:ff9b::a01:203", "2002:a01:203::1"}) {
    EXPECT_EQ(decide(p, form, kTcp, 443), Action::kDeny) << form;
    EXPECT_FALSE(p.answer_address_allowed(ip(form))) << form;
  }
  EXPECT_EQ(decide(p, "2002:c0a8:1::1", kTcp, 443), Action::kAllow);  // 192.168.0.1: no deny for it
  // An allow of an IPv4 range does not allow its IPv6 forms (the user names what to reach).
  const Policy a = make({"allow@10.1.2.0/24:tcp:443"});
  EXPECT_EQ(decide(a, "10.1.2.3", kTcp, 443), Action::kAllow);
  EXPECT_EQ(decide(a, "::ffff:10.1.2.3", kTcp, 443), Action::kAllow);  // the same socket address
  EXPECT_EQ(decide(a, "64:ff9b::a01:203", kTcp, 443), Action::kDeny);
  EXPECT_TRUE(a.answer_address_allowed(ip("10.1.2.3")));
  EXPECT_FALSE(a.answer_address_allowed(ip("64:ff9b::a01:203")));
  // Naming the NAT64 form itself allows it.
  EXPECT_TRUE(make({"allow@[64:ff9b::a01:203]"}).answer_address_allowed(ip("64:ff9b::a01:203")));
  // Group allows take the forms along: allow@private holds 64:ff9b::a01:203.
  EXPECT_EQ(decide(make({"allow@private:tcp:443"}), "64:ff9b::a01:203", kTcp, 443), Action::kAllow);
}

TEST(Policy, OpensTheEmbeddedFormsOfAnAllowedGroup) {
  auto cidr = [](std::string_view t) { return *Cidr::parse(t); };
  const Policy p = make({"allow@link-local", "allow@10.1.2.0/24"});
  EXPECT_TRUE(p.opens(cidr("64:ff9b::a9fe:0/112")));
  EXPECT_TRUE(p.opens(cidr("2002:a9fe::/32")));
  EXPECT_TRUE(p.opens(cidr("::169.254.0.0/112")));
  EXPECT_TRUE(p.opens(cidr("64:ff9b:1::/48")));  // may hold link-local readings
  EXPECT_TRUE(p.opens(cidr("2001::/32")));
  EXPECT_FALSE(p.opens(cidr("64:ff9b::a00:0/104")));  // an IPv4 CIDR allow opens no IPv6 form
  EXPECT_FALSE(p.opens(cidr("2002:a00::/24")));
  EXPECT_FALSE(make({"allow@10.1.2.0/24"}).opens(cidr("2001::/32")));
  const Policy host = make({"allow@host:tcp:8080"});
  EXPECT_TRUE(host.opens(cidr("64:ff9b::c000:235")));  // 192.0.2.53
  EXPECT_TRUE(host.opens(cidr("2002:c000:235::/48")));
  EXPECT_FALSE(host.opens(cidr("2002:c000:236::/48")));
}

TEST(Policy, ExplainsEachKindOfDecision) {
  const Policy p = make({"deny@private"});
  EXPECT_EQ(p.explain(p.decide(Flow{ip("10.0.0.1"), kTcp, 443, {}}, nullptr)), "deny@private");
  EXPECT_EQ(p.explain(p.decide(Flow{ip("8.8.8.8"), kTcp, 443, {}}, nullptr)), "allow@public:tcp (default)");
  EXPECT_EQ(p.explain(p.decide(Flow{ip("198.51.100.1"), kTcp, 443, {}}, nullptr)), "no rule allows it");
  EXPECT_EQ(p.explain(p.decide(Flow{ip("8.8.8.8"), kTcp, 853, {}}, nullptr)),
            "DNS over TLS (TCP 853) would bypass the sandbox's DNS");
  EXPECT_EQ(p.explain(p.decide(Flow{ip("8.8.8.8"), kUdp, 443, {}}, nullptr)),
            "QUIC (UDP 443) is dropped so clients fall back to TCP");
}

TEST(Policy, AnAllowListEndsWithDenyPublic) {
  // The README's recipe: only api.example.com over HTTPS, nothing else public.
  const Policy p = make({"allow@api.example.com:tcp:443", "deny@public"});
  FakePins pins;
  pins.pins = {{ip("8.8.4.4"), "api.example.com"}};
  EXPECT_EQ(decide(p, "8.8.4.4", kTcp, 443, "api.example.com", &pins), kAllow);
  EXPECT_EQ(decide(p, "8.8.4.4", kTcp, 80, "", &pins), kDeny);
  EXPECT_EQ(decide(p, "8.8.8.8", kTcp, 443, "api.example.com", &pins), kDeny);  // not pinned
  EXPECT_EQ(decide(p, "1.1.1.1", kTcp, 443, "", &pins), kDeny);
  EXPECT_EQ(decide(p, "192.0.2.53", kUdp, 53), kAllow);  // DNS to the gateway still works
}

}  // namespace
}  // namespace airlock::policy
