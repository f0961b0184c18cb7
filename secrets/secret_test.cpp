#include <airlock/airlock.hpp>

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

namespace airlock {
namespace {

// An obviously fake value; every error message is checked not to hold it.
constexpr std::string_view kFake = "sk-FAKE-never-print-me-4242";

SecretBuilder valid(std::string_view env = "OPENAI_API_KEY") {
  SecretBuilder b;
  b.env(env).value(kFake).allow_host("api.openai.com");
  return b;
}

std::string build_error(SecretBuilder b) {
  try {
    b.build();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(accepted)";
}

struct RuleCase {
  const char* name;
  std::function<void(SecretBuilder&)> mutate;
  std::string env;   // the secret the error must name
  const char* rule;  // a fragment of the rule the error must state
};

class SecretRules : public ::testing::TestWithParam<RuleCase> {};

TEST_P(SecretRules, BadValueIsRejectedNamingSecretAndRule) {
  const RuleCase& c = GetParam();
  SecretBuilder b = valid();
  c.mutate(b);
  const std::string error = build_error(std::move(b));
  EXPECT_EQ(error.rfind("secret " + quote_for_message(c.env) + ": ", 0), 0u) << error;
  EXPECT_NE(error.find(c.rule), std::string::npos) << error;
  EXPECT_EQ(error.find(kFake), std::string::npos) << error;
}

const std::string kLong(kMaxPlaceholderBytes + 1, 'P');

INSTANTIATE_TEST_SUITE_P(
    Section1And2, SecretRules,
    ::testing::Values(
        RuleCase{"EnvEmpty", [](SecretBuilder& b) { b.env(""); }, "", "env var is required"},
        RuleCase{"EnvWithEquals", [](SecretBuilder& b) { b.env("A=B"); }, "A=B", "must not contain '=' or NUL"},
        RuleCase{"EnvWithNul", [](SecretBuilder& b) { b.env(std::string_view("A\0B", 3)); },
                 std::string("A\0B", 3), "must not contain '=' or NUL"},
        RuleCase{"ValueEmpty", [](SecretBuilder& b) { b.value(""); }, "OPENAI_API_KEY", "value is required"},
        RuleCase{"NoHosts",
                 [](SecretBuilder& b) {
                   b = SecretBuilder();
                   b.env("OPENAI_API_KEY").value(kFake);
                 },
                 "OPENAI_API_KEY", "at least one allowed host"},
        RuleCase{"PlaceholderEmpty", [](SecretBuilder& b) { b.placeholder(""); }, "OPENAI_API_KEY",
                 "placeholder must not be empty"},
        RuleCase{"PlaceholderTooLong", [](SecretBuilder& b) { b.placeholder(kLong); }, "OPENAI_API_KEY",
                 "placeholder must be at most 1024 bytes"},
        RuleCase{"PlaceholderCR", [](SecretBuilder& b) { b.placeholder("PH\rX"); }, "OPENAI_API_KEY",
                 "placeholder must not contain CR, LF or NUL"},
        RuleCase{"PlaceholderLF", [](SecretBuilder& b) { b.placeholder("PH\nX"); }, "OPENAI_API_KEY",
                 "placeholder must not contain CR, LF or NUL"},
        RuleCase{"PlaceholderNul", [](SecretBuilder& b) { b.placeholder(std::string_view("PH\0X", 4)); },
                 "OPENAI_API_KEY", "placeholder must not contain CR, LF or NUL"},
        RuleCase{"DefaultPlaceholderTooLong", [](SecretBuilder& b) { b.env(std::string(1100, 'E')); },
                 std::string(1100, 'E'), "default placeholder (from the env var) must be at most 1024 bytes"},
        RuleCase{"PlaceholderHoldsValue",
                 [](SecretBuilder& b) { b.placeholder("X" + std::string(kFake) + "X"); }, "OPENAI_API_KEY",
                 "placeholder must not contain the secret's value"},
        RuleCase{"HostBareStar", [](SecretBuilder& b) { b.allow_host_pattern("*"); }, "OPENAI_API_KEY",
                 "allow_any_host_dangerous"},
        RuleCase{"HostSingleLabelWildcard", [](SecretBuilder& b) { b.allow_host_pattern("*.com"); },
                 "OPENAI_API_KEY", "single label"},
        RuleCase{"HostStarInside", [](SecretBuilder& b) { b.allow_host_pattern("a.*.com"); }, "OPENAI_API_KEY",
                 "whole leading label"},
        RuleCase{"HostStarGlued", [](SecretBuilder& b) { b.allow_host_pattern("*foo.com"); }, "OPENAI_API_KEY",
                 "whole leading label"},
        RuleCase{"HostIpWildcard", [](SecretBuilder& b) { b.allow_host_pattern("*.1.2.3"); }, "OPENAI_API_KEY",
                 "IP literals cannot be wildcards"},
        RuleCase{"HostIpv6Wildcard", [](SecretBuilder& b) { b.allow_host_pattern("*.[::1]"); },
                 "OPENAI_API_KEY", "IP literals cannot be wildcards"},
        RuleCase{"HostNonAscii", [](SecretBuilder& b) { b.allow_host("b\xc3\xbc" "cher.example"); },
                 "OPENAI_API_KEY", "A-label (xn--...)"},
        RuleCase{"ExactHostWithStar", [](SecretBuilder& b) { b.allow_host("*.example.com"); }, "OPENAI_API_KEY",
                 "not allowed in an exact host"},
        RuleCase{"PatternWithoutStar", [](SecretBuilder& b) { b.allow_host_pattern("example.com"); },
                 "OPENAI_API_KEY", "must begin with `*.`"},
        RuleCase{"HostEmptyLabel", [](SecretBuilder& b) { b.allow_host("a..example.com"); }, "OPENAI_API_KEY",
                 "empty label"},
        RuleCase{"HostEmpty", [](SecretBuilder& b) { b.allow_host(""); }, "OPENAI_API_KEY", "must not be empty"}),
    [](const ::testing::TestParamInfo<RuleCase>& info) { return std::string(info.param.name); });

TEST(SecretBuilder, ValueUnsetIsRejected) {
  SecretBuilder b;
  b.env("TOKEN").allow_host("api.example.com");
  EXPECT_EQ(build_error(std::move(b)), "secret \"TOKEN\": value is required and must not be empty");
}

TEST(SecretBuilder, ErrorTextIsExact) {
  SecretBuilder b = valid();
  b.placeholder("a\nb");
  EXPECT_EQ(build_error(std::move(b)), "secret \"OPENAI_API_KEY\": placeholder must not contain CR, LF or NUL");
}

TEST(SecretBuilder, EnvVarNeedNotBeAShellIdentifier) {
  EXPECT_EQ(build_error(valid("my-key.v2")), "(accepted)");
}

TEST(SecretBuilder, PlaceholderAtTheLimitIsAccepted) {
  SecretBuilder b = valid();
  b.placeholder(std::string(kMaxPlaceholderBytes, 'P'));
  EXPECT_EQ(build_error(std::move(b)), "(accepted)");
}

TEST(SecretBuilder, AnyHostNeedsNoHostList) {
  SecretBuilder b;
  b.env("TOKEN").value(kFake).allow_any_host_dangerous(true);
  const SecretBinding s = b.build();
  EXPECT_TRUE(s.any_host());
  EXPECT_TRUE(s.hosts().empty());
  EXPECT_EQ(s.match_host("anything.example"), nullptr);
}

TEST(SecretBuilder, AnyHostFalseStillNeedsAHost) {
  SecretBuilder b;
  b.env("TOKEN").value(kFake).allow_any_host_dangerous(false);
  EXPECT_NE(build_error(std::move(b)).find("at least one allowed host"), std::string::npos);
}

// ---- defaults ----

TEST(SecretDefaults, Placeholder) {
  EXPECT_EQ(valid().build().placeholder(), "$MSB_OPENAI_API_KEY");
  EXPECT_EQ(default_placeholder("my-key.v2"), "$MSB_my-key.v2");  // exactly as given
}

TEST(SecretDefaults, Scopes) {
  const SecretBinding s = valid().build();
  EXPECT_TRUE(s.scopes().headers);
  EXPECT_TRUE(s.scopes().basic_auth);
  EXPECT_FALSE(s.scopes().query);
  EXPECT_FALSE(s.scopes().body);
}

TEST(SecretDefaults, TlsIdentityRequired) { EXPECT_TRUE(valid().build().require_tls_identity()); }

TEST(SecretDefaults, ViolationActionUnsetResolvesToBlockAndLog) {
  std::vector<SecretBinding> set;
  set.push_back(valid().build());
  EXPECT_EQ(set[0].on_violation(), ViolationAction::kUnset);
  EXPECT_EQ(effective_violation_action(set, ViolationAction::kUnset), ViolationAction::kBlockAndLog);
  EXPECT_EQ(effective_violation_action({}, ViolationAction::kUnset), ViolationAction::kBlockAndLog);
  EXPECT_EQ(kDefaultViolationAction, ViolationAction::kBlockAndLog);
}

TEST(SecretDefaults, NotAnyHost) { EXPECT_FALSE(valid().build().any_host()); }

TEST(SecretDefaults, NetworkConfig) {
  const NetworkConfig n;
  EXPECT_EQ(n.intercept_ports, std::vector<std::uint16_t>{443});
  EXPECT_EQ(n.max_body_bytes, 16u * 1024 * 1024);
  EXPECT_EQ(n.on_secret_violation, ViolationAction::kUnset);
  EXPECT_TRUE(n.tls_bypass.empty());
}

TEST(SecretBuilder, SettersTakeEffect) {
  SecretBuilder b = valid();
  b.placeholder("__KEY__").require_tls_identity(false).inject_headers(false).inject_basic_auth(false);
  b.inject_query(true).inject_body(true).on_violation(ViolationAction::kBlock).allow_host_pattern("*.openai.com");
  const SecretBinding s = b.build();
  EXPECT_EQ(s.env_var(), "OPENAI_API_KEY");
  EXPECT_TRUE(s.value().equals(kFake));
  EXPECT_EQ(s.placeholder(), "__KEY__");
  EXPECT_FALSE(s.require_tls_identity());
  EXPECT_EQ(s.scopes(), (InjectionScopes{false, false, true, true}));
  EXPECT_EQ(s.on_violation(), ViolationAction::kBlock);
  ASSERT_EQ(s.hosts().size(), 2u);
  EXPECT_EQ(s.match_host("API.openai.com."), &s.hosts()[0]);
  EXPECT_EQ(s.match_host("files.openai.com"), &s.hosts()[1]);
  EXPECT_EQ(s.match_host("openai.com"), nullptr);
  EXPECT_EQ(s.match_host("api.openai.com.evil.test"), nullptr);
}

TEST(SecretBinding, CloneIsIndependent) {
  const SecretBinding a = valid().build();
  const SecretBinding b = a.clone();
  EXPECT_TRUE(b.value().equals(kFake));
  EXPECT_NE(a.value().expose().data(), b.value().expose().data());
  EXPECT_EQ(b.placeholder(), a.placeholder());
  EXPECT_EQ(b.hosts(), a.hosts());
}

// ---- violation action strings ----

TEST(ViolationAction, StringsRoundTrip) {
  for (auto [a, s] : std::vector<std::pair<ViolationAction, std::string_view>>{
           {ViolationAction::kUnset, ""},
           {ViolationAction::kBlock, "block"},
           {ViolationAction::kBlockAndLog, "block-and-log"},
           {ViolationAction::kBlockAndTerminate, "block-and-terminate"}}) {
    EXPECT_EQ(to_string(a), s);
    EXPECT_EQ(parse_violation_action(s), a);
  }
}

TEST(ViolationAction, UnknownStringIsRejected) {
  try {
    parse_violation_action("Block");
    FAIL() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "unknown violation action \"Block\": use \"block\", \"block-and-log\", "
                 "\"block-and-terminate\" or \"\" (the default)");
  }
}

// ---- §4: effective action ----

SecretBinding with_action(std::string_view env, ViolationAction a) {
  SecretBuilder b = valid(env);
  b.on_violation(a);
  return b.build();
}

TEST(EffectiveAction, LastNonEmptyPerSecretWins) {
  std::vector<SecretBinding> set;
  set.push_back(with_action("A", ViolationAction::kBlockAndTerminate));
  set.push_back(with_action("B", ViolationAction::kBlock));
  set.push_back(with_action("C", ViolationAction::kUnset));
  EXPECT_EQ(effective_violation_action(set, ViolationAction::kBlockAndLog), ViolationAction::kBlock);
}

TEST(EffectiveAction, SecretOverridesNetwork) {
  std::vector<SecretBinding> set;
  set.push_back(with_action("A", ViolationAction::kBlockAndTerminate));
  EXPECT_EQ(effective_violation_action(set, ViolationAction::kBlock), ViolationAction::kBlockAndTerminate);
}

TEST(EffectiveAction, NetworkUsedWhenNoSecretSetsOne) {
  std::vector<SecretBinding> set;
  set.push_back(with_action("A", ViolationAction::kUnset));
  EXPECT_EQ(effective_violation_action(set, ViolationAction::kBlockAndTerminate),
            ViolationAction::kBlockAndTerminate);
}

// ---- across secrets ----

std::string set_error(std::vector<SecretBinding> set) {
  try {
    validate_secret_set(set);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(accepted)";
}

SecretBinding with_placeholder(std::string_view env, std::string_view placeholder) {
  SecretBuilder b = valid(env);
  b.placeholder(placeholder);
  return b.build();
}

TEST(SecretSet, DistinctSecretsAreAccepted) {
  std::vector<SecretBinding> set;
  set.push_back(valid("A").build());
  set.push_back(valid("B").build());
  EXPECT_EQ(set_error(std::move(set)), "(accepted)");
}

TEST(SecretSet, EnvVarBoundTwice) {
  std::vector<SecretBinding> set;
  set.push_back(with_placeholder("A", "PH1"));
  set.push_back(with_placeholder("A", "PH2"));
  EXPECT_EQ(set_error(std::move(set)), "secret \"A\": env var is bound twice");
}

TEST(SecretSet, SharedPlaceholder) {
  std::vector<SecretBinding> set;
  set.push_back(with_placeholder("A", "SAME"));
  set.push_back(with_placeholder("B", "SAME"));
  EXPECT_EQ(set_error(std::move(set)), "secrets \"A\" and \"B\": two secrets may not share a placeholder (\"SAME\")");
}

TEST(SecretSet, PlaceholderContainingAnotherEitherOrder) {
  {
    std::vector<SecretBinding> set;
    set.push_back(with_placeholder("A", "KEY"));
    set.push_back(with_placeholder("B", "KEY_2"));
    const std::string e = set_error(std::move(set));
    EXPECT_EQ(e, "secrets \"A\" and \"B\": the placeholder of \"B\" contains the placeholder of \"A\"; "
                 "no placeholder may contain another");
  }
  {
    std::vector<SecretBinding> set;
    set.push_back(with_placeholder("A", "xKEYx"));
    set.push_back(with_placeholder("B", "KEY"));
    EXPECT_NE(set_error(std::move(set)).find("the placeholder of \"A\" contains the placeholder of \"B\""),
              std::string::npos);
  }
}

TEST(SecretSet, DefaultPlaceholdersCanNest) {
  // $MSB_KEY is inside $MSB_KEY_2: the defaults alone can break the rule, and it is caught.
  std::vector<SecretBinding> set;
  set.push_back(valid("KEY").build());
  set.push_back(valid("KEY_2").build());
  EXPECT_NE(set_error(std::move(set)).find("contains the placeholder"), std::string::npos);
}

// ---- plain-struct form and the sandbox builder ----

TEST(SecretEntry, EnvFactoryAndBind) {
  SecretEnvOptions options;
  options.allow_hosts = {"api.openai.com"};
  options.allow_host_patterns = {"*.openai.com"};
  options.require_tls = false;
  options.on_violation = ViolationAction::kBlockAndTerminate;
  SecretEntry e = Secret::env("OPENAI_API_KEY", kFake, options);
  const SecretBinding s = e.bind();
  EXPECT_EQ(s.env_var(), "OPENAI_API_KEY");
  EXPECT_EQ(s.placeholder(), "$MSB_OPENAI_API_KEY");
  EXPECT_FALSE(s.require_tls_identity());
  EXPECT_EQ(s.on_violation(), ViolationAction::kBlockAndTerminate);
  EXPECT_EQ(s.hosts().size(), 2u);
  EXPECT_TRUE(s.value().equals(kFake));
  EXPECT_TRUE(e.value.equals(kFake));  // bind() does not consume the entry
}

TEST(SecretEntry, DefaultsMatchTheBuilder) {
  SecretEnvOptions options;
  options.allow_hosts = {"api.example.com"};
  SecretEntry e = Secret::env("K", kFake, options);
  const SecretBinding s = e.bind();
  EXPECT_TRUE(s.require_tls_identity());
  EXPECT_EQ(s.scopes(), InjectionScopes{});
  EXPECT_EQ(s.on_violation(), ViolationAction::kUnset);
}

TEST(SecretEntry, ValidatesLikeTheBuilder) {
  SecretEntry e = Secret::env("K", kFake);
  try {
    e.bind();
    FAIL() << "accepted";
  } catch (const ConfigError& err) {
    EXPECT_EQ(std::string(err.what()).rfind("secret \"K\": at least one allowed host", 0), 0u) << err.what();
  }
}

TEST(SandboxBuilder, BuildsAllForms) {
  SecretEnvOptions b_options;
  b_options.allow_hosts = {"b.example.com"};
  SandboxBuilder sb;
  sb.secret([](SecretBuilder& b) -> SecretBuilder& {
      return b.env("A").value(kFake).allow_host("a.example.com");
    })
      .secret(Secret::env("B", "fake-b", b_options))
      .secret_env("C", "fake-c", "*.c.example.com")
      .network([](NetworkBuilder& n) -> NetworkBuilder& {
        return n.on_secret_violation(ViolationAction::kBlock).intercept_port(8443).intercept_port(443);
      });
  const SandboxConfig c = sb.build();
  ASSERT_EQ(c.secrets.size(), 3u);
  EXPECT_TRUE(c.secrets[2].hosts()[0].is_wildcard());
  EXPECT_EQ(c.network.intercept_ports, (std::vector<std::uint16_t>{443, 8443}));
  EXPECT_EQ(c.violation_action(), ViolationAction::kBlock);
}

TEST(SandboxBuilder, RejectsABadSetAtBuild) {
  SandboxBuilder sb;
  sb.secret_env("A", "fake-a", "a.example.com").secret_env("A", "fake-b", "b.example.com");
  EXPECT_THROW(sb.build(), ConfigError);
}

TEST(SandboxBuilder, RejectsABadSecretWhenAdded) {
  SandboxBuilder sb;
  EXPECT_THROW(sb.secret_env("A", kFake, "*.com"), ConfigError);
}

TEST(NetworkBuilder, RejectsBadSettings) {
  NetworkBuilder n;
  EXPECT_THROW(n.intercept_port(0), ConfigError);
  EXPECT_THROW(n.max_body_bytes(0), ConfigError);
  EXPECT_THROW(n.bypass_tls("*"), ConfigError);
  EXPECT_THROW(n.upstream_ca_file("", {}), ConfigError);
  EXPECT_THROW(n.upstream_ca_file("ca.pem", "*.com"), ConfigError);
  n.bypass_tls("*.pinned.example").upstream_ca_file("ca.pem", "*.corp.example").max_body_bytes(1024);
  EXPECT_EQ(n.config().tls_bypass.size(), 1u);
  ASSERT_EQ(n.config().upstream_cas.size(), 1u);
  EXPECT_EQ(n.config().upstream_cas[0].for_hosts->text(), "*.corp.example");
  EXPECT_EQ(n.config().max_body_bytes, 1024u);
}

// ---- the value never leaks through errors ----

TEST(SecretLeaks, NoErrorMessageHoldsTheValue) {
  // Every kind of failure with a distinctive value set: none of the messages may hold it.
  std::vector<std::function<void()>> failures = {
      [] { SecretBuilder b; b.env("").value(kFake).allow_host("a.example.com").build(); },
      [] { SecretBuilder b; b.env("K").value(kFake).build(); },
      [] { SecretBuilder b; b.env("K=").value(kFake).allow_host("a.example.com").build(); },
      [] { SecretBuilder b; b.env("K").value(kFake).allow_host_pattern("*.com").build(); },
      [] { SecretBuilder b; b.env("K").value(kFake).allow_host("a.example.com").placeholder(kFake).build(); },
      [] { SecretBuilder b; b.env("K").value(kFake).allow_host("a.example.com").placeholder("a\nb").build(); },
      [] { Secret::env("K", kFake).bind(); },
  };
  for (std::size_t i = 0; i < failures.size(); ++i) {
    try {
      failures[i]();
      ADD_FAILURE() << "case " << i << " accepted";
    } catch (const ConfigError& e) {
      const std::string what = e.what();
      EXPECT_EQ(what.find(kFake), std::string::npos) << "case " << i << ": " << what;
    }
  }
}

}  // namespace
}  // namespace airlock
