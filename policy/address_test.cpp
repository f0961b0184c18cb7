#include "policy/address.hpp"

#include <gtest/gtest.h>

namespace airlock::policy {
namespace {

IpAddress ip(std::string_view text) { return *IpAddress::parse(text); }

std::vector<Group> groups_of(const AddressGroups& g, std::string_view text) {
  std::vector<Group> out;
  for (Group x : {Group::kPublic, Group::kPrivate, Group::kLoopback, Group::kLinkLocal, Group::kMetadata,
                  Group::kMulticast, Group::kHost}) {
    if (g.contains(x, ip(text))) out.push_back(x);
  }
  return out;
}

using G = Group;

TEST(Address, GroupsOfEachRange) {
  const AddressGroups g({ip("192.0.2.1"), ip("2001:db8::53")});
  struct Case { const char* ip; std::vector<Group> groups; };
  const std::vector<Case> cases = {
      {"8.8.8.8", {G::kPublic}},
      {"2606:4700::1111", {G::kPublic}},
      {"10.0.0.1", {G::kPrivate}},
      {"10.255.255.255", {G::kPrivate}},
      {"172.16.0.1", {G::kPrivate}},
      {"172.31.255.255", {G::kPrivate}},
      {"172.32.0.1", {G::kPublic}},
      {"172.15.255.255", {G::kPublic}},
      {"192.168.1.1", {G::kPrivate}},
      {"100.64.0.1", {G::kPrivate}},
      {"100.127.255.255", {G::kPrivate}},
      {"100.128.0.1", {G::kPublic}},
      {"fc00::1", {G::kPrivate}},
      {"fdff:ffff::1", {G::kPrivate}},
      {"127.0.0.1", {G::kLoopback}},
      {"127.255.0.9", {G::kLoopback}},
      {"::1", {G::kLoopback}},
      {"169.254.1.1", {G::kLinkLocal}},
      {"fe80::1", {G::kLinkLocal}},
      {"febf::1", {G::kLinkLocal}},
      {"169.254.169.254", {G::kLinkLocal, G::kMetadata}},
      {"fd00:ec2::254", {G::kPrivate, G::kMetadata}},
      {"::ffff:169.254.169.254", {G::kLinkLocal, G::kMetadata}},
      {"::ffff:10.1.1.1", {G::kPrivate}},
      {"::ffff:8.8.8.8", {G::kPublic}},
      {"224.0.0.1", {G::kMulticast}},
      {"239.255.255.250", {G::kMulticast}},
      {"ff02::1", {G::kMulticast}},
      {"192.0.2.1", {G::kHost}},
      {"2001:db8::53", {G::kHost}},
      // Reserved and documentation space is in no group, not even public.
      {"192.0.2.2", {}},
      {"198.51.100.7", {}},
      {"203.0.113.9", {}},
      {"0.0.0.0", {}},
      {"240.0.0.1", {}},
      {"255.255.255.255", {}},
      {"198.18.0.1", {}},
      {"2001:db8::1", {}},
      {"::", {}},
      {"64:ff9b::a9fe:a9fe", {}},  // NAT64 of 169.254.169.254
      {"2002:a00:1::1", {}},       // 6to4 of 10.0.0.1
      {"::a9fe:a9fe", {}},         // IPv4-compatible (deprecated)
  };
  for (const auto& c : cases) EXPECT_EQ(groups_of(g, c.ip), c.groups) << c.ip;
}

TEST(Address, CidrParseAndContains) {
  auto c = Cidr::parse("10.1.2.0/24");
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->contains(ip("10.1.2.255")));
  EXPECT_TRUE(c->contains(ip("::ffff:10.1.2.3")));
  EXPECT_FALSE(c->contains(ip("10.1.3.0")));
  EXPECT_FALSE(c->contains(ip("::a01:203")));
  EXPECT_EQ(c->to_string(), "10.1.2.0/24");
  auto all = Cidr::parse("0.0.0.0/0");
  ASSERT_TRUE(all);
  EXPECT_TRUE(all->contains(ip("1.2.3.4")));
  EXPECT_FALSE(all->contains(ip("2001:db8::1")));
  auto v6 = Cidr::parse("2001:db8:1::/48");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->contains(ip("2001:db8:1:ffff::1")));
  EXPECT_FALSE(v6->contains(ip("2001:db8:2::1")));
  auto odd = Cidr::parse("2001:db8::/33");
  ASSERT_TRUE(odd);
  EXPECT_TRUE(odd->contains(ip("2001:db8:7fff::1")));
  EXPECT_FALSE(odd->contains(ip("2001:db8:8000::1")));
  auto mapped = Cidr::parse("::ffff:10.0.0.0/104");
  ASSERT_TRUE(mapped);
  EXPECT_EQ(mapped->to_string(), "10.0.0.0/8");
  EXPECT_EQ(Cidr::parse("198.51.100.7")->to_string(), "198.51.100.7");
}

TEST(Address, CidrErrors) {
  std::string error;
  EXPECT_FALSE(Cidr::parse("10.1.2.3/24", &error));
  EXPECT_EQ(error, "'10.1.2.3/24' has host bits set (the network is 10.1.2.0/24)");
  EXPECT_FALSE(Cidr::parse("10.0.0.0/33", &error));
  EXPECT_EQ(error, "prefix length '33' must be a number from 0 to 32");
  EXPECT_FALSE(Cidr::parse("10.0.0.0/", &error));
  EXPECT_EQ(error, "prefix length '' must be a number from 0 to 32");
  EXPECT_FALSE(Cidr::parse("10.0.0.0/8x", &error));
  EXPECT_FALSE(Cidr::parse("2001:db8::/129", &error));
  EXPECT_EQ(error, "prefix length '129' must be a number from 0 to 128");
  EXPECT_FALSE(Cidr::parse("10.0.0.256", &error));
  EXPECT_EQ(error, "'10.0.0.256' is not an IP address");
}

}  // namespace
}  // namespace airlock::policy
