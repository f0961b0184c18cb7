#include "policy/rule.hpp"

#include <airlock/errors.hpp>

#include <gtest/gtest.h>

namespace airlock::policy {
namespace {

Rule ok(std::string_view text) {
  auto r = parse_rule(text);
  EXPECT_TRUE(r.rule) << text << ": " << r.error;
  return r.rule ? *r.rule : Rule{};
}

std::string err(std::string_view text) {
  auto r = parse_rule(text);
  EXPECT_FALSE(r.rule) << text << " parsed as " << (r.rule ? r.rule->to_string() : "");
  return r.error;
}

TEST(Rule, EachFormParsesAndPrintsCanonically) {
  struct Case { const char* in; const char* canonical; };
  const Case cases[] = {
      {"allow@api.example.com:tcp:443", "allow@api.example.com:tcp:443"},
      {"allow@API.Example.COM.:tcp:443", "allow@api.example.com:tcp:443"},
      {"deny@private", "deny@private"},
      {"allow@10.1.2.0/24:tcp:80,443", "allow@10.1.2.0/24:tcp:80,443"},
      {"allow@*.example.com", "allow@*.example.com"},
      {"allow@.example.com", "allow@.example.com"},
      {"deny@metadata", "deny@metadata"},
      {"allow@[2001:db8::1]:tcp:443-450", "allow@[2001:db8::1]:tcp:443-450"},
      {"allow@[2001:db8::/32]", "allow@[2001:db8::/32]"},
      {"allow@[2001:db8::]/32:udp", "allow@[2001:db8::/32]:udp"},
      {"allow@[::ffff:10.0.0.1]", "allow@10.0.0.1"},
      {"allow@198.51.100.7:any:53", "allow@198.51.100.7:any:53"},
      {"allow@198.51.100.7:any", "allow@198.51.100.7"},
      {"allow@host:udp:53", "allow@host:udp:53"},
      {"deny@link-local", "deny@link-local"},
      {"deny@loopback:tcp", "deny@loopback:tcp"},
      {"deny@multicast:udp:1-1024,5353", "deny@multicast:udp:1-1024,5353"},
      {"allow@public:tcp:1-65535", "allow@public:tcp:1-65535"},
      {"deny@Metadata", "deny@metadata"},
      {"allow@8.8.8.8:icmp", "allow@8.8.8.8:icmp"},
      {"deny@metadata.", "deny@metadata."},
      {"allow@localhost", "allow@localhost"},
  };
  for (const auto& c : cases) {
    const Rule r = ok(c.in);
    EXPECT_EQ(r.to_string(), c.canonical) << c.in;
    EXPECT_EQ(ok(r.to_string()), r) << c.in;
  }
}

TEST(Rule, Fields) {
  Rule r = ok("allow@10.1.2.0/24:tcp:80,443-450");
  EXPECT_EQ(r.action, Action::kAllow);
  EXPECT_EQ(std::get<Cidr>(r.destination), *Cidr::parse("10.1.2.0/24"));
  EXPECT_EQ(r.protocol, Protocol::kTcp);
  EXPECT_EQ(r.ports, (std::vector<PortRange>{{80, 80}, {443, 450}}));
  EXPECT_TRUE(r.matches_protocol_and_port(Protocol::kTcp, 80));
  EXPECT_TRUE(r.matches_protocol_and_port(Protocol::kTcp, 450));
  EXPECT_FALSE(r.matches_protocol_and_port(Protocol::kTcp, 451));
  EXPECT_FALSE(r.matches_protocol_and_port(Protocol::kUdp, 80));

  r = ok("deny@private");
  EXPECT_EQ(r.action, Action::kDeny);
  EXPECT_EQ(std::get<Group>(r.destination), Group::kPrivate);
  EXPECT_TRUE(r.any_protocol_and_port());

  r = ok("allow@*.example.com");
  const auto& wild = std::get<DomainMatch>(r.destination);
  EXPECT_TRUE(wild.matches("a.example.com"));
  EXPECT_TRUE(wild.matches("a.b.example.com"));
  EXPECT_FALSE(wild.matches("example.com"));

  r = ok("allow@.example.com");
  const auto& suffix = std::get<DomainMatch>(r.destination);
  EXPECT_TRUE(suffix.matches("a.example.com"));
  EXPECT_TRUE(suffix.matches("example.com"));
  EXPECT_FALSE(suffix.matches("badexample.com"));

  r = ok("deny@metadata.");
  EXPECT_TRUE(std::get<DomainMatch>(r.destination).matches("metadata"));

  r = ok("allow@api.example.com");
  const auto& exact = std::get<DomainMatch>(r.destination);
  EXPECT_TRUE(exact.matches("API.example.com."));
  EXPECT_FALSE(exact.matches("x.api.example.com"));
}

TEST(Rule, EachSyntaxErrorIsNamed) {
  EXPECT_EQ(err(""), "the rule is empty");
  EXPECT_EQ(err("allow"), "expected <allow|deny>@<destination>[:<tcp|udp|icmp|any>[:<ports>]]");
  EXPECT_EQ(err("permit@private"), "unknown action 'permit' (allow or deny)");
  EXPECT_EQ(err("Allow@private"), "unknown action 'Allow' (allow or deny)");
  EXPECT_EQ(err("allow@"), "the destination is empty");
  EXPECT_EQ(err("allow@:tcp:443"), "the destination is empty");
  EXPECT_EQ(err("allow@2001:db8::1"), "IPv6 addresses must be in brackets, e.g. allow@[2001:db8::1]:tcp:443");
  EXPECT_EQ(err("allow@2001:db8::1:tcp:443"), "IPv6 addresses must be in brackets, e.g. allow@[2001:db8::1]:tcp:443");
  EXPECT_EQ(err("allow@[2001:db8::1:tcp:443"), "unclosed '[' in '[2001:db8::1:tcp:443'");
  EXPECT_EQ(err("allow@[2001:db8::zz]"), "'2001:db8::zz' is not an IP address");
  EXPECT_EQ(err("allow@[10.0.0.1]"), "'[10.0.0.1]': brackets are for IPv6 addresses; write IPv4 without them");
  EXPECT_EQ(err("allow@[2001:db8::1]x"), "unexpected 'x' after ']'");
  EXPECT_EQ(err("allow@10.1.2.3/24"), "'10.1.2.3/24' has host bits set (the network is 10.1.2.0/24)");
  EXPECT_EQ(err("allow@10.0.0.0/40"), "prefix length '40' must be a number from 0 to 32");
  EXPECT_EQ(err("allow@10.0.0"), "'10.0.0' is not an IP address");
  EXPECT_EQ(err("allow@300.1.1.1:tcp:80"), "'300.1.1.1' is not an IP address");
  // Domain errors carry HostPattern's own message (secrets-spec §2) after "bad domain: ".
  auto domain_err = [&](std::string_view rule, std::string_view phrase) {
    const std::string e = err(rule);
    EXPECT_EQ(e.rfind("bad domain: host ", 0), 0u) << e;
    EXPECT_NE(e.find(phrase), std::string::npos) << rule << ": " << e;
  };
  domain_err("allow@*.com", "single label");
  domain_err("allow@.com", "single label");
  domain_err("allow@*", "bare `*`");
  domain_err("allow@api.*.com", "only allowed as the whole leading label");
  domain_err("allow@bücher.de", "non-ASCII");
  EXPECT_EQ(err("allow@."), "domain suffix '.' is empty");
  EXPECT_EQ(err("allow@..example.com"), "domain suffix '..example.com' has an empty label");
  EXPECT_EQ(err("allow@exa mple.com").substr(0, 11), "bad domain:");
  EXPECT_EQ(err("allow@example.com:http"), "unknown protocol 'http' (tcp, udp, icmp or any)");
  EXPECT_EQ(err("allow@example.com:"), "unknown protocol '' (tcp, udp, icmp or any)");
  EXPECT_EQ(err("allow@example.com:443"), "expected a protocol before the ports: write :tcp:443, :udp:443 or :any:443");
  EXPECT_EQ(err("allow@example.com:TCP:443"), "unknown protocol 'TCP' (tcp, udp, icmp or any)");
  EXPECT_EQ(err("allow@8.8.8.8:icmp:1"), "icmp has no ports: write allow@<destination>:icmp");
  EXPECT_EQ(err("allow@example.com:tcp:"), "the port list is empty (write ports after the protocol, or drop the ':')");
  EXPECT_EQ(err("allow@example.com:tcp:0"), "port '0' is not a number from 1 to 65535");
  EXPECT_EQ(err("allow@example.com:tcp:65536"), "port '65536' is not a number from 1 to 65535");
  EXPECT_EQ(err("allow@example.com:tcp:https"), "port 'https' is not a number from 1 to 65535");
  EXPECT_EQ(err("allow@example.com:tcp:+443"), "port '+443' is not a number from 1 to 65535");
  EXPECT_EQ(err("allow@example.com:tcp:80,,443"), "empty entry in the port list '80,,443'");
  EXPECT_EQ(err("allow@example.com:tcp:80,"), "empty entry in the port list '80,'");
  EXPECT_EQ(err("allow@example.com:tcp:450-443"), "port range '450-443' runs backwards");
  EXPECT_EQ(err("allow@example.com:tcp:443-"), "port range '443-' needs two numbers from 1 to 65535");
  EXPECT_EQ(err("allow@example.com:tcp:1-2-3"), "port range '1-2-3' needs two numbers from 1 to 65535");
  EXPECT_EQ(err("allow@example.com:tcp:443:x"), "too many ':' fields after the ports in '443:x'");
  EXPECT_EQ(err(std::string(1025, 'a')), "the rule is longer than 1024 bytes");
  EXPECT_EQ(err(std::string("allow@a\x01.com")).substr(0, 11), "bad domain:");
  std::string many = "allow@private:tcp:1";
  for (int i = 2; i <= 65; ++i) many.append(",").append(std::to_string(i));
  EXPECT_EQ(err(many), "more than 64 entries in the port list");
}

TEST(Rule, ThrowingFormNamesTheRule) {
  try {
    parse_rule_or_throw("allow@private:tcp:0");
    FAIL() << "no throw";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "rule 'allow@private:tcp:0': port '0' is not a number from 1 to 65535");
  }
  EXPECT_EQ(parse_rule_or_throw("deny@metadata").to_string(), "deny@metadata");
}

}  // namespace
}  // namespace airlock::policy
