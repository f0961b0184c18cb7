#include "tls/certificate_authority.hpp"

#include <airlock/errors.hpp>
#include <common/ip_address.hpp>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

namespace airlock::tls {
namespace {

struct BioFree { void operator()(BIO* p) const noexcept { BIO_free(p); } };
using BioPtr = std::unique_ptr<BIO, BioFree>;

[[noreturn]] void fail(const std::string& message) { throw ConfigError(message); }

std::string errno_text() { return std::strerror(errno); }

PkeyPtr generate_p256() { return PkeyPtr(EVP_EC_gen("P-256")); }

bool set_random_serial(X509* cert) {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) return false;
  bytes[0] &= 0x7f;  // positive
  bytes[0] |= 0x01;  // and non-zero, so the encoding keeps all 16 bytes
  BIGNUM* bn = BN_bin2bn(bytes, sizeof bytes, nullptr);
  if (!bn) return false;
  bool ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) != nullptr;
  BN_free(bn);
  return ok;
}

bool add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!ext) return false;
  bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

bool set_validity(X509* cert, std::chrono::system_clock::time_point now, std::chrono::seconds before,
                  std::chrono::seconds after) {
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  return X509_time_adj_ex(X509_getm_notBefore(cert), 0, -static_cast<long>(before.count()), &t) &&
         X509_time_adj_ex(X509_getm_notAfter(cert), 0, static_cast<long>(after.count()), &t);
}

bool set_common_name(X509_NAME* name, std::string_view cn) {
  if (cn.empty() || cn.size() > 64) return true;  // CN is limited to 64; SAN carries the name
  return X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.data()),
                                    static_cast<int>(cn.size()), -1, 0) == 1;
}

std::string read_file(const std::string& path, const char* what) {
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) fail(std::string("cannot read the CA ") + what + " " + quote_for_message(path) + ": " + errno_text());
  std::string out;
  char buf[4096];
  int n;
  while ((n = BIO_read(bio.get(), buf, sizeof buf)) > 0) {
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() > (1u << 20)) fail("the CA " + std::string(what) + " " + quote_for_message(path) + " is too large");
  }
  return out;
}

std::string to_pem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

std::string key_to_pem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  std::string out(data, static_cast<std::size_t>(n));
  OPENSSL_cleanse(data, static_cast<std::size_t>(n));
  return out;
}

// Writes `data` to `path` atomically: a temporary created with O_EXCL and `mode`, then rename.
void write_new_file(const std::string& path, const std::string& data, mode_t mode) {
  std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());  // a leftover from a crash; we hold the lock
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) fail("cannot create " + quote_for_message(tmp) + ": " + errno_text());
  std::size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int saved = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      errno = saved;
      fail("cannot write " + quote_for_message(tmp) + ": " + errno_text());
    }
    done += static_cast<std::size_t>(n);
  }
  ::fsync(fd);
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("cannot rename " + quote_for_message(tmp) + ": " + errno_text());
}

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

void make_dirs(const std::string& dir) {
  if (dir.empty()) fail("the airlock home directory is empty");
  std::size_t pos = 0;
  while (true) {
    pos = dir.find('/', pos + 1);
    std::string part = dir.substr(0, pos);
    if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST)
      fail("cannot create " + quote_for_message(part) + ": " + errno_text());
    if (pos == std::string::npos) break;
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) fail(quote_for_message(dir) + " is not a directory");
}

}  // namespace

std::string default_home() {
  if (const char* h = std::getenv("AIRLOCK_HOME"); h && *h) return h;
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.airlock";
  return "/root/.airlock";
}

CaFiles ca_files(const std::string& home) { return {home + "/ca.pem", home + "/ca-key.pem"}; }

CertificateAuthority CertificateAuthority::load(const std::string& certificate_file, const std::string& key_file) {
  std::string cert_pem = read_file(certificate_file, "certificate");
  std::string key_text = read_file(key_file, "key");
  BioPtr cert_bio(BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())));
  X509Ptr cert(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
  if (!cert) fail("the CA certificate " + quote_for_message(certificate_file) + " is not a PEM certificate");
  BioPtr key_bio(BIO_new_mem_buf(key_text.data(), static_cast<int>(key_text.size())));
  PkeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  OPENSSL_cleanse(key_text.data(), key_text.size());
  if (!key) fail("the CA key " + quote_for_message(key_file) + " is not a PEM private key");
  if (X509_check_private_key(cert.get(), key.get()) != 1)
    fail("the CA key " + quote_for_message(key_file) + " does not match the certificate " + quote_for_message(certificate_file));
  if (X509_check_ca(cert.get()) < 1)
    fail("the certificate " + quote_for_message(certificate_file) + " is not a CA certificate");
  return CertificateAuthority(share(std::move(cert)), share(std::move(key)));
}

CertificateAuthority CertificateAuthority::generate(std::string_view common_name) {
  PkeyPtr key = generate_p256();
  X509Ptr cert(X509_new());
  if (!key || !cert) fail("cannot generate a CA key");
  X509_NAME* name = X509_get_subject_name(cert.get());
  bool ok = X509_set_version(cert.get(), 2) && set_random_serial(cert.get()) &&
            set_validity(cert.get(), std::chrono::system_clock::now(), kLeafBackdate, std::chrono::hours(24 * 3650)) &&
            X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("airlock"), -1, -1, 0) &&
            set_common_name(name, common_name) && X509_set_issuer_name(cert.get(), name) &&
            X509_set_pubkey(cert.get(), key.get()) &&
            add_ext(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0") &&
            add_ext(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign") &&
            add_ext(cert.get(), cert.get(), NID_subject_key_identifier, "hash") &&
            X509_sign(cert.get(), key.get(), EVP_sha256()) > 0;
  if (!ok) fail("cannot generate the CA certificate");
  return CertificateAuthority(share(std::move(cert)), share(std::move(key)));
}

CertificateAuthority CertificateAuthority::load_or_create(const std::string& home) {
  make_dirs(home);
  CaFiles files = ca_files(home);
  std::string lock_path = home + "/ca.lock";
  int lock = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (lock < 0) fail("cannot open " + quote_for_message(lock_path) + ": " + errno_text());
  struct LockGuard {
    int fd;
    ~LockGuard() { ::close(fd); }  // closing releases the flock
  } guard{lock};
  while (::flock(lock, LOCK_EX) != 0) {
    if (errno != EINTR) fail("cannot lock " + quote_for_message(lock_path) + ": " + errno_text());
  }
  bool have_cert = exists(files.certificate), have_key = exists(files.key);
  if (have_cert != have_key)
    fail("incomplete CA in " + quote_for_message(home) + ": " + (have_cert ? files.key : files.certificate) +
         " is missing (restore it, or remove both files to generate a new CA)");
  if (!have_cert) {
    CertificateAuthority ca = generate();
    std::string key_text = ca.key_pem();
    write_new_file(files.key, key_text, 0600);
    OPENSSL_cleanse(key_text.data(), key_text.size());
    write_new_file(files.certificate, ca.certificate_pem(), 0644);
    return ca;
  }
  struct stat st;
  if (::stat(files.key.c_str(), &st) != 0) fail("cannot stat " + quote_for_message(files.key) + ": " + errno_text());
  if ((st.st_mode & 077) != 0)
    fail("the CA key " + quote_for_message(files.key) + " is accessible to other users (chmod 600 it)");
  return load(files.certificate, files.key);
}

std::string CertificateAuthority::certificate_pem() const { return to_pem(certificate_.get()); }
std::string CertificateAuthority::key_pem() const { return key_to_pem(key_.get()); }

LeafMinter::LeafMinter(CertificateAuthority ca, std::size_t cache_capacity)
    : ca_(std::move(ca)), leaf_key_(share(generate_p256())), capacity_(cache_capacity < 1 ? 1 : cache_capacity) {
  if (!leaf_key_) fail("cannot generate the leaf key");
}

std::shared_ptr<X509> LeafMinter::leaf_for(std::string_view name) {
  return leaf_for(name, std::chrono::system_clock::now());
}

std::shared_ptr<X509> LeafMinter::leaf_for(std::string_view name, std::chrono::system_clock::time_point now) {
  std::string key(name);
  {
    std::lock_guard lock(mutex_);
    if (auto it = index_.find(key); it != index_.end()) {
      auto age = now - it->second->minted_at;
      if (age >= std::chrono::seconds(0) && age < kLeafLifetime / 2) {
        lru_.splice(lru_.begin(), lru_, it->second);
        return it->second->leaf;
      }
      lru_.erase(it->second);
      index_.erase(it);
    }
  }
  X509Ptr minted = mint(name, now);  // outside the lock: signing is the slow part
  if (!minted) return nullptr;
  std::shared_ptr<X509> leaf = share(std::move(minted));
  std::lock_guard lock(mutex_);
  ++minted_;
  if (auto it = index_.find(key); it != index_.end()) {  // another thread minted it meanwhile
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->leaf;
  }
  lru_.push_front(Entry{key, leaf, now});
  index_.emplace(std::move(key), lru_.begin());
  while (lru_.size() > capacity_) {
    index_.erase(lru_.back().name);
    lru_.pop_back();
  }
  return leaf;
}

std::size_t LeafMinter::cached() const {
  std::lock_guard lock(mutex_);
  return lru_.size();
}

std::uint64_t LeafMinter::minted() const {
  std::lock_guard lock(mutex_);
  return minted_;
}

X509Ptr LeafMinter::mint(std::string_view name, std::chrono::system_clock::time_point now) const {
  std::optional<IpAddress> ip = IpAddress::parse(name);
  if (!ip) {
    // Only plain DNS names reach a certificate.
    if (name.empty() || name.size() > 253) return nullptr;
    for (char c : name) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
      if (!ok) return nullptr;
    }
  }
  X509Ptr cert(X509_new());
  if (!cert) return nullptr;
  X509_NAME* subject = X509_get_subject_name(cert.get());
  if (!X509_set_version(cert.get(), 2) || !set_random_serial(cert.get()) ||
      !set_validity(cert.get(), now, kLeafBackdate, kLeafLifetime) || !set_common_name(subject, ip ? "" : name) ||
      !X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_.certificate())) ||
      !X509_set_pubkey(cert.get(), leaf_key_.get()))
    return nullptr;

  GENERAL_NAMES* names = sk_GENERAL_NAME_new_null();
  GENERAL_NAME* gen = GENERAL_NAME_new();
  bool ok = names && gen;
  if (ok && ip) {
    ASN1_OCTET_STRING* octets = ASN1_OCTET_STRING_new();
    ok = octets && ASN1_OCTET_STRING_set(octets, ip->bytes.data(), static_cast<int>(ip->size()));
    if (ok) GENERAL_NAME_set0_value(gen, GEN_IPADD, octets);
    else ASN1_OCTET_STRING_free(octets);
  } else if (ok) {
    ASN1_IA5STRING* dns = ASN1_IA5STRING_new();
    ok = dns && ASN1_STRING_set(dns, name.data(), static_cast<int>(name.size()));
    if (ok) GENERAL_NAME_set0_value(gen, GEN_DNS, dns);
    else ASN1_IA5STRING_free(dns);
  }
  if (ok) {
    ok = sk_GENERAL_NAME_push(names, gen) > 0;
    if (ok) gen = nullptr;  // owned by the stack now
  }
  if (ok) ok = X509_add1_ext_i2d(cert.get(), NID_subject_alt_name, names, 0, 0) == 1;
  GENERAL_NAME_free(gen);
  GENERAL_NAMES_free(names);
  if (!ok) return nullptr;

  if (!add_ext(cert.get(), ca_.certificate(), NID_basic_constraints, "critical,CA:FALSE") ||
      !add_ext(cert.get(), ca_.certificate(), NID_key_usage, "critical,digitalSignature") ||
      !add_ext(cert.get(), ca_.certificate(), NID_ext_key_usage, "serverAuth") ||
      !add_ext(cert.get(), ca_.certificate(), NID_subject_key_identifier, "hash") ||
      !add_ext(cert.get(), ca_.certificate(), NID_authority_key_identifier, "keyid:always"))
    return nullptr;
  if (X509_sign(cert.get(), ca_.key(), EVP_sha256()) <= 0) return nullptr;
  return cert;
}

}  // namespace airlock::tls
