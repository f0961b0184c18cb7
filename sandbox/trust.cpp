// The guest's trust stores: every runtime finds the gateway's CA (and --ca-cert) where it looks
// by default, without a change to the program. OpenSSL-based clients (curl, Python, Ruby, PHP,
// git, .NET, Go with SSL_CERT_FILE) read the PEM bundle or the hashed directory; Java reads a
// PKCS12 trust store; the CA variables of ca_env_vars() cover runtimes with their own bundles
// (Node, Deno, gRPC, requests/certifi, pip, cargo, AWS, gcloud, ...).
#include "sandbox/internal.hpp"

#include "tls/trust_store.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <sys/stat.h>

#include <cstdio>
#include <memory>

namespace airlock::sandbox::detail {
namespace {

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;

// Every certificate of a PEM text; what does not parse is skipped.
std::vector<X509Ptr> parse_certificates(const std::string& pem) {
  std::vector<X509Ptr> out;
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())),
                                               &BIO_free);
  if (!bio) return out;
  for (;;) {
    X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
    if (cert == nullptr) break;
    out.emplace_back(cert);
  }
  ERR_clear_error();  // the end of the text reads as an error
  return out;
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

}  // namespace

SystemTrust read_system_trust(const std::string& lower_root) {
  SystemTrust system;
  system.lower_root = lower_root;
  system.bundle = read_small_file((lower_root == "/" ? "" : lower_root) + kGuestCaBundle).value_or("");
  tls::add_trusted_certificates(system.java, system.bundle);
  return system;
}

std::vector<TrustFile> guest_trust_files(const SystemTrust& system, const std::string& ca_pem) {
  std::vector<TrustFile> files;
  if (ca_pem.empty()) return files;
  const std::string prefix = system.lower_root == "/" ? "" : system.lower_root;
  std::string bundle = system.bundle;
  if (!bundle.empty() && bundle.back() != '\n') bundle += '\n';
  bundle += "# airlock gateway CA\n";
  bundle += ca_pem;
  if (bundle.back() != '\n') bundle += '\n';
  files.push_back({kGuestCaBundle, bundle});
  files.push_back({kGuestCaBundleRhel, bundle});

  // OpenSSL's hashed directory (-CApath, SSL_CERT_DIR, X509_LOOKUP_hash_dir): SUBJECTHASH.N.
  for (const X509Ptr& cert : parse_certificates(ca_pem)) {
    char name[32];
    const unsigned long hash = X509_subject_name_hash(cert.get());
    for (int n = 0; n < 100; ++n) {
      std::snprintf(name, sizeof name, "/etc/ssl/certs/%08lx.%d", hash, n);
      if (exists(prefix + name)) continue;
      BIO* mem = BIO_new(BIO_s_mem());
      if (mem != nullptr && PEM_write_bio_X509(mem, cert.get()) == 1) {
        char* data = nullptr;
        const long size = BIO_get_mem_data(mem, &data);
        files.push_back({name, std::string(data, static_cast<std::size_t>(size))});
      }
      BIO_free(mem);
      break;
    }
  }

  // Java: Debian's and Fedora's JDKs read these paths; JAVA_TOOL_OPTIONS points every other JVM
  // at the first.
  // (No store when no certificate decodes: a --rootfs without a bundle and a broken --ca-cert.)
  tls::TrustedBags java = system.java;
  tls::add_trusted_certificates(java, ca_pem);
  const std::string store = tls::java_trust_store(java);
  if (store.empty()) return files;
  files.push_back({kGuestJavaTrustStore, store});
  constexpr const char* kFedoraJava = "/etc/pki/ca-trust/extracted/java/cacerts";
  if (exists(prefix + kFedoraJava)) files.push_back({kFedoraJava, store});
  return files;
}

}  // namespace airlock::sandbox::detail
