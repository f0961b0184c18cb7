// The guest's trust files: the bundle, the hashed-directory entry, and a Java trust store that
// holds every certificate as a trusted entry.
#include "sandbox/internal.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace airlock::sandbox::detail {
namespace {

using ::testing::HasSubstr;

std::string make_ca_pem(const char* cn) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  X509_set_pubkey(cert, key);
  X509_sign(cert, key, EVP_sha256());
  BIO* mem = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(mem, cert);
  char* data = nullptr;
  const long size = BIO_get_mem_data(mem, &data);
  std::string pem(data, static_cast<std::size_t>(size));
  BIO_free(mem);
  X509_free(cert);
  EVP_PKEY_free(key);
  return pem;
}

TEST(JavaTrustStore, HoldsEveryCertificateAsATrustedEntry) {
  const std::string bundle = make_ca_pem("one") + make_ca_pem("two") + "not a certificate\n" + make_ca_pem("three");
  const std::string der = java_trust_store(bundle);
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  PKCS12* p12 = d2i_PKCS12(nullptr, &p, static_cast<long>(der.size()));
  ASSERT_NE(p12, nullptr);
  EXPECT_EQ(PKCS12_mac_present(p12), 0);
  STACK_OF(PKCS7)* safes = PKCS12_unpack_authsafes(p12);
  ASSERT_NE(safes, nullptr);
  ASSERT_EQ(sk_PKCS7_num(safes), 1);
  STACK_OF(PKCS12_SAFEBAG)* bags = PKCS12_unpack_p7data(sk_PKCS7_value(safes, 0));
  ASSERT_NE(bags, nullptr);
  ASSERT_EQ(sk_PKCS12_SAFEBAG_num(bags), 3);
  const ASN1_OBJECT* trusted_usage = OBJ_txt2obj("2.16.840.1.113894.746875.1.1", 1);
  for (int i = 0; i < 3; ++i) {
    const PKCS12_SAFEBAG* bag = sk_PKCS12_SAFEBAG_value(bags, i);
    EXPECT_EQ(PKCS12_SAFEBAG_get_nid(bag), NID_certBag);
    X509* cert = PKCS12_SAFEBAG_get1_cert(bag);
    ASSERT_NE(cert, nullptr);
    char cn[64] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
    const char* const expected[] = {"one", "two", "three"};
    EXPECT_STREQ(cn, expected[i]);
    X509_free(cert);
    char* alias = PKCS12_get_friendlyname(const_cast<PKCS12_SAFEBAG*>(bag));
    EXPECT_EQ(std::string(alias ? alias : ""), "airlock-trust-" + std::to_string(i));
    OPENSSL_free(alias);
    const ASN1_TYPE* attr = PKCS12_get_attr_gen(PKCS12_SAFEBAG_get0_attrs(bag), OBJ_obj2nid(trusted_usage));
    if (attr == nullptr) {  // OpenSSL 3.0 has no NID for it: look it up by object
      bool found = false;
      const STACK_OF(X509_ATTRIBUTE)* attrs = PKCS12_SAFEBAG_get0_attrs(bag);
      for (int j = 0; j < sk_X509_ATTRIBUTE_num(attrs); ++j) {
        if (OBJ_cmp(X509_ATTRIBUTE_get0_object(sk_X509_ATTRIBUTE_value(attrs, j)), trusted_usage) == 0) found = true;
      }
      EXPECT_TRUE(found) << "bag " << i;
    }
  }
  ASN1_OBJECT_free(const_cast<ASN1_OBJECT*>(trusted_usage));
  sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
  sk_PKCS7_pop_free(safes, PKCS7_free);
  PKCS12_free(p12);
}

TEST(JavaTrustStore, KeytoolListsTheCertificatesAsTrusted) {
  if (std::system("command -v keytool >/dev/null 2>&1") != 0) GTEST_SKIP() << "no keytool (a JDK)";
  const std::string path = ::testing::TempDir() + "airlock-trust-test.p12";
  {
    std::ofstream out(path, std::ios::binary);
    const std::string der = java_trust_store(make_ca_pem("one") + make_ca_pem("two"));
    out.write(der.data(), static_cast<std::streamsize>(der.size()));
  }
  const std::string cmd = "keytool -list -storetype PKCS12 -storepass changeit -keystore " + path + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string text;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, n);
  EXPECT_EQ(::pclose(p), 0) << text;
  EXPECT_THAT(text, HasSubstr("Your keystore contains 2 entries"));
  EXPECT_THAT(text, HasSubstr("airlock-trust-0"));
  EXPECT_THAT(text, HasSubstr("trustedCertEntry"));
  std::remove(path.c_str());
}

TEST(GuestTrustFiles, BundleHashEntryAndJavaStore) {
  EXPECT_TRUE(guest_trust_files("/", "").empty());
  const std::string ca = make_ca_pem("airlock test CA");
  const std::vector<ChildPlan::File> files = guest_trust_files("/nonexistent-root", ca);
  std::vector<std::string> paths;
  for (const ChildPlan::File& f : files) paths.push_back(f.path);
  ASSERT_GE(files.size(), 4u);
  EXPECT_EQ(files[0].path, kGuestCaBundle);
  EXPECT_THAT(files[0].content, HasSubstr(ca));
  EXPECT_EQ(files[1].path, kGuestCaBundleRhel);
  EXPECT_THAT(files[2].path, ::testing::MatchesRegex("/etc/ssl/certs/[0-9a-f]{8}\\.0"));
  EXPECT_EQ(files[2].content, ca);
  EXPECT_EQ(files[3].path, kGuestJavaTrustStore);
  EXPECT_FALSE(files[3].content.empty());
}

}  // namespace
}  // namespace airlock::sandbox::detail
