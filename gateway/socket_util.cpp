#include "gateway/socket_util.hpp"

#include "common/concat.hpp"

#include <charconv>
#include <cstring>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace airlock::gateway {
namespace {

// From <linux/netfilter_ipv4.h> and <linux/netfilter_ipv6/ip6_tables.h>, which do not mix
// well with the libc headers.
constexpr int kSoOriginalDst = 80;
constexpr int kIp6tSoOriginalDst = 80;

std::optional<SocketAddress> from_sockaddr(const sockaddr_storage& ss) {
  SocketAddress out;
  if (ss.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(ss);
    std::memcpy(out.ip.bytes.data(), &in.sin_addr, 4);
    out.port = ntohs(in.sin_port);
    return out;
  }
  if (ss.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(ss);
    const auto* b = reinterpret_cast<const std::uint8_t*>(&in6.sin6_addr);
    static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(b, kMapped, 12) == 0) {
      std::memcpy(out.ip.bytes.data(), b + 12, 4);  // v4-mapped: keep IPv4 in its own form
    } else {
      out.ip.family = IpAddress::Family::kV6;
      std::memcpy(out.ip.bytes.data(), b, 16);
    }
    out.port = ntohs(in6.sin6_port);
    return out;
  }
  return std::nullopt;
}

}  // namespace

std::string SocketAddress::to_string() const {
  if (ip.is_v4()) return ip.to_string() + ":" + std::to_string(port);
  return concat("[", ip.to_string(), "]:", std::to_string(port));
}

std::optional<SocketAddress> local_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return std::nullopt;
  return from_sockaddr(ss);
}

std::optional<SocketAddress> peer_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return std::nullopt;
  return from_sockaddr(ss);
}

std::optional<SocketAddress> original_destination(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  auto local = local_address(fd);
  if (!local) return std::nullopt;
  if (local->ip.is_v4()) {
    if (::getsockopt(fd, SOL_IP, kSoOriginalDst, &ss, &len) != 0) return std::nullopt;
  } else {
    if (::getsockopt(fd, SOL_IPV6, kIp6tSoOriginalDst, &ss, &len) != 0) return std::nullopt;
  }
  return from_sockaddr(ss);
}

std::optional<SocketAddress> parse_listen_address(std::string_view text) {
  std::size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  std::string_view host = text.substr(0, colon);
  std::string_view port_text = text.substr(colon + 1);
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535) return std::nullopt;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  SocketAddress out;
  out.port = static_cast<std::uint16_t>(port);
  if (host.empty()) {
    out.ip = IpAddress::v4(0, 0, 0, 0);
    return out;
  }
  auto ip = IpAddress::parse(host);
  if (!ip) return std::nullopt;
  out.ip = *ip;
  return out;
}

void set_reset_on_close(int fd) {
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

void ack_now(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}

}  // namespace airlock::gateway
