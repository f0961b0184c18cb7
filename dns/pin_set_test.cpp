#include "dns/pin_set.hpp"

#include "common/concat.hpp"

#include "dns/answer.hpp"

#include <gtest/gtest.h>

#include <thread>

namespace airlock::dns {
namespace {

using namespace std::chrono_literals;

Name name(std::string_view text) { return *Name::from_text(text); }
IpAddress ip(std::string_view text) { return *IpAddress::parse(text); }
HostPattern pat(std::string_view text) { return HostPattern::parse(text); }

Message answer_for(std::string_view qname, std::uint16_t qtype = type::kA) {
  Message m;
  m.header.id = 1;
  m.header.set_qr(true);
  m.header.set_rd(true);
  m.header.set_ra(true);
  m.questions.push_back({name(qname), qtype, kClassIn});
  return m;
}

const PinTime t0 = PinTime{} + 1000h;

struct Fixture : ::testing::Test {
  PinTime clock = t0;
  PinSet pins{[this] { return clock; }};
};

using PinSetTest = Fixture;

TEST(Chain, FollowsCnamesFromTheQueryName) {
  Message m = answer_for("alias.test.example");
  m.answers.push_back(Record::cname(name("alias.test.example"), name("mid.test.example"), 600));
  m.answers.push_back(Record::cname(name("MID.test.example"), name("api.test.example"), 30));
  m.answers.push_back(Record::a_or_aaaa(name("api.test.example"), ip("198.51.100.7"), 300));
  m.answers.push_back(Record::a_or_aaaa(name("api.test.example"), ip("198.51.100.8"), 10));
  // Not of the asked type (A): ignored for pins.
  m.answers.push_back(Record::a_or_aaaa(name("api.test.example"), ip("2001:db8::7"), 10));
  // Off the chain: ignored.
  m.answers.push_back(Record::a_or_aaaa(name("secret.example"), ip("203.0.113.66"), 300));
  const AnswerChain c = follow_chain(m);
  EXPECT_EQ(c.names, (std::vector<std::string>{"alias.test.example", "mid.test.example", "api.test.example"}));
  EXPECT_EQ(c.end, ChainEnd::kEnd);
  ASSERT_EQ(c.addresses.size(), 2u);
  EXPECT_EQ(c.addresses[0].ip, ip("198.51.100.7"));
  EXPECT_EQ(c.addresses[0].ttl, 30u);
  EXPECT_EQ(c.addresses[1].ttl, 10u);
  EXPECT_EQ(all_addresses(m).size(), 4u);  // the rebind filter still sees every one
}

TEST(Chain, OrderDoesNotMatterTheAnchorDoes) {
  // Records shuffled (address first, links reversed) give the same chain and addresses.
  Message m = answer_for("a.example");
  m.answers.push_back(Record::a_or_aaaa(name("c.example"), ip("198.51.100.3"), 60));
  m.answers.push_back(Record::cname(name("b.example"), name("c.example"), 60));
  m.answers.push_back(Record::cname(name("a.example"), name("b.example"), 60));
  const AnswerChain c = follow_chain(m);
  EXPECT_EQ(c.names, (std::vector<std::string>{"a.example", "b.example", "c.example"}));
  ASSERT_EQ(c.addresses.size(), 1u);
  EXPECT_EQ(c.addresses[0].ip, ip("198.51.100.3"));
  // A chain that does not start at the question name is no chain at all.
  Message off = answer_for("q.example");
  off.answers.push_back(Record::cname(name("b.example"), name("c.example"), 60));
  off.answers.push_back(Record::a_or_aaaa(name("c.example"), ip("198.51.100.3"), 60));
  const AnswerChain o = follow_chain(off);
  EXPECT_EQ(o.names, (std::vector<std::string>{"q.example"}));
  EXPECT_TRUE(o.addresses.empty());
}

TEST(Chain, OnlyTheLastNameOwnsAddresses) {
  // An address on a name in the middle of the chain is not where the chain ends.
  Message m = answer_for("a.example");
  m.answers.push_back(Record::cname(name("a.example"), name("b.example"), 60));
  m.answers.push_back(Record::a_or_aaaa(name("a.example"), ip("198.51.100.1"), 60));
  m.answers.push_back(Record::a_or_aaaa(name("b.example"), ip("198.51.100.2"), 60));
  const AnswerChain c = follow_chain(m);
  ASSERT_EQ(c.addresses.size(), 1u);
  EXPECT_EQ(c.addresses[0].ip, ip("198.51.100.2"));
}

TEST(Chain, LoopsForksAndOverlongChainsEndNowhere) {
  Message loop = answer_for("a.example");
  loop.answers.push_back(Record::cname(name("a.example"), name("b.example"), 60));
  loop.answers.push_back(Record::cname(name("b.example"), name("A.example."), 60));
  loop.answers.push_back(Record::a_or_aaaa(name("b.example"), ip("198.51.100.1"), 60));
  loop.answers.push_back(Record::a_or_aaaa(name("a.example"), ip("198.51.100.2"), 60));
  const AnswerChain l = follow_chain(loop);
  EXPECT_EQ(l.names, (std::vector<std::string>{"a.example", "b.example"}));
  EXPECT_EQ(l.end, ChainEnd::kLoop);
  EXPECT_TRUE(l.addresses.empty());
  Message self = answer_for("a.example");
  self.answers.push_back(Record::cname(name("a.example"), name("a.example"), 60));
  self.answers.push_back(Record::a_or_aaaa(name("a.example"), ip("198.51.100.2"), 60));
  EXPECT_EQ(follow_chain(self).end, ChainEnd::kLoop);
  EXPECT_TRUE(follow_chain(self).addresses.empty());

  Message fork = answer_for("a.example");
  fork.answers.push_back(Record::cname(name("a.example"), name("b.example"), 60));
  fork.answers.push_back(Record::cname(name("a.example"), name("c.example"), 60));
  fork.answers.push_back(Record::a_or_aaaa(name("b.example"), ip("198.51.100.1"), 60));
  fork.answers.push_back(Record::a_or_aaaa(name("c.example"), ip("198.51.100.2"), 60));
  EXPECT_EQ(follow_chain(fork).end, ChainEnd::kFork);
  EXPECT_TRUE(follow_chain(fork).addresses.empty());
  // The same link twice (in another case) is no fork.
  Message twice = answer_for("a.example");
  twice.answers.push_back(Record::cname(name("a.example"), name("b.example"), 60));
  twice.answers.push_back(Record::cname(name("A.EXAMPLE"), name("B.example."), 20));
  twice.answers.push_back(Record::a_or_aaaa(name("b.example"), ip("198.51.100.1"), 60));
  const AnswerChain t = follow_chain(twice);
  EXPECT_EQ(t.end, ChainEnd::kEnd);
  ASSERT_EQ(t.addresses.size(), 1u);
  EXPECT_EQ(t.addresses[0].ttl, 20u);

  // kMaxChainNames names are fine; one link more and the chain ends nowhere.
  auto chain_of = [](std::size_t names) {
    Message m = answer_for("n0.example");
    for (std::size_t i = 0; i + 1 < names; ++i) {
      m.answers.push_back(Record::cname(name(concat("n", std::to_string(i), ".example")),
                                        name(concat("n", std::to_string(i + 1), ".example")), 60));
    }
    m.answers.push_back(Record::a_or_aaaa(name(concat("n", std::to_string(names - 1), ".example")), ip("198.51.100.1"), 60));
    return follow_chain(m);
  };
  const AnswerChain fits = chain_of(kMaxChainNames);
  EXPECT_EQ(fits.end, ChainEnd::kEnd);
  EXPECT_EQ(fits.names.size(), kMaxChainNames);
  EXPECT_EQ(fits.addresses.size(), 1u);
  const AnswerChain over = chain_of(kMaxChainNames + 1);
  EXPECT_EQ(over.end, ChainEnd::kTooLong);
  EXPECT_EQ(over.names.size(), kMaxChainNames);
  EXPECT_TRUE(over.addresses.empty());
  EXPECT_EQ(chain_of(41).end, ChainEnd::kTooLong);
}

TEST(Chain, AddressesOfTheAskedTypeOnly) {
  Message a = answer_for("a.example", type::kA);
  a.answers.push_back(Record::a_or_aaaa(name("a.example"), ip("198.51.100.1"), 60));
  a.answers.push_back(Record::a_or_aaaa(name("a.example"), ip("2001:db8::1"), 60));
  ASSERT_EQ(follow_chain(a).addresses.size(), 1u);
  EXPECT_EQ(follow_chain(a).addresses[0].ip, ip("198.51.100.1"));
  Message aaaa = a;
  aaaa.questions[0].type = type::kAaaa;
  ASSERT_EQ(follow_chain(aaaa).addresses.size(), 1u);
  EXPECT_EQ(follow_chain(aaaa).addresses[0].ip, ip("2001:db8::1"));
  Message any = a;
  any.questions[0].type = type::kAny;
  EXPECT_EQ(follow_chain(any).addresses.size(), 2u);
  Message txt = a;
  txt.questions[0].type = type::kTxt;
  EXPECT_TRUE(follow_chain(txt).addresses.empty());
}

TEST(Chain, SvcbHintsCountAsAddresses) {
  Message m = answer_for("svc.example", type::kHttps);
  Record https;
  https.name = name("svc.example");
  https.type = type::kHttps;
  https.ttl = 60;
  using namespace std::string_literals;
  https.rdata = "\0\1"s + "\0"s + "\0\4\0\4"s + "\x0a\0\0\1"s + "\0\6\0\x10"s + std::string(15, '\0') + "\1"s;
  m.answers.push_back(https);
  EXPECT_EQ(all_addresses(m), (std::vector<IpAddress>{ip("10.0.0.1"), ip("::1")}));
}

TEST_F(PinSetTest, AChainPinsTheQueryNameOnly) {
  Message m = answer_for("alias.test.example");
  m.answers.push_back(Record::cname(name("alias.test.example"), name("api.test.example"), 600));
  m.answers.push_back(Record::a_or_aaaa(name("api.test.example"), ip("198.51.100.7"), 600));
  EXPECT_EQ(pins.record(m, t0), 1u);
  EXPECT_TRUE(pins.pinned_at(ip("198.51.100.7"), pat("alias.test.example"), t0));
  EXPECT_TRUE(pins.pinned_at(ip("198.51.100.7"), pat("*.test.example"), t0));
  EXPECT_TRUE(pins.pinned_at(ip("::ffff:198.51.100.7"), pat("alias.test.example"), t0));
  // The CNAME target was never asked for: no pin for it.
  EXPECT_FALSE(pins.pinned_at(ip("198.51.100.7"), pat("api.test.example"), t0));
  EXPECT_FALSE(pins.pinned_at(ip("198.51.100.7"), pat("other.test.example"), t0));
  EXPECT_FALSE(pins.pinned_at(ip("198.51.100.8"), pat("alias.test.example"), t0));
  EXPECT_FALSE(pins.pinned_at(ip("198.51.100.7"), pat("*.alias.test.example"), t0));
  EXPECT_EQ(pins.names_for(ip("198.51.100.7"), t0), (std::vector<std::string>{"alias.test.example"}));
  // Through the PinQuery interface, with the time source.
  const secrets::PinQuery& q = pins;
  EXPECT_TRUE(q.pinned(ip("198.51.100.7"), pat("alias.test.example")));
  clock = t0 + 601s;
  EXPECT_FALSE(q.pinned(ip("198.51.100.7"), pat("alias.test.example")));
}

// The attack of issue 12, item 1: a query for a name the secret does not allow, answered with a
// chain into a name it does and an address for that name. Whatever the shape of the answer, no
// pin satisfies the secret's pattern.
TEST_F(PinSetTest, AnAnswerForAnotherNameNeverPinsTheAllowedName) {
  const HostPattern allowed = pat("*.allowed.example");
  const IpAddress attacker = ip("203.0.113.66");
  auto poisoned = [&](std::vector<Record> records, std::string_view qname = "evil.example") {
    Message m = answer_for(qname);
    m.answers = std::move(records);
    return m;
  };
  const Name evil = name("evil.example"), api = name("api.allowed.example");
  const std::vector<std::pair<const char*, Message>> answers = {
      {"chain", poisoned({Record::cname(evil, api, 60), Record::a_or_aaaa(api, attacker, 60)})},
      {"out of order", poisoned({Record::a_or_aaaa(api, attacker, 60), Record::cname(evil, api, 60)})},
      {"case and trailing dot", poisoned({Record::cname(name("EVIL.example."), name("API.Allowed.Example."), 60),
                                          Record::a_or_aaaa(name("api.ALLOWED.example"), attacker, 60)},
                                         "Evil.Example.")},
      {"two hops", poisoned({Record::cname(evil, api, 60), Record::cname(api, name("cdn.evil.example"), 60),
                             Record::a_or_aaaa(api, attacker, 60),
                             Record::a_or_aaaa(name("cdn.evil.example"), attacker, 60)})},
      {"out of chain", poisoned({Record::a_or_aaaa(evil, ip("198.51.100.1"), 60), Record::a_or_aaaa(api, attacker, 60)})},
      {"unrelated names only", poisoned({Record::cname(name("x.example"), api, 60), Record::a_or_aaaa(api, attacker, 60)})},
      {"loop", poisoned({Record::cname(evil, api, 60), Record::cname(api, evil, 60), Record::a_or_aaaa(api, attacker, 60),
                         Record::a_or_aaaa(evil, attacker, 60)})},
      {"fork", poisoned({Record::cname(evil, api, 60), Record::cname(evil, name("z.example"), 60),
                         Record::a_or_aaaa(api, attacker, 60)})},
  };
  for (const auto& [what, m] : answers) {
    pins.record(m, t0);
    EXPECT_FALSE(pins.pinned_at(attacker, allowed, t0)) << what;
    EXPECT_FALSE(pins.pinned_at(attacker, pat("api.allowed.example"), t0)) << what;
    for (const std::string& n : pins.names_for(attacker, t0)) EXPECT_EQ(n, "evil.example") << what;
  }
  // The two-hop answer pins the query name at the chain's end; the attacker may have its own
  // name pinned to its own address, which is harmless.
  EXPECT_TRUE(pins.pinned_at(attacker, pat("evil.example"), t0));
  // Asking for the allowed name itself is what pins it.
  pins.record(poisoned({Record::a_or_aaaa(api, ip("198.51.100.9"), 60)}, "api.allowed.example"), t0);
  EXPECT_TRUE(pins.pinned_at(ip("198.51.100.9"), allowed, t0));
}

TEST_F(PinSetTest, QueryNameVariantsPinTheSameName) {
  Message m = answer_for("API.Test.Example.");
  m.answers.push_back(Record::a_or_aaaa(name("api.test.example"), ip("198.51.100.7"), 60));
  EXPECT_EQ(pins.record(m, t0), 1u);
  EXPECT_TRUE(pins.pinned_at(ip("198.51.100.7"), pat("api.test.example"), t0));
  EXPECT_EQ(pins.names_for(ip("198.51.100.7"), t0), (std::vector<std::string>{"api.test.example"}));
}

TEST_F(PinSetTest, HeldForTheLongerOfTtlAndMinimum) {
  Message m = answer_for("short.example");
  m.answers.push_back(Record::a_or_aaaa(name("short.example"), ip("198.51.100.1"), 5));
  pins.record(m, t0);
  EXPECT_TRUE(pins.pinned_at(ip("198.51.100.1"), pat("short.example"), t0 + 299s));
  EXPECT_FALSE(pins.pinned_at(ip("198.51.100.1"), pat("short.example"), t0 + 300s));
  Message l = answer_for("long.example");
  l.answers.push_back(Record::a_or_aaaa(name("long.example"), ip("198.51.100.2"), 3600));
  pins.record(l, t0);
  EXPECT_TRUE(pins.pinned_at(ip("198.51.100.2"), pat("long.example"), t0 + 3599s));
  EXPECT_FALSE(pins.pinned_at(ip("198.51.100.2"), pat("long.example"), t0 + 3600s));
  // A huge TTL is capped at max_hold (1 day).
  Message h = answer_for("huge.example");
  h.answers.push_back(Record::a_or_aaaa(name("huge.example"), ip("198.51.100.3"), 0x7fffffff));
  pins.record(h, t0);
  EXPECT_TRUE(pins.pinned_at(ip("198.51.100.3"), pat("huge.example"), t0 + 86399s));
  EXPECT_FALSE(pins.pinned_at(ip("198.51.100.3"), pat("huge.example"), t0 + 86400s));
  // A later, shorter answer never shortens a pin.
  Message again = answer_for("long.example");
  again.answers.push_back(Record::a_or_aaaa(name("long.example"), ip("198.51.100.2"), 1));
  pins.record(again, t0 + 10s);
  EXPECT_TRUE(pins.pinned_at(ip("198.51.100.2"), pat("long.example"), t0 + 3599s));
}

TEST(PinSetOptionsTest, MinimumHoldIsConfigurable) {
  PinSet pins([] { return t0; }, PinSetOptions{.min_hold = 30s, .max_hold = 60s, .max_entries = 10});
  Message m = answer_for("a.example");
  m.answers.push_back(Record::a_or_aaaa(name("a.example"), ip("198.51.100.1"), 5));
  m.answers.push_back(Record::a_or_aaaa(name("a.example"), ip("198.51.100.2"), 600));
  pins.record(m, t0);
  EXPECT_TRUE(pins.pinned_at(ip("198.51.100.1"), pat("a.example"), t0 + 29s));
  EXPECT_FALSE(pins.pinned_at(ip("198.51.100.1"), pat("a.example"), t0 + 30s));
  EXPECT_FALSE(pins.pinned_at(ip("198.51.100.2"), pat("a.example"), t0 + 60s));
}

TEST_F(PinSetTest, OnlySuccessfulAnswersToStandardQueriesPin) {
  Message m = answer_for("a.example");
  m.answers.push_back(Record::a_or_aaaa(name("a.example"), ip("198.51.100.1"), 60));
  Message nx = m;
  nx.header.set_rcode(rcode::kNxDomain);
  EXPECT_EQ(pins.record(nx, t0), 0u);
  Message query = m;
  query.header.set_qr(false);
  EXPECT_EQ(pins.record(query, t0), 0u);
  Message two = m;
  two.questions.push_back({name("b.example"), type::kA, kClassIn});
  EXPECT_EQ(pins.record(two, t0), 0u);
  Message chaos = m;
  chaos.answers[0].klass = 3;
  EXPECT_EQ(pins.record(chaos, t0), 0u);
  EXPECT_EQ(pins.size(), 0u);
  // Names with bytes outside host syntax never match a pattern.
  Message odd = answer_for("api\\.test.example");
  odd.answers.push_back(Record::a_or_aaaa(name("api\\.test.example"), ip("198.51.100.9"), 60));
  EXPECT_EQ(pins.record(odd, t0), 1u);
  EXPECT_FALSE(pins.pinned_at(ip("198.51.100.9"), pat("api.test.example"), t0));
  EXPECT_FALSE(pins.pinned_at(ip("198.51.100.9"), pat("*.test.example"), t0));
  EXPECT_EQ(pins.names_for(ip("198.51.100.9"), t0), (std::vector<std::string>{"api\\046test.example"}));
}

TEST(PinSetBounds, EvictsExpiredFirstThenSoonestToExpire) {
  PinSet pins([] { return t0; }, PinSetOptions{.min_hold = 10s, .max_hold = 1000s, .max_entries = 3});
  pins.pin(ip("198.51.100.1"), "one.example", 10s, t0);
  pins.pin(ip("198.51.100.2"), "two.example", 500s, t0);
  pins.pin(ip("198.51.100.3"), "three.example", 100s, t0);
  EXPECT_EQ(pins.size(), 3u);
  // At t0+20 "one" has expired: it goes, the others stay.
  pins.pin(ip("198.51.100.4"), "four.example", 1000s, t0 + 20s);
  EXPECT_EQ(pins.size(), 3u);
  EXPECT_TRUE(pins.names_for(ip("198.51.100.1"), t0).empty());
  EXPECT_TRUE(pins.pinned_at(ip("198.51.100.3"), pat("three.example"), t0 + 20s));
  // Nothing expired: the soonest to expire ("three") goes.
  pins.pin(ip("198.51.100.5"), "five.example", 1000s, t0 + 20s);
  EXPECT_EQ(pins.size(), 3u);
  EXPECT_FALSE(pins.pinned_at(ip("198.51.100.3"), pat("three.example"), t0 + 20s));
  EXPECT_TRUE(pins.pinned_at(ip("198.51.100.2"), pat("two.example"), t0 + 20s));
  EXPECT_TRUE(pins.pinned_at(ip("198.51.100.4"), pat("four.example"), t0 + 20s));
  EXPECT_TRUE(pins.pinned_at(ip("198.51.100.5"), pat("five.example"), t0 + 20s));
  pins.expire(t0 + 600s);
  EXPECT_EQ(pins.size(), 2u);
  pins.expire(t0 + 2000s);
  EXPECT_EQ(pins.size(), 0u);
}

TEST(PinSetBounds, ManyNamesForOneAddressStayBounded) {
  PinSet pins([] { return t0; }, PinSetOptions{.min_hold = 10s, .max_hold = 1000s, .max_entries = 100});
  for (int i = 0; i < 1000; ++i) pins.pin(ip("198.51.100.1"), concat("n", std::to_string(i), ".example"), 100s, t0);
  EXPECT_EQ(pins.size(), 100u);
  EXPECT_TRUE(pins.pinned_at(ip("198.51.100.1"), pat("n999.example"), t0));
  EXPECT_FALSE(pins.pinned_at(ip("198.51.100.1"), pat("n0.example"), t0));
}

TEST(PinSetThreads, ConcurrentReadsAndWrites) {
  PinSet pins([] { return t0; }, PinSetOptions{.min_hold = 10s, .max_hold = 1000s, .max_entries = 500});
  pins.pin(ip("198.51.100.1"), "stable.example", 1000s, t0);
  std::atomic<long> misses{0};
  std::thread writer([&] {
    for (int i = 0; i < 20000; ++i) {
      pins.pin(IpAddress::v4(203, 0, 113, static_cast<std::uint8_t>(i % 200)), concat("w", std::to_string(i % 300), ".example"),
               50s, t0);
    }
  });
  std::thread reader([&] {
    // The long-held pin is never the one evicted, so every read sees it.
    for (int i = 0; i < 20000; ++i) misses += pins.pinned_at(ip("198.51.100.1"), pat("stable.example"), t0) ? 0 : 1;
  });
  writer.join();
  reader.join();
  EXPECT_EQ(misses.load(), 0);
  EXPECT_LE(pins.size(), 500u);
  EXPECT_TRUE(pins.pinned_at(ip("198.51.100.1"), pat("stable.example"), t0));
}

}  // namespace
}  // namespace airlock::dns
