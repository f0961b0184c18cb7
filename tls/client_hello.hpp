#pragma once
// Peeks at the first flight of a TCP connection and extracts what the gateway needs from a TLS
// ClientHello (SNI, ALPN) before any handshake happens. Pure: bytes in, a verdict out. The hello
// may span several TLS records and arrive in several segments; callers append bytes and call
// again. Input beyond `max_bytes` is never looked at.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::tls {

inline constexpr std::size_t kMaxClientHelloBytes = 16 * 1024;

enum class PeekStatus : unsigned char {
  kNeedMore,  // a prefix of a ClientHello: read more bytes and call again
  kNotTls,    // the bytes do not start a TLS handshake record
  kInvalid,   // starts like TLS but the hello is malformed or larger than the bound
  kHello,     // a complete ClientHello was parsed
};

struct ClientHelloInfo {
  PeekStatus status = PeekStatus::kNeedMore;
  std::string sni;                 // normalized (lower case, no trailing dot); empty when absent
  std::vector<std::string> alpn;   // protocols offered, in order; empty when no ALPN extension
  std::size_t hello_bytes = 0;     // bytes of `data` holding the records of the hello (kHello)
  const char* error = "";          // why, for kInvalid (a static string, never input bytes)
};

ClientHelloInfo peek_client_hello(std::string_view data, std::size_t max_bytes = kMaxClientHelloBytes);

std::string_view to_string(PeekStatus status) noexcept;

}  // namespace airlock::tls
