#pragma once
// Owning handles for the OpenSSL objects the tls and gateway modules keep.
#include <memory>

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

namespace airlock::tls {

struct X509Free { void operator()(X509* p) const noexcept { X509_free(p); } };
struct PkeyFree { void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); } };
struct SslCtxFree { void operator()(SSL_CTX* p) const noexcept { SSL_CTX_free(p); } };
struct SslFree { void operator()(SSL* p) const noexcept { SSL_free(p); } };

using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;
using SslPtr = std::unique_ptr<SSL, SslFree>;

// Shared, reference-counted views (X509_up_ref / EVP_PKEY_up_ref), for caches handed out across threads.
inline std::shared_ptr<X509> share(X509Ptr cert) { return std::shared_ptr<X509>(cert.release(), X509Free{}); }
inline std::shared_ptr<EVP_PKEY> share(PkeyPtr key) { return std::shared_ptr<EVP_PKEY>(key.release(), PkeyFree{}); }

}  // namespace airlock::tls
