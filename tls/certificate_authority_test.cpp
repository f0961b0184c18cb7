#include "tls/certificate_authority.hpp"

#include "common/concat.hpp"

#include <airlock/errors.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include <sys/stat.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

namespace airlock::tls {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/airlock-tls-test-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
};

mode_t mode_of(const fs::path& p) {
  struct stat st;
  ::stat(p.c_str(), &st);
  return st.st_mode & 07777;
}

// Verifies `leaf` against `ca` alone, at `when` (0: now).
bool verifies(X509* leaf, X509* ca, time_t when = 0) {
  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, ca);
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, leaf, nullptr);
  if (when) X509_STORE_CTX_set_time(ctx, 0, when);
  bool ok = X509_verify_cert(ctx) == 1;
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  return ok;
}

// Seconds from `now` to the certificate time `t`.
long seconds_from(const ASN1_TIME* t, std::chrono::system_clock::time_point now) {
  ASN1_TIME* base = ASN1_TIME_set(nullptr, std::chrono::system_clock::to_time_t(now));
  int days = 0, secs = 0;
  ASN1_TIME_diff(&days, &secs, base, t);
  ASN1_TIME_free(base);
  return days * 86400L + secs;
}

TEST(CertificateAuthority, GeneratedCaIsAP256Ca) {
  CertificateAuthority ca = CertificateAuthority::generate();
  EXPECT_EQ(X509_check_ca(ca.certificate()), 1);
  EXPECT_EQ(EVP_PKEY_get_base_id(ca.key()), EVP_PKEY_EC);
  EXPECT_EQ(EVP_PKEY_get_bits(ca.key()), 256);
  EXPECT_TRUE(verifies(ca.certificate(), ca.certificate()));
  EXPECT_NE(ca.certificate_pem().find("BEGIN CERTIFICATE"), std::string::npos);
}

TEST(CertificateAuthority, LoadOrCreateGeneratesOnceWithPrivateModes) {
  TempDir tmp;
  fs::path home = tmp.path / "nested" / "home";
  CertificateAuthority first = CertificateAuthority::load_or_create(home);
  CaFiles files = ca_files(home);
  EXPECT_EQ(mode_of(home), 0700u);
  EXPECT_EQ(mode_of(files.key), 0600u);
  EXPECT_TRUE(fs::exists(files.certificate));
  CertificateAuthority second = CertificateAuthority::load_or_create(home);
  EXPECT_EQ(first.certificate_pem(), second.certificate_pem());
  EXPECT_EQ(EVP_PKEY_eq(first.key(), second.key()), 1);
}

TEST(CertificateAuthority, LoadOrCreateIgnoresUmaskForTheKey) {
  TempDir tmp;
  mode_t old = ::umask(0);
  CertificateAuthority::load_or_create(tmp.path / "h");
  ::umask(old);
  EXPECT_EQ(mode_of(ca_files(tmp.path / "h").key), 0600u);
}

TEST(CertificateAuthority, ConcurrentCallersShareOneCa) {
  TempDir tmp;
  std::string home = tmp.path / "h";
  std::vector<std::string> pems(6);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < pems.size(); ++i)
    threads.emplace_back([&, i] { pems[i] = CertificateAuthority::load_or_create(home).certificate_pem(); });
  for (auto& t : threads) t.join();
  for (const auto& p : pems) EXPECT_EQ(p, pems[0]);
}

TEST(CertificateAuthority, RefusesAnIncompleteOrExposedCa) {
  TempDir tmp;
  std::string home = tmp.path / "h";
  CertificateAuthority::load_or_create(home);
  CaFiles files = ca_files(home);
  ::chmod(files.key.c_str(), 0644);
  EXPECT_THROW(CertificateAuthority::load_or_create(home), ConfigError);
  ::chmod(files.key.c_str(), 0600);
  fs::remove(files.certificate);
  EXPECT_THROW(CertificateAuthority::load_or_create(home), ConfigError);
}

TEST(CertificateAuthority, LoadChecksFilesAndPairing) {
  TempDir tmp;
  CertificateAuthority a = CertificateAuthority::generate();
  CertificateAuthority b = CertificateAuthority::generate();
  auto write = [&](const char* name, const std::string& text) {
    std::ofstream(tmp.path / name) << text;
    return (tmp.path / name).string();
  };
  std::string cert_a = write("a.pem", a.certificate_pem());
  std::string key_a = write("a-key.pem", a.key_pem());
  std::string key_b = write("b-key.pem", b.key_pem());
  EXPECT_EQ(CertificateAuthority::load(cert_a, key_a).certificate_pem(), a.certificate_pem());
  EXPECT_THROW(CertificateAuthority::load(cert_a, key_b), ConfigError);
  EXPECT_THROW(CertificateAuthority::load(cert_a, (tmp.path / "missing").string()), ConfigError);
  EXPECT_THROW(CertificateAuthority::load(key_a, key_a), ConfigError);
  // A leaf is not a CA.
  LeafMinter minter(CertificateAuthority::generate());
  auto leaf = minter.leaf_for("x.example");
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, leaf.get());
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string leaf_pem = write("leaf.pem", std::string(data, static_cast<std::size_t>(n)));
  BIO_free(bio);
  BIO* kbio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(kbio, minter.leaf_key(), nullptr, nullptr, 0, nullptr, nullptr);
  n = BIO_get_mem_data(kbio, &data);
  std::string leaf_key = write("leaf-key.pem", std::string(data, static_cast<std::size_t>(n)));
  BIO_free(kbio);
  EXPECT_THROW(CertificateAuthority::load(leaf_pem, leaf_key), ConfigError);
}

TEST(LeafMinter, LeafForADnsName) {
  CertificateAuthority ca = CertificateAuthority::generate();
  LeafMinter minter(CertificateAuthority::generate());
  LeafMinter own(std::move(ca));
  auto now = std::chrono::system_clock::now();
  auto leaf = own.leaf_for("api.example.com", now);
  ASSERT_TRUE(leaf);
  EXPECT_TRUE(verifies(leaf.get(), own.ca().certificate()));
  EXPECT_FALSE(verifies(leaf.get(), minter.ca().certificate()));
  EXPECT_EQ(X509_check_host(leaf.get(), "api.example.com", 0, 0, nullptr), 1);
  EXPECT_NE(X509_check_host(leaf.get(), "other.example.com", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ca(leaf.get()), 0);
  EXPECT_EQ(X509_get_extended_key_usage(leaf.get()) & XKU_SSL_SERVER, XKU_SSL_SERVER);
  EXPECT_EQ(EVP_PKEY_eq(X509_get0_pubkey(leaf.get()), own.leaf_key()), 1);
  EXPECT_EQ(seconds_from(X509_get0_notBefore(leaf.get()), now), -3600);
  EXPECT_EQ(seconds_from(X509_get0_notAfter(leaf.get()), now), 24 * 3600);
  // Still valid 30 minutes "before" now (clock skew), not after 24 h.
  time_t t = std::chrono::system_clock::to_time_t(now);
  EXPECT_TRUE(verifies(leaf.get(), own.ca().certificate(), t - 1800));
  EXPECT_FALSE(verifies(leaf.get(), own.ca().certificate(), t + 24 * 3600 + 60));
}

TEST(LeafMinter, LeafForAnIpHasAnIpSan) {
  LeafMinter minter(CertificateAuthority::generate());
  auto v4 = minter.leaf_for("203.0.113.7");
  ASSERT_TRUE(v4);
  EXPECT_EQ(X509_check_ip_asc(v4.get(), "203.0.113.7", 0), 1);
  EXPECT_NE(X509_check_ip_asc(v4.get(), "203.0.113.8", 0), 1);
  EXPECT_NE(X509_check_host(v4.get(), "203.0.113.7", 0, 0, nullptr), 1);
  auto v6 = minter.leaf_for("2001:db8::5");
  ASSERT_TRUE(v6);
  EXPECT_EQ(X509_check_ip_asc(v6.get(), "2001:db8::5", 0), 1);
}

TEST(LeafMinter, RefusesNamesThatAreNotHostNames) {
  LeafMinter minter(CertificateAuthority::generate());
  EXPECT_FALSE(minter.leaf_for(""));
  EXPECT_FALSE(minter.leaf_for("a b.example"));
  EXPECT_FALSE(minter.leaf_for("a.example,DNS:evil.example"));
  EXPECT_FALSE(minter.leaf_for(std::string("a\0.example", 10)));
  EXPECT_FALSE(minter.leaf_for(std::string(254, 'a')));
}

TEST(LeafMinter, CachesLruAndRemintsOldLeaves) {
  LeafMinter minter(CertificateAuthority::generate(), 3);
  auto now = std::chrono::system_clock::now();
  auto a = minter.leaf_for("a.example", now);
  EXPECT_EQ(minter.leaf_for("a.example", now), a);
  EXPECT_EQ(minter.minted(), 1u);
  minter.leaf_for("b.example", now);
  minter.leaf_for("c.example", now);
  minter.leaf_for("a.example", now);  // a is now the most recent
  minter.leaf_for("d.example", now);  // evicts b
  EXPECT_EQ(minter.cached(), 3u);
  EXPECT_EQ(minter.leaf_for("a.example", now), a);
  EXPECT_EQ(minter.minted(), 4u);
  minter.leaf_for("b.example", now);
  EXPECT_EQ(minter.minted(), 5u);
  auto later = minter.leaf_for("a.example", now + std::chrono::hours(13));
  EXPECT_NE(later, a);
  EXPECT_EQ(minter.minted(), 6u);
}

TEST(LeafMinter, HoldsAThousandNamesAndIsThreadSafe) {
  LeafMinter minter(CertificateAuthority::generate());
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i)
        if (!minter.leaf_for(concat("h", std::to_string(i), ".example"))) ++failures;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(minter.cached(), 1000u);
  std::uint64_t minted = minter.minted();
  EXPECT_GE(minted, 1000u);
  for (int i = 0; i < 1000; ++i) minter.leaf_for(concat("h", std::to_string(i), ".example"));
  EXPECT_EQ(minter.minted(), minted);  // every one was still cached
}

}  // namespace
}  // namespace airlock::tls
