#include "tls/contexts.hpp"

#include "tls/record_buffers.hpp"

#include <airlock/errors.hpp>

#include <openssl/err.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

namespace airlock::tls {
namespace {

constexpr unsigned char kHttp11Alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

int guest_protocol_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// The guest's ALPN offer answered with the protocol the upstream negotiated (http/1.1 when none
// was set). An offer without it: a guest offering h2 but not http/1.1 (the upstream speaks only
// HTTP/1.1) gets a no_application_protocol alert, a clear failure instead of a connection the
// guest would then talk HTTP/2 on; any other offer gets no ALPN answer (HTTP/1.1 or give up).
int select_protocol(SSL* ssl, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                    unsigned int inlen, void*) {
  const auto* wanted = static_cast<const char*>(SSL_get_ex_data(ssl, guest_protocol_index()));
  const std::string_view want = wanted != nullptr ? std::string_view(wanted) : kAlpnHttp11;
  bool offered_h2 = false;
  unsigned int i = 0;
  while (i < inlen) {
    unsigned int len = in[i];
    if (len == 0 || i + 1 + len > inlen) break;
    const std::string_view p(reinterpret_cast<const char*>(in + i + 1), len);
    if (p == want) {
      *out = in + i + 1;
      *outlen = static_cast<unsigned char>(len);
      return SSL_TLSEXT_ERR_OK;
    }
    offered_h2 = offered_h2 || p == kAlpnH2;
    i += 1 + len;
  }
  if (offered_h2) return SSL_TLSEXT_ERR_ALERT_FATAL;
  return SSL_TLSEXT_ERR_NOACK;
}

void require_ca_file(const std::string& file) {
  BIO* bio = BIO_new_file(file.c_str(), "r");
  if (!bio) throw ConfigError("cannot read the upstream CA file " + quote_for_message(file));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (!cert) throw ConfigError("the upstream CA file " + quote_for_message(file) + " holds no PEM certificate");
  X509_free(cert);
}

}  // namespace

// Client sessions by "context|sni|ip|port", bounded; filled by OpenSSL's new-session callback.
struct UpstreamVerifier::SessionCache {
  static constexpr std::size_t kMaxSessions = 4096;
  mutable std::mutex mutex;
  std::unordered_map<std::string, SSL_SESSION*> sessions;
  ~SessionCache() { clear(); }
  void clear() {
    for (auto& [key, session] : sessions) SSL_SESSION_free(session);
    sessions.clear();
  }
};

namespace {

struct SessionKey {
  UpstreamVerifier::SessionCache* cache;
  std::string key;
};

int session_key_index() {
  static const int index = SSL_get_ex_new_index(
      0, nullptr, nullptr, nullptr,
      [](void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) { delete static_cast<SessionKey*>(ptr); });
  return index;
}

// Called after a handshake that passed verification (TLS 1.2) or when a TLS 1.3 ticket arrives
// after one. A copy is kept: OpenSSL marks a connection's own session unresumable when the
// connection ends without close_notify, which is how many upstream connections end.
int store_session(SSL* ssl, SSL_SESSION* original) {
  auto* key = static_cast<SessionKey*>(SSL_get_ex_data(ssl, session_key_index()));
  if (!key || SSL_get_verify_result(ssl) != X509_V_OK) return 0;
  SSL_SESSION* session = SSL_SESSION_dup(original);
  if (!session) return 0;
  std::lock_guard lock(key->cache->mutex);
  auto& sessions = key->cache->sessions;
  if (sessions.size() >= UpstreamVerifier::SessionCache::kMaxSessions && !sessions.count(key->key)) key->cache->clear();
  auto [it, inserted] = sessions.emplace(key->key, session);
  if (!inserted) {
    SSL_SESSION_free(it->second);
    it->second = session;
  }
  return 0;  // the original stays with OpenSSL
}

}  // namespace

std::string openssl_error_text() {
  std::string out;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

SslCtxPtr make_guest_context() {
  // Links tls/record_buffers.cpp into every program that intercepts TLS: its static initializer
  // installs OpenSSL's record-buffer pool before OpenSSL's first allocation.
  static_cast<void>(record_buffer_pool_installed());
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) return nullptr;
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_num_tickets(ctx.get(), 0);
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  SSL_CTX_set_alpn_select_cb(ctx.get(), select_protocol, nullptr);
  return ctx;
}

SslPtr new_guest_session(SSL_CTX* context, X509* leaf, EVP_PKEY* key) {
  SslPtr ssl(SSL_new(context));
  if (!ssl) return nullptr;
  if (SSL_use_certificate(ssl.get(), leaf) != 1 || SSL_use_PrivateKey(ssl.get(), key) != 1) return nullptr;
  SSL_set_accept_state(ssl.get());
  return ssl;
}

UpstreamVerifier::~UpstreamVerifier() = default;

std::size_t UpstreamVerifier::cached_sessions() const {
  std::lock_guard lock(sessions_->mutex);
  return sessions_->sessions.size();
}

UpstreamVerifier::UpstreamVerifier(const std::vector<UpstreamCa>& cas, std::string system_roots_dir)
    : system_roots_dir_(std::move(system_roots_dir)), sessions_(std::make_unique<SessionCache>()) {
  std::vector<std::string> global;
  for (const auto& ca : cas) {
    require_ca_file(ca.pem_file);
    if (!ca.for_hosts) global.push_back(ca.pem_file);
  }
  global_ = make_context(global);
  for (const auto& ca : cas) {
    if (!ca.for_hosts) continue;
    bool known = false;
    for (const auto& pc : per_pattern_) known = known || pc.pattern == *ca.for_hosts;
    if (known) continue;
    std::vector<std::string> files = global;
    for (const auto& other : cas)
      if (other.for_hosts && *other.for_hosts == *ca.for_hosts) files.push_back(other.pem_file);
    per_pattern_.push_back({*ca.for_hosts, make_context(files)});
  }
}

UpstreamVerifier::VerifyContext UpstreamVerifier::make_context(const std::vector<std::string>& ca_files) const {
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) throw ConfigError("cannot create a TLS context: " + openssl_error_text());
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  for (const auto& file : ca_files) {
    if (SSL_CTX_load_verify_file(ctx.get(), file.c_str()) != 1)
      throw ConfigError("cannot load the upstream CA file " + quote_for_message(file) + ": " + openssl_error_text());
  }
  SSL_CTX_set_alpn_protos(ctx.get(), kHttp11Alpn, sizeof kHttp11Alpn);
  // Resumption saves the upstream handshake most of its cost; the cache is ours (keyed by SNI,
  // address and port), never OpenSSL's internal one.
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx.get(), store_session);
  return {std::move(ctx)};
}

SSL_CTX* UpstreamVerifier::with_system_roots(const VerifyContext& verify) const {
  SSL_CTX* ctx = verify.context.get();
  std::call_once(*verify.roots_loaded, [&] {
    if (system_roots_dir_.empty()) return;
    // The configured roots only (on Debian also OpenSSL's defaults): loading the default paths too
    // parsed the same bundle twice per context.
    std::string bundle = system_roots_dir_ + "/ca-certificates.crt";
    if (BIO* probe = BIO_new_file(bundle.c_str(), "r")) {
      BIO_free(probe);
      SSL_CTX_load_verify_file(ctx, bundle.c_str());
    }
    SSL_CTX_load_verify_dir(ctx, system_roots_dir_.c_str());
    ERR_clear_error();  // a missing system bundle is not an error; verification just has fewer roots
  });
  return ctx;
}

SSL_CTX* UpstreamVerifier::context_for(std::string_view sni) const {
  if (!sni.empty())
    for (const auto& pc : per_pattern_)
      if (pc.pattern.matches(sni)) return with_system_roots(pc.verify);
  return with_system_roots(global_);
}

SslPtr UpstreamVerifier::new_session(std::string_view sni, const IpAddress& destination, std::uint16_t port) const {
  SSL_CTX* ctx = context_for(sni);
  SslPtr ssl(SSL_new(ctx));
  if (!ssl) return nullptr;
  auto* key = new SessionKey{sessions_.get(), std::to_string(reinterpret_cast<std::uintptr_t>(ctx)) + "|" +
                                                  std::string(sni) + "|" + destination.to_string() + "|" +
                                                  std::to_string(port)};
  if (SSL_set_ex_data(ssl.get(), session_key_index(), key) != 1) {
    delete key;
    return nullptr;
  }
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl.get());
  std::string name(sni);
  if (!name.empty() && IpAddress::parse(name)) {
    // An IP literal in SNI is not a host name (RFC 6066 §3): verify it as an address, send none.
    if (X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str()) != 1) return nullptr;
  } else if (!name.empty()) {
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size()) != 1) return nullptr;
    if (SSL_set_tlsext_host_name(ssl.get(), name.c_str()) != 1) return nullptr;
  } else {
    if (X509_VERIFY_PARAM_set1_ip_asc(param, destination.to_string().c_str()) != 1) return nullptr;
  }
  SSL_set_verify(ssl.get(), SSL_VERIFY_PEER, nullptr);
  SSL_set_connect_state(ssl.get());
  {
    std::lock_guard lock(sessions_->mutex);
    auto it = sessions_->sessions.find(key->key);
    if (it != sessions_->sessions.end() && SSL_SESSION_is_resumable(it->second)) SSL_set_session(ssl.get(), it->second);
  }
  return ssl;
}

std::vector<std::string> upstream_alpn_offer(const std::vector<std::string>& guest_offer) {
  std::vector<std::string> out;
  for (const std::string& p : guest_offer) {
    if ((p == kAlpnH2 || p == kAlpnHttp11) && std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
  }
  // h2 only: http/1.1 after it, so an HTTP/1-only upstream completes its handshake and the guest
  // learns why (select_protocol) instead of the gateway failing on the upstream's alert.
  if (std::find(out.begin(), out.end(), kAlpnHttp11) == out.end()) out.emplace_back(kAlpnHttp11);
  return out;
}

bool offer_alpn(SSL* ssl, const std::vector<std::string>& protocols) {
  std::string wire;
  for (const std::string& p : protocols) {
    if (p.empty() || p.size() > 255) return false;
    wire.push_back(static_cast<char>(p.size()));
    wire += p;
  }
  return SSL_set_alpn_protos(ssl, reinterpret_cast<const unsigned char*>(wire.data()),
                             static_cast<unsigned int>(wire.size())) == 0;
}

std::string negotiated_alpn(const SSL* ssl) {
  const unsigned char* data = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl, &data, &len);
  return data == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(data), len);
}

void answer_guest_alpn(SSL* guest, std::string_view protocol) {
  // Static strings only: the SSL keeps the pointer.
  static constexpr char kH2[] = "h2";
  static constexpr char kHttp11[] = "http/1.1";
  SSL_set_ex_data(guest, guest_protocol_index(), const_cast<char*>(protocol == kAlpnH2 ? kH2 : kHttp11));
}

}  // namespace airlock::tls
