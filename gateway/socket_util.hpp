#pragma once
// Socket-level helpers on raw descriptors: the original destination of a redirected
// connection, abortive close, listen address parsing.
#include <common/ip_address.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace airlock::gateway {

struct SocketAddress {
  IpAddress ip;
  std::uint16_t port = 0;
  std::string to_string() const;  // "1.2.3.4:443" or "[2001:db8::1]:443"
  friend bool operator==(const SocketAddress&, const SocketAddress&) = default;
};

// The destination the client connected to before an nftables/iptables redirect
// (SO_ORIGINAL_DST for IPv4, IP6T_SO_ORIGINAL_DST for IPv6). nullopt when unknown.
std::optional<SocketAddress> original_destination(int fd);
std::optional<SocketAddress> local_address(int fd);
std::optional<SocketAddress> peer_address(int fd);

// "127.0.0.1:15001", "[::1]:3128", ":3128" (all IPv4 interfaces) → address; nullopt when malformed.
std::optional<SocketAddress> parse_listen_address(std::string_view text);

// Makes the next close() send a TCP reset (SO_LINGER {1, 0}).
void set_reset_on_close(int fd);

// Sends a pending delayed ACK now (TCP_QUICKACK). A TLS client whose last handshake flight gets
// no answer otherwise waits for it (Nagle) before it sends its request: about 40 ms per connection.
void ack_now(int fd);

}  // namespace airlock::gateway
