#pragma once
// The first request on the explicit proxy listener: `CONNECT host:port` (a tunnel) or an
// absolute-form plain HTTP request (`GET http://host[:port]/path HTTP/1.1`). Pure.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace airlock::gateway {

inline constexpr std::size_t kMaxProxyHead = 8 * 1024;

struct ProxyRequest {
  enum class Kind : std::uint8_t { kNeedMore, kConnect, kAbsoluteHttp, kBad };
  Kind kind = Kind::kNeedMore;
  std::string host;          // normalized (lower case, no trailing dot, no IPv6 brackets)
  std::uint16_t port = 0;
  std::size_t head_bytes = 0;  // kConnect: bytes of the CONNECT head (what follows is the tunnel)
  const char* error = "";      // kBad: why (static text, never input)
};

// Looks at the bytes received so far. kNeedMore until the head is complete (CONNECT) or the
// request line is (absolute-form); kBad past kMaxProxyHead or for anything else.
ProxyRequest parse_proxy_request(std::string_view data);

// Splits `host:port` / `[v6]:port` (port required for CONNECT, default `default_port` otherwise).
bool split_authority(std::string_view authority, std::uint16_t default_port, std::string& host, std::uint16_t& port);

// The authority of an absolute-form `http://host[:port]/...` target; false for any other form.
bool absolute_http_authority(std::string_view target, std::string& host, std::uint16_t& port);

// The first Host header's host part in a complete request head inside `data` (for the
// standalone pin source on plain HTTP); empty when absent or the head is incomplete.
std::string host_header(std::string_view data);

// Whether `data` starts like an HTTP/1 request line: a method token of capital letters
// followed by a space.
bool looks_like_http_request(std::string_view data);

}  // namespace airlock::gateway
