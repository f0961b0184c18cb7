#include <airlock/errors.hpp>
#include <airlock/host_pattern.hpp>

#include <gtest/gtest.h>

#include <string>

namespace airlock {
namespace {

std::string error_of(std::string_view text, HostPattern (*parse)(std::string_view) = &HostPattern::parse) {
  try {
    parse(text);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(accepted)";
}

TEST(HostPattern, ExactIsCaseInsensitive) {
  const auto p = HostPattern::exact("API.Example.COM");
  EXPECT_EQ(p.text(), "api.example.com");
  EXPECT_FALSE(p.is_wildcard());
  EXPECT_TRUE(p.matches("api.example.com"));
  EXPECT_TRUE(p.matches("API.EXAMPLE.COM"));
  EXPECT_TRUE(p.matches("Api.Example.Com"));
}

TEST(HostPattern, ExactIgnoresOneTrailingDotOnEitherSide) {
  const auto p = HostPattern::exact("api.example.com.");
  EXPECT_EQ(p.text(), "api.example.com");
  EXPECT_TRUE(p.matches("api.example.com"));
  EXPECT_TRUE(p.matches("api.example.com."));
  EXPECT_FALSE(p.matches("api.example.com.."));
  EXPECT_TRUE(HostPattern::exact("api.example.com").matches("api.example.com."));
}

TEST(HostPattern, ExactDoesNotMatchNeighbours) {
  const auto p = HostPattern::exact("api.example.com");
  EXPECT_FALSE(p.matches("example.com"));
  EXPECT_FALSE(p.matches("x.api.example.com"));
  EXPECT_FALSE(p.matches("api.example.com.evil.test"));
  EXPECT_FALSE(p.matches("api.example.co"));
  EXPECT_FALSE(p.matches("api-example.com"));
  EXPECT_FALSE(p.matches(""));
  EXPECT_FALSE(p.matches("."));
  EXPECT_FALSE(p.matches(std::string_view("api.example.com\0", 16)));
}

TEST(HostPattern, WildcardMatchesAnyDepthButNotTheApex) {
  const auto p = HostPattern::wildcard("*.Example.com");
  EXPECT_TRUE(p.is_wildcard());
  EXPECT_EQ(p.text(), "*.example.com");
  EXPECT_TRUE(p.matches("a.example.com"));
  EXPECT_TRUE(p.matches("a.b.example.com"));
  EXPECT_TRUE(p.matches("a.b.c.d.example.com"));
  EXPECT_TRUE(p.matches("A.EXAMPLE.COM"));
  EXPECT_TRUE(p.matches("a.example.com."));
  EXPECT_FALSE(p.matches("example.com"));
  EXPECT_FALSE(p.matches("example.com."));
  EXPECT_FALSE(p.matches(".example.com"));
  EXPECT_FALSE(p.matches("a..example.com"));
  EXPECT_FALSE(p.matches("evilexample.com"));
  EXPECT_FALSE(p.matches("a.example.com.evil.test"));
  EXPECT_FALSE(p.matches("a.example.org"));
  EXPECT_FALSE(p.matches("a/b.example.com"));
}

TEST(HostPattern, WildcardTrailingDotIsNormalized) {
  const auto p = HostPattern::wildcard("*.example.com.");
  EXPECT_EQ(p.text(), "*.example.com");
  EXPECT_TRUE(p.matches("a.example.com"));
}

TEST(HostPattern, ParseChoosesTheKind) {
  EXPECT_FALSE(HostPattern::parse("api.example.com").is_wildcard());
  EXPECT_TRUE(HostPattern::parse("*.example.com").is_wildcard());
}

TEST(HostPattern, ExactIpLiteralsAreAccepted) {
  const auto v4 = HostPattern::exact("192.0.2.1");
  EXPECT_EQ(v4.text(), "192.0.2.1");
  EXPECT_TRUE(v4.matches("192.0.2.1"));
  EXPECT_FALSE(v4.matches("192.0.2.10"));
  const auto v6 = HostPattern::exact("[2001:DB8:0::1]");
  EXPECT_EQ(v6.text(), "[2001:db8::1]");
  EXPECT_TRUE(v6.matches("[2001:db8::1]"));
  EXPECT_TRUE(v6.matches("2001:db8:0:0::1"));
  EXPECT_FALSE(v6.matches("[2001:db8::2]"));
  EXPECT_EQ(HostPattern::exact("2001:db8::1").text(), "[2001:db8::1]");
}

TEST(HostPattern, ALabelsUnderscoresAndSingleLabelsAreValidExactHosts) {
  EXPECT_TRUE(HostPattern::exact("xn--bcher-kva.example").matches("XN--BCHER-KVA.example"));
  EXPECT_TRUE(HostPattern::exact("_acme-challenge.example.com").matches("_acme-challenge.example.com"));
  EXPECT_TRUE(HostPattern::exact("localhost").matches("LOCALHOST."));
  EXPECT_TRUE(HostPattern::wildcard("*.xn--bcher-kva.example").matches("a.xn--bcher-kva.example"));
}

TEST(HostPattern, NormalizeHost) {
  EXPECT_EQ(normalize_host("API.Example.Com."), "api.example.com");
  EXPECT_EQ(normalize_host("a.b.."), "a.b.");
  EXPECT_EQ(normalize_host(""), "");
}

struct Rejected {
  const char* text;
  const char* rule;  // a fragment the error must contain
};

class HostPatternRejects : public ::testing::TestWithParam<Rejected> {};

TEST_P(HostPatternRejects, WithAClearError) {
  const auto& [text, rule] = GetParam();
  const std::string error = error_of(text);
  EXPECT_NE(error.find(rule), std::string::npos) << "error: " << error;
  // The error quotes the offending host.
  EXPECT_EQ(error.rfind("host \"", 0), 0u) << error;
}

INSTANTIATE_TEST_SUITE_P(
    Forms, HostPatternRejects,
    ::testing::Values(
        Rejected{"*", "bare `*`"},
        Rejected{"*.", "bare `*`"},
        Rejected{"*.com", "single label"},
        Rejected{"*.com.", "single label"},
        Rejected{"a.*.com", "whole leading label"},
        Rejected{"*foo.example.com", "whole leading label"},
        Rejected{"foo*.example.com", "whole leading label"},
        Rejected{"*.*.example.com", "whole leading label"},
        Rejected{"**.example.com", "whole leading label"},
        Rejected{"api.example.*", "whole leading label"},
        Rejected{"*.1.2.3", "IP literals cannot be wildcards"},
        Rejected{"*.192.0.2.1", "IP literals cannot be wildcards"},
        Rejected{"*.[::1]", "IP literals cannot be wildcards"},
        Rejected{"*.2001:db8::1", "IP literals cannot be wildcards"},
        Rejected{"b\xc3\xbc" "cher.example", "A-label (xn--...)"},
        Rejected{"*.b\xc3\xbc" "cher.example", "A-label (xn--...)"},
        Rejected{"", "must not be empty"},
        Rejected{".", "must not be empty"},
        Rejected{"a..example.com", "empty label"},
        Rejected{".example.com", "empty label"},
        Rejected{"*..example.com", "empty label"},
        Rejected{"example.com..", "empty label"},
        Rejected{"api example.com", "invalid character"},
        Rejected{"api/example.com", "invalid character"},
        Rejected{"api.example.com:443", "not a valid host name"},
        Rejected{"1.2.3", "not a valid one"},
        Rejected{"256.0.2.1", "not a valid one"},
        Rejected{"[::g]", "not a valid host name"}));

TEST(HostPattern, RejectsOverlongLabelAndName) {
  const std::string label64(64, 'a');
  EXPECT_NE(error_of(label64 + ".example.com").find("label longer than 63"), std::string::npos);
  EXPECT_EQ(error_of(std::string(63, 'a') + ".example.com"), "(accepted)");
  std::string name;
  while (name.size() < 254) name += "abcdefghi.";
  name += "com";  // > 253
  EXPECT_NE(error_of(name).find("longer than 253"), std::string::npos);
  std::string fits;
  for (int i = 0; i < 3; ++i) fits += std::string(63, 'a') + ".";
  fits += std::string(61, 'b');  // 253 bytes exactly
  ASSERT_EQ(fits.size(), 253u);
  EXPECT_EQ(error_of(fits), "(accepted)");
}

TEST(HostPattern, ExactRejectsAnyStar) {
  EXPECT_NE(error_of("*.example.com", &HostPattern::exact).find("not allowed in an exact host"), std::string::npos);
}

TEST(HostPattern, WildcardRequiresTheStarPrefix) {
  EXPECT_NE(error_of("api.example.com", &HostPattern::wildcard).find("must begin with `*.`"), std::string::npos);
}

TEST(HostPattern, NonPrintableBytesAreEscapedInErrors) {
  const std::string error = error_of(std::string_view("a\nb.example.com"));
  EXPECT_NE(error.find("a\\x0ab.example.com"), std::string::npos) << error;
  EXPECT_EQ(error.find('\n'), std::string::npos);
}

}  // namespace
}  // namespace airlock
