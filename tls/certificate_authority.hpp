#pragma once
// The local certificate authority the guest trusts, and the leaf certificates minted from it for
// each intercepted name. Loading and generating are control path (throw ConfigError); minting is
// data path (returns nullptr on failure).
#include "tls/openssl_types.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace airlock::tls {

// airlock's state directory: $AIRLOCK_HOME if set, else $HOME/.airlock.
std::string default_home();

struct CaFiles {
  std::string certificate;  // <home>/ca.pem (PEM certificate, what the guest trusts)
  std::string key;          // <home>/ca-key.pem (PEM private key, mode 0600)
};
CaFiles ca_files(const std::string& home);

class CertificateAuthority {
 public:
  // Loads a CA from PEM files. Throws ConfigError when a file is unreadable, the key does not
  // match the certificate, or the certificate is not a CA.
  static CertificateAuthority load(const std::string& certificate_file, const std::string& key_file);
  // Loads the CA kept under `home`, generating it (ECDSA P-256) the first time. The directory is
  // created with mode 0700 and the key file with mode 0600 (O_EXCL); concurrent callers are
  // serialized by a lock file, so the CA is generated once. Throws ConfigError.
  static CertificateAuthority load_or_create(const std::string& home);
  // A fresh CA in memory only (tests, throwaway gateways).
  static CertificateAuthority generate(std::string_view common_name = "airlock local CA");

  X509* certificate() const noexcept { return certificate_.get(); }
  EVP_PKEY* key() const noexcept { return key_.get(); }
  std::string certificate_pem() const;
  std::string key_pem() const;

 private:
  CertificateAuthority(std::shared_ptr<X509> certificate, std::shared_ptr<EVP_PKEY> key)
      : certificate_(std::move(certificate)), key_(std::move(key)) {}
  std::shared_ptr<X509> certificate_;
  std::shared_ptr<EVP_PKEY> key_;
};

inline constexpr std::chrono::hours kLeafLifetime{24};
inline constexpr std::chrono::hours kLeafBackdate{1};
inline constexpr std::size_t kDefaultLeafCacheCapacity = 4096;

// Mints leaf certificates for intercepted names, all with one shared P-256 key, and keeps the
// most recently used ones (LRU). Thread-safe.
class LeafMinter {
 public:
  explicit LeafMinter(CertificateAuthority ca, std::size_t cache_capacity = kDefaultLeafCacheCapacity);

  // The leaf for `name`: a DNS name (SAN dNSName) or an IP literal (SAN iPAddress). Valid from
  // now − 1 h to now + 24 h; a cached leaf older than 12 h is minted again. nullptr when the
  // name is not a valid host name or IP literal, or OpenSSL fails.
  std::shared_ptr<X509> leaf_for(std::string_view name);
  std::shared_ptr<X509> leaf_for(std::string_view name, std::chrono::system_clock::time_point now);

  EVP_PKEY* leaf_key() const noexcept { return leaf_key_.get(); }
  const CertificateAuthority& ca() const noexcept { return ca_; }
  std::size_t cached() const;
  std::uint64_t minted() const;

 private:
  struct Entry {
    std::string name;
    std::shared_ptr<X509> leaf;
    std::chrono::system_clock::time_point minted_at;
  };
  X509Ptr mint(std::string_view name, std::chrono::system_clock::time_point now) const;

  CertificateAuthority ca_;
  std::shared_ptr<EVP_PKEY> leaf_key_;
  std::size_t capacity_;
  mutable std::mutex mutex_;
  std::list<Entry> lru_;  // front: most recently used
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
  std::uint64_t minted_ = 0;
};

}  // namespace airlock::tls
