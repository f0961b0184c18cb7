#pragma once
// Address ranges and the named groups egress rules refer to. Pure.
#include <common/ip_address.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::policy {

// An IPv4-mapped IPv6 address (::ffff:a.b.c.d) reaches the IPv4 address it embeds, so every
// decision is taken on that IPv4 form. Other addresses are returned unchanged.
IpAddress canonical(const IpAddress& ip) noexcept;

// The IPv4 addresses an IPv6 address reaches through a translator or tunnel that carries an
// IPv4 address inside it (issue 12, item 2): NAT64 with the well-known prefix 64:ff9b::/96 and
// IPv4-compatible ::/96 (the last 32 bits); 6to4 2002::/16 (bits 16-47); Teredo 2001::/32 (the
// server in bits 32-63, and the client, the last 32 bits inverted); NAT64 with the local-use
// prefix 64:ff9b:1::/48, whose operator picks the prefix length, read at each RFC 6052 place
// (/48, /56, /64 and /96, the u-octet skipped). IPv4-mapped addresses are not listed: canonical()
// already turns them into the IPv4 address itself. Every reading is returned; a decision
// classifies the address by all of them.
struct EmbeddedIpv4 {
  std::array<IpAddress, 4> readings{};
  std::size_t count = 0;
  const IpAddress* begin() const noexcept { return readings.data(); }
  const IpAddress* end() const noexcept { return readings.data() + count; }
};
EmbeddedIpv4 embedded_ipv4(const IpAddress& ip) noexcept;

// A network: the first `prefix` bits of `network` (the rest are zero).
struct Cidr {
  IpAddress network;
  std::uint8_t prefix = 0;  // 0..32 for v4, 0..128 for v6

  // A single address as a /32 or /128.
  static Cidr host(const IpAddress& ip) noexcept;
  // "10.0.0.0/8", "2001:db8::/32", "192.0.2.1" (a host). No brackets. nullopt with `error` set
  // when malformed (bad address, bad prefix, host bits set).
  static std::optional<Cidr> parse(std::string_view text, std::string* error = nullptr);

  bool contains(const IpAddress& ip) const noexcept;  // ip is canonicalized first
  bool is_host() const noexcept { return prefix == (network.is_v4() ? 32 : 128); }
  std::string to_string() const;  // "10.0.0.0/8"; a host without the prefix
  friend bool operator==(const Cidr&, const Cidr&) = default;
};

// Is `ip` in `range`, or does it embed (embedded_ipv4) an IPv4 address in `range`? What a deny
// matches: a deny of 10.0.0.0/8 also refuses 64:ff9b::a00:1.
bool reaches(const Cidr& range, const IpAddress& ip) noexcept;

// The IPv6 networks that hold every address of the IPv4 network `v4` at a fixed place, so they
// can be written as prefixes: IPv4-compatible (::a.b.c.d/96+n), NAT64 well-known
// (64:ff9b::a.b.c.d/96+n) and 6to4 (2002:aabb:ccdd::/16+n). Empty for an IPv6 network.
// (IPv4-mapped forms are the IPv4 network itself; Cidr::parse turns one into the other.)
std::vector<Cidr> embedding_networks(const Cidr& v4);
// The prefixes whose embedded IPv4 address sits where no prefix can express it: NAT64
// local-use 64:ff9b:1::/48 (its place depends on the operator's prefix length, with the
// u-octet in between) and Teredo 2001::/32 (the client address inverted, after 64 free bits).
// A filter that works on prefixes (the sandbox's nftables guard) blocks them whole.
const std::vector<Cidr>& scattered_embedding_prefixes();

// Group membership of an address is the union of its own and that of every IPv4 address it
// embeds: 64:ff9b::a9fe:a9fe is link-local and metadata, 2002:a00:1::1 private.
enum class Group : std::uint8_t {
  kPublic,     // none of the groups below, and not reserved or documentation space
  kPrivate,    // 10/8, 172.16/12, 192.168/16, 100.64/10 (CGNAT), fc00::/7 (ULA), fec0::/10
               // (site-local, deprecated)
  kLoopback,   // 127/8, ::1
  kLinkLocal,  // 169.254/16, fe80::/10
  kMetadata,   // 169.254.169.254, fd00:ec2::254 (cloud instance metadata)
  kMulticast,  // 224/4, ff00::/8
  kHost,       // the gateway's own addresses
};
std::string_view to_string(Group group) noexcept;  // "public", "private", "link-local", ...
std::optional<Group> parse_group(std::string_view text) noexcept;
// The ranges a group is made of (empty for public and host, which are defined otherwise).
const std::vector<Cidr>& group_ranges(Group group);

// Reserved, unspecified, documentation, benchmarking and other special-purpose space that is in
// no named group (0/8, 192.0.2/24, 240/4, ::/128, 2001:db8::/32, anything outside 2000::/3, ...),
// and any address that embeds a reserved IPv4 address. The embedding prefixes are reserved
// themselves (not public even when what they embed is), except NAT64's well-known 64:ff9b::/96:
// that one is classified by the IPv4 address alone, as IPv6-only networks with DNS64 use it for
// every public IPv4 destination.
bool is_reserved(const IpAddress& ip) noexcept;

// Group membership; groups overlap (metadata ⊂ link-local, fd00:ec2::254 ∈ private).
class AddressGroups {
 public:
  explicit AddressGroups(std::vector<IpAddress> host_addresses = {});
  bool contains(Group group, const IpAddress& ip) const noexcept;
  const std::vector<IpAddress>& host_addresses() const noexcept { return host_; }

 private:
  std::vector<IpAddress> host_;  // canonical
};

}  // namespace airlock::policy
