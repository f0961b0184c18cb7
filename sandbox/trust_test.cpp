// The guest's trust files: the bundle with the CA appended, the hashed-directory entry, the Java
// trust store.
#include "sandbox/internal.hpp"

#include "tls/test_support.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace airlock::sandbox::detail {
namespace {

using ::testing::HasSubstr;

TEST(GuestTrustFiles, BundleHashEntryAndJavaStore) {
  EXPECT_TRUE(guest_trust_files(read_system_trust("/"), "").empty());
  const std::string ca = tls::testing::self_signed_pem("airlock test CA");
  const std::vector<TrustFile> files = guest_trust_files(read_system_trust("/nonexistent-root"), ca);
  std::vector<std::string> paths;
  for (const TrustFile& f : files) paths.push_back(f.path);
  ASSERT_GE(files.size(), 4u);
  EXPECT_EQ(files[0].path, kGuestCaBundle);
  EXPECT_THAT(files[0].content, HasSubstr(ca));
  EXPECT_EQ(files[1].path, kGuestCaBundleRhel);
  EXPECT_THAT(files[2].path, ::testing::MatchesRegex("/etc/ssl/certs/[0-9a-f]{8}\\.0"));
  EXPECT_EQ(files[2].content, ca);
  EXPECT_EQ(files[3].path, kGuestJavaTrustStore);
  EXPECT_FALSE(files[3].content.empty());
}

TEST(GuestTrustFiles, ACertificateThatDoesNotDecodeGivesTheBundlesOnly) {
  const std::string broken = "-----BEGIN CERTIFICATE-----\nMIIfake\n-----END CERTIFICATE-----\n";
  const std::vector<TrustFile> files = guest_trust_files(read_system_trust("/nonexistent-root"), broken);
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0].path, kGuestCaBundle);
  EXPECT_EQ(files[1].path, kGuestCaBundleRhel);
}

}  // namespace
}  // namespace airlock::sandbox::detail
