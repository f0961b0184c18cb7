// The Java trust store: every certificate a trusted entry, as OpenSSL and keytool read it.
#include "tls/trust_store.hpp"

#include "tls/test_support.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <openssl/pkcs12.h>
#include <openssl/x509.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

namespace airlock::tls {
namespace {

using ::testing::HasSubstr;

TEST(JavaTrustStore, HoldsEveryCertificateAsATrustedEntry) {
  const std::string bundle = testing::self_signed_pem("one") + testing::self_signed_pem("two") + "not a certificate\n" + testing::self_signed_pem("three");
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
  if (std::system("command -v keytool >/dev/null 2>&1") != 0) GTEST_FAIL() << "no keytool: scripts/install-deps installs openjdk-17-jdk-headless";
  const std::string path = ::testing::TempDir() + "airlock-trust-test.p12";
  {
    std::ofstream out(path, std::ios::binary);
    const std::string der = java_trust_store(testing::self_signed_pem("one") + testing::self_signed_pem("two"));
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

TEST(JavaTrustStore, NoCertificateGivesNothing) {
  EXPECT_EQ(java_trust_store(""), "");
  EXPECT_EQ(java_trust_store("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"), "");
  EXPECT_EQ(java_trust_store("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "");  // not DER
  EXPECT_EQ(java_trust_store("-----BEGIN CERTIFICATE-----\nMIIB"), "");  // no end line
  // A SEQUENCE header whose length is not the block's.
  EXPECT_EQ(java_trust_store("-----BEGIN CERTIFICATE-----\nMIIfake\n-----END CERTIFICATE-----\n"), "");
  EXPECT_EQ(java_trust_store("-----BEGIN CERTIFICATE-----\nMAMCAQ==\n-----END CERTIFICATE-----\n"), "");
}

}  // namespace
}  // namespace airlock::tls
