#pragma once
// An IPv4 or IPv6 address as a value: what the gateway learned from SO_ORIGINAL_DST, what DNS
// answers pin, what policy rules match. IPv4 is kept in its own 4 bytes, not v4-mapped.
#include <array>
#include <compare>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include <arpa/inet.h>

namespace airlock {

struct IpAddress {
  enum class Family : std::uint8_t { kV4, kV6 };
  Family family = Family::kV4;
  std::array<std::uint8_t, 16> bytes{};  // v4 uses the first 4

  static IpAddress v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
    IpAddress ip;
    ip.bytes[0] = a; ip.bytes[1] = b; ip.bytes[2] = c; ip.bytes[3] = d;
    return ip;
  }
  static std::optional<IpAddress> parse(std::string_view text) {
    char buf[INET6_ADDRSTRLEN + 1];
    if (text.size() >= sizeof buf) return std::nullopt;
    std::memcpy(buf, text.data(), text.size());
    buf[text.size()] = '\0';
    IpAddress ip;
    if (inet_pton(AF_INET, buf, ip.bytes.data()) == 1) return ip;
    ip.family = Family::kV6;
    if (inet_pton(AF_INET6, buf, ip.bytes.data()) == 1) return ip;
    return std::nullopt;
  }
  bool is_v4() const noexcept { return family == Family::kV4; }
  std::size_t size() const noexcept { return is_v4() ? 4 : 16; }
  std::string to_string() const {
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(is_v4() ? AF_INET : AF_INET6, bytes.data(), buf, sizeof buf);
    return buf;
  }
  friend auto operator<=>(const IpAddress&, const IpAddress&) = default;
};

struct IpAddressHash {
  std::size_t operator()(const IpAddress& ip) const noexcept {
    std::uint64_t h = 1469598103934665603ull ^ static_cast<std::uint8_t>(ip.family);
    for (std::size_t i = 0; i < ip.size(); ++i) h = (h ^ ip.bytes[i]) * 1099511628211ull;
    return static_cast<std::size_t>(h);
  }
};

}  // namespace airlock
