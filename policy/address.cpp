#include "policy/address.hpp"

#include "common/concat.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <initializer_list>

namespace airlock::policy {
namespace {

constexpr std::array<std::uint8_t, 12> kV4MappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool prefix_equal(const IpAddress& a, const IpAddress& b, unsigned bits) noexcept {
  const unsigned whole = bits / 8;
  for (unsigned i = 0; i < whole; ++i) {
    if (a.bytes[i] != b.bytes[i]) return false;
  }
  const unsigned rest = bits % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
  return (a.bytes[whole] & mask) == (b.bytes[whole] & mask);
}

bool starts_with(const IpAddress& ip, std::initializer_list<std::uint8_t> prefix) noexcept {
  return !ip.is_v4() && std::equal(prefix.begin(), prefix.end(), ip.bytes.begin());
}

// 64:ff9b::/96, the NAT64 well-known prefix (RFC 6052).
bool is_nat64_well_known(const IpAddress& ip) noexcept {
  return starts_with(ip, {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0});
}

IpAddress v4_at(const IpAddress& ip, std::initializer_list<unsigned> at, std::uint8_t flip = 0) noexcept {
  IpAddress out;
  std::size_t i = 0;
  for (unsigned byte : at) out.bytes[i++] = static_cast<std::uint8_t>(ip.bytes[byte] ^ flip);
  return out;
}

Cidr must(std::string_view text) {
  auto c = Cidr::parse(text);
  return *c;  // tables below are fixed and valid
}

const std::vector<Cidr>& table(Group group) {
  static const std::vector<Cidr> priv = {must("10.0.0.0/8"), must("172.16.0.0/12"),
                                         must("192.168.0.0/16"), must("100.64.0.0/10"),
                                         must("fc00::/7"), must("fec0::/10")};
  static const std::vector<Cidr> loopback = {must("127.0.0.0/8"), must("::1")};
  static const std::vector<Cidr> link_local = {must("169.254.0.0/16"), must("fe80::/10")};
  static const std::vector<Cidr> metadata = {must("169.254.169.254"), must("fd00:ec2::254")};
  static const std::vector<Cidr> multicast = {must("224.0.0.0/4"), must("ff00::/8")};
  static const std::vector<Cidr> none;
  switch (group) {
    case Group::kPrivate: return priv;
    case Group::kLoopback: return loopback;
    case Group::kLinkLocal: return link_local;
    case Group::kMetadata: return metadata;
    case Group::kMulticast: return multicast;
    default: return none;
  }
}

const std::vector<Cidr>& reserved_table() {
  static const std::vector<Cidr> reserved = {
      must("0.0.0.0/8"),        // "this network"; 0.0.0.0 reaches the local host on Linux
      must("192.0.0.0/24"),     // IETF protocol assignments
      must("192.0.2.0/24"),     // TEST-NET-1
      must("192.88.99.0/24"),   // 6to4 relay anycast (deprecated)
      must("198.18.0.0/15"),    // benchmarking
      must("198.51.100.0/24"),  // TEST-NET-2
      must("203.0.113.0/24"),   // TEST-NET-3
      must("240.0.0.0/4"),      // reserved, including 255.255.255.255
      must("2001::/23"),        // IETF protocol assignments (Teredo, ...)
      must("2001:db8::/32"),    // documentation
      must("2002::/16"),        // 6to4: embeds an IPv4 address of any kind
      must("3fff::/20"),        // documentation
  };
  return reserved;
}

bool in_table(const std::vector<Cidr>& t, const IpAddress& ip) noexcept {
  return std::any_of(t.begin(), t.end(), [&](const Cidr& c) { return c.contains(ip); });
}

}  // namespace

const std::vector<Cidr>& group_ranges(Group group) { return table(group); }

EmbeddedIpv4 embedded_ipv4(const IpAddress& ip) noexcept {
  EmbeddedIpv4 e;
  if (ip.is_v4()) return e;
  auto add = [&](const IpAddress& v4) { e.readings[e.count++] = v4; };
  if (is_nat64_well_known(ip) || starts_with(ip, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})) {
    add(v4_at(ip, {12, 13, 14, 15}));  // NAT64 /96, IPv4-compatible
  } else if (starts_with(ip, {0, 0x64, 0xff, 0x9b, 0, 1})) {
    add(v4_at(ip, {6, 7, 9, 10}));     // local-use NAT64 at /48 (byte 8 is the u-octet)
    add(v4_at(ip, {7, 9, 10, 11}));    // ... /56
    add(v4_at(ip, {9, 10, 11, 12}));   // ... /64
    add(v4_at(ip, {12, 13, 14, 15}));  // ... /96
  } else if (starts_with(ip, {0x20, 0x02})) {
    add(v4_at(ip, {2, 3, 4, 5}));      // 6to4
  } else if (starts_with(ip, {0x20, 0x01, 0, 0})) {
    add(v4_at(ip, {4, 5, 6, 7}));            // Teredo server
    add(v4_at(ip, {12, 13, 14, 15}, 0xff));  // Teredo client, obfuscated
  }
  return e;
}

bool reaches(const Cidr& range, const IpAddress& ip) noexcept {
  if (range.contains(ip)) return true;
  for (const IpAddress& v4 : embedded_ipv4(canonical(ip)))
    if (range.contains(v4)) return true;
  return false;
}

std::vector<Cidr> embedding_networks(const Cidr& v4) {
  if (!v4.network.is_v4()) return {};
  const auto& a = v4.network.bytes;
  auto v6 = [&](std::initializer_list<std::uint8_t> head, std::size_t at, unsigned offset) {
    Cidr c;
    c.network.family = IpAddress::Family::kV6;
    std::copy(head.begin(), head.end(), c.network.bytes.begin());
    std::copy(a.begin(), a.begin() + 4, c.network.bytes.begin() + static_cast<std::ptrdiff_t>(at));
    c.prefix = static_cast<std::uint8_t>(offset + v4.prefix);
    return c;
  };
  return {v6({}, 12, 96),                          // IPv4-compatible
          v6({0, 0x64, 0xff, 0x9b}, 12, 96),       // NAT64 well-known
          v6({0x20, 0x02}, 2, 16)};                // 6to4
}

const std::vector<Cidr>& scattered_embedding_prefixes() {
  static const std::vector<Cidr> prefixes = {must("64:ff9b:1::/48"), must("2001::/32")};
  return prefixes;
}

IpAddress canonical(const IpAddress& ip) noexcept {
  if (ip.is_v4()) return ip;
  if (!std::equal(kV4MappedPrefix.begin(), kV4MappedPrefix.end(), ip.bytes.begin())) return ip;
  return IpAddress::v4(ip.bytes[12], ip.bytes[13], ip.bytes[14], ip.bytes[15]);
}

Cidr Cidr::host(const IpAddress& ip) noexcept {
  const IpAddress c = canonical(ip);
  return Cidr{c, static_cast<std::uint8_t>(c.is_v4() ? 32 : 128)};
}

std::optional<Cidr> Cidr::parse(std::string_view text, std::string* error) {
  auto fail = [&](std::string message) -> std::optional<Cidr> {
    if (error) *error = std::move(message);
    return std::nullopt;
  };
  const std::size_t slash = text.find('/');
  const std::string_view addr_text = text.substr(0, slash);
  auto ip = IpAddress::parse(addr_text);
  if (!ip) return fail(concat("'", addr_text, "' is not an IP address"));
  const unsigned max_prefix = ip->is_v4() ? 32 : 128;
  unsigned prefix = max_prefix;
  if (slash != std::string_view::npos) {
    const std::string_view p = text.substr(slash + 1);
    const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
    if (p.empty() || ec != std::errc() || end != p.data() + p.size() || prefix > max_prefix) {
      return fail("prefix length '" + std::string(p) + "' must be a number from 0 to " +
                  std::to_string(max_prefix));
    }
  }
  Cidr c{*ip, static_cast<std::uint8_t>(prefix)};
  // Host bits must be zero: `10.1.2.3/24` is almost always a typo for a host or a network.
  IpAddress masked = *ip;
  for (unsigned bit = prefix; bit < max_prefix; ++bit) {
    masked.bytes[bit / 8] = static_cast<std::uint8_t>(masked.bytes[bit / 8] & ~(0x80u >> (bit % 8)));
  }
  if (masked != *ip) {
    return fail(concat("'", text, "' has host bits set (the network is ", Cidr{masked, c.prefix}.to_string(), ")"));
  }
  // A v4-mapped network is the IPv4 network it embeds.
  if (!ip->is_v4() && prefix >= 96 && canonical(*ip).is_v4()) {
    c = Cidr{canonical(*ip), static_cast<std::uint8_t>(prefix - 96)};
  }
  return c;
}

bool Cidr::contains(const IpAddress& ip) const noexcept {
  const IpAddress c = canonical(ip);
  if (c.family != network.family) return false;
  return prefix_equal(c, network, prefix);
}

std::string Cidr::to_string() const {
  if (is_host()) return network.to_string();
  return network.to_string() + "/" + std::to_string(prefix);
}

std::string_view to_string(Group group) noexcept {
  switch (group) {
    case Group::kPublic: return "public";
    case Group::kPrivate: return "private";
    case Group::kLoopback: return "loopback";
    case Group::kLinkLocal: return "link-local";
    case Group::kMetadata: return "metadata";
    case Group::kMulticast: return "multicast";
    case Group::kHost: return "host";
  }
  return "?";
}

std::optional<Group> parse_group(std::string_view text) noexcept {
  // Case-insensitive, like the domain names a group name could otherwise be read as.
  auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; };
  for (Group g : {Group::kPublic, Group::kPrivate, Group::kLoopback, Group::kLinkLocal,
                  Group::kMetadata, Group::kMulticast, Group::kHost}) {
    const std::string_view name = to_string(g);
    if (text.size() == name.size() &&
        std::equal(text.begin(), text.end(), name.begin(), [&](char a, char b) { return lower(a) == b; })) {
      return g;
    }
  }
  return std::nullopt;
}

namespace {

bool own_range_reserved(const IpAddress& c) noexcept {
  if (!c.is_v4() && (c.bytes[0] & 0xe0) != 0x20) {
    // Outside 2000::/3 (global unicast): reserved unless a named group covers it.
    for (Group g : {Group::kPrivate, Group::kLoopback, Group::kLinkLocal, Group::kMulticast}) {
      if (in_table(table(g), c)) return false;
    }
    return true;
  }
  return in_table(reserved_table(), c);
}

}  // namespace

bool is_reserved(const IpAddress& ip) noexcept {
  const IpAddress c = canonical(ip);
  for (const IpAddress& v4 : embedded_ipv4(c))
    if (own_range_reserved(v4)) return true;
  if (is_nat64_well_known(c)) return false;  // what it embeds decides alone
  return own_range_reserved(c);
}

AddressGroups::AddressGroups(std::vector<IpAddress> host_addresses) {
  host_.reserve(host_addresses.size());
  for (const auto& ip : host_addresses) host_.push_back(canonical(ip));
}

bool AddressGroups::contains(Group group, const IpAddress& ip) const noexcept {
  const IpAddress c = canonical(ip);
  switch (group) {
    case Group::kHost: {
      auto is_host = [&](const IpAddress& a) { return std::find(host_.begin(), host_.end(), a) != host_.end(); };
      if (is_host(c)) return true;
      const EmbeddedIpv4 e = embedded_ipv4(c);
      return std::any_of(e.begin(), e.end(), is_host);
    }
    case Group::kPublic:
      for (Group g : {Group::kPrivate, Group::kLoopback, Group::kLinkLocal, Group::kMetadata,
                      Group::kMulticast, Group::kHost}) {
        if (contains(g, c)) return false;
      }
      return !is_reserved(c);
    default: {
      if (in_table(table(group), c)) return true;
      const EmbeddedIpv4 e = embedded_ipv4(c);
      return std::any_of(e.begin(), e.end(), [&](const IpAddress& v4) { return in_table(table(group), v4); });
    }
  }
}

}  // namespace airlock::policy
