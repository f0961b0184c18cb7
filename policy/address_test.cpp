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
      {"fec0::1", {G::kPrivate}},  // site-local (deprecated)
      {"feff::1", {G::kPrivate}},
  };
  for (const auto& c : cases) EXPECT_EQ(groups_of(g, c.ip), c.groups) << c.ip;
}

TEST(Address, EmbeddedIpv4Readings) {
  auto readings = [](std::string_view text) {
    std::vector<std::string> out;
    for (const IpAddress& v4 : embedded_ipv4(ip(text))) out.push_back(v4.to_string());
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(readings("64:ff9b::a9fe:a9fe"), V{"169.254.169.254"});
  EXPECT_EQ(readings("64:ff9b::10.1.2.3"), V{"10.1.2.3"});
  EXPECT_EQ(readings("::a9fe:a9fe"), V{"169.254.169.254"});
  EXPECT_EQ(readings("2002:a9fe:a9fe::"), V{"169.254.169.254"});
  EXPECT_EQ(readings("2002:a00:1:ffff::1"), V{"10.0.0.1"});
  // Teredo: server in bits 32-63, client inverted in the last 32 bits.
  EXPECT_EQ(readings("2001:0:4136:e378:8000:63bf:f5ff:fffe"), (V{"65.54.227.120", "10.0.0.1"}));
  // Local-use NAT64: every RFC 6052 place (/48, /56, /64 with the u-octet skipped, /96).
  EXPECT_EQ(readings("64:ff9b:1:a9fe:00a9:fe00::"), (V{"169.254.169.254", "254.169.254.0", "169.254.0.0", "0.0.0.0"}));
  EXPECT_EQ(readings("64:ff9b:1::a9fe:a9fe"), (V{"0.0.0.0", "0.0.0.0", "0.0.0.169", "169.254.169.254"}));
  EXPECT_EQ(readings("64:ff9b:1:0:7f:0:100::"), (V{"0.0.127.0", "0.127.0.0", "127.0.0.1", "1.0.0.0"}));
  // Not an embedding: nothing.
  EXPECT_EQ(readings("2001:db8::a9fe:a9fe"), V{});
  EXPECT_EQ(readings("64:ff9b:2::a9fe:a9fe"), V{});
  EXPECT_EQ(readings("2001:1::a9fe:a9fe"), V{});
  EXPECT_EQ(readings("169.254.169.254"), V{});
}

// Issue 12, item 2: every IPv6 form of a non-public IPv4 address is in that address's groups,
// so no form is public; forms of public addresses stay out of every group.
TEST(Address, EmbeddedFormsAreInTheGroupsOfWhatTheyEmbed) {
  const AddressGroups g({ip("192.0.2.1")});
  struct Case { const char* ip; std::vector<Group> groups; };
  const std::vector<Case> cases = {
      // NAT64 well-known prefix.
      {"64:ff9b::a9fe:a9fe", {G::kLinkLocal, G::kMetadata}},
      {"64:ff9b::a00:1", {G::kPrivate}},
      {"64:ff9b::7f00:1", {G::kLoopback}},
      {"64:ff9b::e000:1", {G::kMulticast}},
      {"64:ff9b::c000:201", {G::kHost}},
      {"64:ff9b::808:808", {G::kPublic}},  // what NAT64 is for (DNS64 networks)
      // NAT64 local-use prefix, at any of its places.
      {"64:ff9b:1:a9fe:a9:fe00::", {G::kLinkLocal, G::kMetadata}},  // at /48
      {"64:ff9b:1:a9:fe:a9fe::", {G::kLinkLocal, G::kMetadata}},      // at /56
      {"64:ff9b:1:0:a9:fea9:fe00:0", {G::kLinkLocal, G::kMetadata}},  // at /64
      {"64:ff9b:1::a00:1", {G::kPrivate}},  // at /96
      {"64:ff9b:1:0:7f:0:100::", {G::kLoopback}},
      {"64:ff9b:1:808:8:800::", {}},  // public readings, but the prefix is reserved
      // 6to4.
      {"2002:a9fe:a9fe::", {G::kLinkLocal, G::kMetadata}},
      {"2002:a9fe:a9fe:1::1", {G::kLinkLocal, G::kMetadata}},
      {"2002:c0a8:101::1", {G::kPrivate}},
      {"2002:6440:1::1", {G::kPrivate}},  // CGNAT 100.64.0.1
      {"2002:7f00:1::", {G::kLoopback}},
      {"2002:c000:201::", {G::kHost}},
      {"2002:808:808::1", {}},  // reserved: 6to4 relays are deprecated
      // IPv4-mapped and IPv4-compatible.
      {"::ffff:a9fe:a9fe", {G::kLinkLocal, G::kMetadata}},
      {"::a9fe:a9fe", {G::kLinkLocal, G::kMetadata}},
      {"::ac10:1", {G::kPrivate}},
      {"::7f00:1", {G::kLoopback}},
      {"::808:808", {}},
      // Teredo: the server or the (inverted) client address.
      {"2001:0:a9fe:a9fe::", {G::kLinkLocal, G::kMetadata}},
      {"2001:0:808:808:0:0:5601:5601", {G::kLinkLocal, G::kMetadata}},  // client ~0x56015601
      {"2001:0:808:808:0:0:f5ff:fffe", {G::kPrivate}},                  // client 10.0.0.1
      {"2001:0:808:808:0:0:80ff:fffe", {G::kLoopback}},                 // client 127.0.0.1
      {"2001:0:808:808:0:0:f7f7:f7f7", {}},                             // both public: reserved
  };
  for (const auto& c : cases) EXPECT_EQ(groups_of(g, c.ip), c.groups) << c.ip;
  // Reserved IPv4 space stays reserved in every form.
  for (const char* form : {"64:ff9b::c000:202", "2002:c000:202::", "::c000:202", "2001:0:c000:202::"}) {
    EXPECT_TRUE(is_reserved(ip(form))) << form;
  }
  EXPECT_FALSE(is_reserved(ip("64:ff9b::808:808")));
}

TEST(Address, ReachesTheEmbeddedAddress) {
  const Cidr ten = *Cidr::parse("10.0.0.0/8");
  for (const char* form : {"10.1.2.3", "::ffff:10.1.2.3", "64:ff9b::a01:203", "2002:a01:203::", "::a01:203",
                           "2001:0:a01:203::", "64:ff9b:1:a01:2:300::"}) {
    EXPECT_TRUE(reaches(ten, ip(form))) << form;
  }
  for (const char* other : {"11.0.0.1", "64:ff9b::b00:1", "2002:b00:1::", "2001:db8::a01:203"}) {
    EXPECT_FALSE(reaches(ten, ip(other))) << other;
  }
  EXPECT_TRUE(reaches(*Cidr::parse("2002::/16"), ip("2002:a01:203::")));
}

TEST(Address, EmbeddingNetworksOfAnIpv4Network) {
  std::vector<std::string> texts;
  for (const Cidr& c : embedding_networks(*Cidr::parse("169.254.0.0/16"))) texts.push_back(c.to_string());
  EXPECT_EQ(texts, (std::vector<std::string>{"::169.254.0.0/112", "64:ff9b::a9fe:0/112", "2002:a9fe::/32"}));
  // Each network holds exactly the forms of the IPv4 network's addresses.
  for (const Cidr& c : embedding_networks(*Cidr::parse("10.0.0.0/8"))) {
    EXPECT_TRUE(c.network.family == IpAddress::Family::kV6) << c.to_string();
    EXPECT_EQ(static_cast<int>(c.prefix), c.network.bytes[0] == 0x20 ? 24 : 104) << c.to_string();
  }
  const auto host = embedding_networks(Cidr::host(ip("192.0.2.1")));
  ASSERT_EQ(host.size(), 3u);
  EXPECT_TRUE(host[1].contains(ip("64:ff9b::c000:201")));
  EXPECT_FALSE(host[1].contains(ip("64:ff9b::c000:202")));
  EXPECT_TRUE(host[2].contains(ip("2002:c000:201:ffff::1")));
  EXPECT_TRUE(embedding_networks(*Cidr::parse("fc00::/7")).empty());
  std::vector<std::string> scattered;
  for (const Cidr& c : scattered_embedding_prefixes()) scattered.push_back(c.to_string());
  EXPECT_EQ(scattered, (std::vector<std::string>{"64:ff9b:1::/48", "2001::/32"}));
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
