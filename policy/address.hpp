#pragma once
// Address ranges and the named groups egress rules refer to. Pure.
#include <common/ip_address.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::policy {

// An IPv4-mapped IPv6 address (::ffff:a.b.c.d) reaches the IPv4 address it embeds, so every
// decision is taken on that IPv4 form. Other addresses are returned unchanged.
IpAddress canonical(const IpAddress& ip) noexcept;

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

enum class Group : std::uint8_t {
  kPublic,     // none of the groups below, and not reserved or documentation space
  kPrivate,    // 10/8, 172.16/12, 192.168/16, 100.64/10 (CGNAT), fc00::/7 (ULA)
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
// no named group (0/8, 192.0.2/24, 240/4, ::/128, 2001:db8::/32, anything outside 2000::/3, ...).
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
