#pragma once
// The two TLS sides of an intercepted connection: the guest-facing server context (our leaf,
// HTTP/1.1 only) and the upstream client contexts that verify the real server.
#include "tls/openssl_types.hpp"

#include <airlock/secret.hpp>
#include <common/ip_address.hpp>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::tls {

inline constexpr std::string_view kAlpnH2 = "h2";
inline constexpr std::string_view kAlpnHttp11 = "http/1.1";

// A server context for the guest side: TLS 1.2–1.3, no renegotiation, no session tickets, and
// ALPN answered with the protocol the upstream negotiated (answer_guest_alpn; http/1.1 when none
// was set). The certificate and key are set per connection (SSL_use_certificate) from the
// LeafMinter.
SslCtxPtr make_guest_context();

// ALPN follows the upstream (issue 13): the gateway connects and verifies upstream before it
// completes the guest's handshake, so it offers the upstream what the guest offered (h2 and
// http/1.1 only, in the guest's order; http/1.1 always among them) and answers the guest with
// what the upstream chose. Exact per connection, no per-host memory a guest could poison or that
// goes stale.
std::vector<std::string> upstream_alpn_offer(const std::vector<std::string>& guest_offer);
bool offer_alpn(SSL* ssl, const std::vector<std::string>& protocols);  // client side; false on error
std::string negotiated_alpn(const SSL* ssl);                           // empty when none
// Guest side, before its handshake: answer ALPN with `protocol` ("h2" or "http/1.1"). A guest
// offering h2 but not that protocol gets a no_application_protocol alert.
void answer_guest_alpn(SSL* guest, std::string_view protocol);

// Builds an SSL for the guest side of one connection, presenting `leaf` with `key`.
SslPtr new_guest_session(SSL_CTX* context, X509* leaf, EVP_PKEY* key);

inline constexpr const char* kSystemRootsDir = "/etc/ssl/certs";

// Client contexts that verify upstream servers: the system roots plus the configured CA files,
// global ones for every host and per-pattern ones for the hosts that match (the first matching
// pattern, in configuration order, chooses the context). TLS 1.2–1.3, ALPN `http/1.1`.
class UpstreamVerifier {
 public:
  // Throws ConfigError when a CA file cannot be read or holds no certificate.
  // `system_roots_dir` empty: no system roots (tests).
  explicit UpstreamVerifier(const std::vector<UpstreamCa>& cas, std::string system_roots_dir = kSystemRootsDir);

  ~UpstreamVerifier();
  UpstreamVerifier(const UpstreamVerifier&) = delete;
  UpstreamVerifier& operator=(const UpstreamVerifier&) = delete;

  // The context for `sni`, its system roots loaded (on the first call for that context).
  SSL_CTX* context_for(std::string_view sni) const;
  // A client SSL for a connection to `destination`: sends `sni` and verifies the chain and that
  // the certificate names `sni` (or, with no SNI, the destination IP). nullptr on OpenSSL failure.
  // A session from an earlier verified handshake with the same SNI, address and port is offered
  // for resumption (sessions are only kept from handshakes that passed verification).
  SslPtr new_session(std::string_view sni, const IpAddress& destination, std::uint16_t port = 0) const;
  std::size_t cached_sessions() const;

  struct SessionCache;

 private:
  // The system roots go into a context when it is first used, not at construction: parsing the
  // system bundle costs tens of milliseconds with OpenSSL 3, which every `airlock run` paid at
  // start even when nothing connected upstream.
  struct VerifyContext {
    SslCtxPtr context;
    std::unique_ptr<std::once_flag> roots_loaded = std::make_unique<std::once_flag>();
  };
  struct PatternContext {
    HostPattern pattern;
    VerifyContext verify;
  };
  VerifyContext make_context(const std::vector<std::string>& ca_files) const;
  SSL_CTX* with_system_roots(const VerifyContext& verify) const;
  std::string system_roots_dir_;
  VerifyContext global_;
  std::vector<PatternContext> per_pattern_;
  std::unique_ptr<SessionCache> sessions_;
};

// The OpenSSL error queue as one line (and cleared), for logs. Never holds payload bytes.
std::string openssl_error_text();

}  // namespace airlock::tls
