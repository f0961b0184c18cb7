#include "sandbox/sandbox.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

namespace airlock::sandbox {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

SecretBinding make_secret(const std::string& env, const std::string& value,
                          const std::string& host = "api.example.com") {
  return SecretBuilder().env(env).value(value).allow_host(host).build();
}

HostEnv fake_host(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(ParseVolume, HostGuestAndReadOnly) {
  EXPECT_EQ(parse_volume("/data:/mnt/data"), (Volume{"/data", "/mnt/data", false}));
  EXPECT_EQ(parse_volume("/data:/mnt/data:ro"), (Volume{"/data", "/mnt/data", true}));
  EXPECT_EQ(parse_volume("/data:/mnt/data:rw"), (Volume{"/data", "/mnt/data", false}));
}

TEST(ParseVolume, RejectsRelativeClimbingAndMalformed) {
  EXPECT_THROW(parse_volume("data:/mnt"), ConfigError);
  EXPECT_THROW(parse_volume("/data:mnt"), ConfigError);
  EXPECT_THROW(parse_volume("/data:/mnt/../etc"), ConfigError);
  EXPECT_THROW(parse_volume("/data/..:/mnt"), ConfigError);
  EXPECT_THROW(parse_volume("/data"), ConfigError);
  EXPECT_THROW(parse_volume("/a:/b:/c"), ConfigError);
  EXPECT_THROW(parse_volume("/a:/"), ConfigError);
  EXPECT_EQ(error_of([] { parse_volume("x"); }), "--volume x: expected HOST:GUEST[:ro]");
}

TEST(ParseMemorySize, Units) {
  EXPECT_EQ(parse_memory_size("1048576"), 1048576u);
  EXPECT_EQ(parse_memory_size("64k"), 65536u);
  EXPECT_EQ(parse_memory_size("512M"), 512ull << 20);
  EXPECT_EQ(parse_memory_size("2G"), 2ull << 30);
  EXPECT_THROW(parse_memory_size(""), ConfigError);
  EXPECT_THROW(parse_memory_size("0"), ConfigError);
  EXPECT_THROW(parse_memory_size("12T"), ConfigError);
  EXPECT_THROW(parse_memory_size("M"), ConfigError);
  EXPECT_THROW(parse_memory_size("-5M"), ConfigError);
  EXPECT_THROW(parse_memory_size("99999999999999999999G"), ConfigError);
}

TEST(GuestEnv, CleanByDefaultWithPlaceholders) {
  std::vector<SecretBinding> secrets;
  secrets.push_back(make_secret("OPENAI_API_KEY", "sk-fake-value-123"));
  const auto env = build_guest_env(
      {}, secrets,
      fake_host({{"TERM", "xterm"}, {"HOME", "/home/host"}, {"OPENAI_API_KEY", "sk-fake-value-123"},
                 {"AWS_SECRET", "x"}}),
      false);
  EXPECT_EQ(env, (std::vector<std::string>{
                     "HOME=/root", "LANG=C.UTF-8", "OPENAI_API_KEY=$MSB_OPENAI_API_KEY",
                     "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                     "TERM=xterm"}));
}

TEST(GuestEnv, CaVariablesPointAtTheBundle) {
  const auto env = build_guest_env({}, {}, fake_host({}), true);
  for (const std::string& name : ca_env_vars()) {
    EXPECT_THAT(env, ::testing::Contains(name + "=/etc/ssl/certs/ca-certificates.crt"));
  }
  EXPECT_EQ(ca_env_vars().size(), 16u);
  EXPECT_THAT(env, ::testing::Contains("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=/etc/ssl/certs/ca-certificates.crt"));
  EXPECT_THAT(env, ::testing::Contains("JAVA_TOOL_OPTIONS=-Djavax.net.ssl.trustStore=/etc/ssl/certs/java/cacerts "
                                       "-Djavax.net.ssl.trustStoreType=PKCS12"));
}

TEST(GuestEnv, UserJavaToolOptionsComeAfterTheTrustStore) {
  EnvRequest req;
  req.set = {{"JAVA_TOOL_OPTIONS", "-Xmx64m"}};
  const auto env = build_guest_env(req, {}, fake_host({}), true);
  EXPECT_THAT(env, ::testing::Contains("JAVA_TOOL_OPTIONS=-Djavax.net.ssl.trustStore=/etc/ssl/certs/java/cacerts "
                                       "-Djavax.net.ssl.trustStoreType=PKCS12 -Xmx64m"));
  const auto without_ca = build_guest_env(req, {}, fake_host({}), false);
  EXPECT_THAT(without_ca, ::testing::Contains("JAVA_TOOL_OPTIONS=-Xmx64m"));
}

TEST(GuestEnv, EnvAndEnvPass) {
  EnvRequest req;
  req.set = {{"MODE", "test"}, {"EMPTY", ""}};
  req.pass = {"USER", "NOT_SET_ON_HOST"};
  const auto env = build_guest_env(req, {}, fake_host({{"USER", "alice"}}), false);
  EXPECT_THAT(env, ::testing::Contains("MODE=test"));
  EXPECT_THAT(env, ::testing::Contains("EMPTY="));
  EXPECT_THAT(env, ::testing::Contains("USER=alice"));
  for (const auto& e : env) EXPECT_THAT(e, Not(HasSubstr("NOT_SET_ON_HOST")));
}

TEST(GuestEnv, RefusesAVariableEqualToASecretValueWithoutNamingTheValue) {
  std::vector<SecretBinding> secrets;
  secrets.push_back(make_secret("API_KEY", "sk-fake-value-123"));
  EnvRequest req;
  req.set = {{"COPY", "sk-fake-value-123"}};
  const std::string msg = error_of([&] { build_guest_env(req, secrets, fake_host({}), false); });
  EXPECT_EQ(msg,
            "environment variable COPY equals the value of secret API_KEY; refusing to start "
            "(the value must not enter the sandbox)");
  EXPECT_THAT(msg, Not(HasSubstr("sk-fake")));
}

TEST(GuestEnv, RefusesAPassedVariableThatContainsASecretValue) {
  std::vector<SecretBinding> secrets;
  secrets.push_back(make_secret("API_KEY", "sk-fake-value-123"));
  EnvRequest req;
  req.pass = {"AUTH_HEADER"};
  const std::string msg = error_of([&] {
    build_guest_env(req, secrets, fake_host({{"AUTH_HEADER", "Bearer sk-fake-value-123"}}), false);
  });
  EXPECT_THAT(msg, HasSubstr("AUTH_HEADER contains the value of secret API_KEY"));
  EXPECT_THAT(msg, Not(HasSubstr("sk-fake")));
}

TEST(GuestEnv, RefusesTermOrLangFromTheHostThatEqualASecret) {
  std::vector<SecretBinding> secrets;
  secrets.push_back(make_secret("API_KEY", "sk-fake-value-123"));
  EXPECT_THAT(error_of([&] {
                build_guest_env({}, secrets, fake_host({{"TERM", "sk-fake-value-123"}}), false);
              }),
              HasSubstr("TERM equals the value of secret API_KEY"));
}

TEST(GuestEnv, SecretVariablesCannotBeOverridden) {
  std::vector<SecretBinding> secrets;
  secrets.push_back(make_secret("API_KEY", "sk-fake-value-123"));
  EnvRequest set;
  set.set = {{"API_KEY", "other"}};
  EXPECT_THAT(error_of([&] { build_guest_env(set, secrets, fake_host({}), false); }),
              HasSubstr("--env API_KEY: this variable holds a secret's placeholder"));
  EnvRequest pass;
  pass.pass = {"API_KEY"};
  EXPECT_THAT(error_of([&] {
                build_guest_env(pass, secrets, fake_host({{"API_KEY", "sk-fake-value-123"}}), false);
              }),
              HasSubstr("--env-pass API_KEY: this variable holds a secret's placeholder"));
}

TEST(GuestEnv, RejectsBadNames) {
  EnvRequest req;
  req.set = {{"A=B", "x"}};
  EXPECT_THROW(build_guest_env(req, {}, fake_host({}), false), ConfigError);
  req.set = {{"", "x"}};
  EXPECT_THROW(build_guest_env(req, {}, fake_host({}), false), ConfigError);
}

TEST(GatewayRuleset, RedirectsTcpAndDnsDropsTheRest) {
  const std::string r = gateway_ruleset(15001, 15053);
  EXPECT_THAT(r, HasSubstr("iifname \"gw0\" udp dport 53 redirect to :15053\n"));
  EXPECT_THAT(r, HasSubstr("iifname \"gw0\" tcp dport 53 redirect to :15053\n"));
  EXPECT_THAT(r, HasSubstr("iifname \"gw0\" meta l4proto tcp redirect to :15001\n"));
  EXPECT_THAT(r, HasSubstr("type filter hook input priority filter; policy drop;"));
  EXPECT_THAT(r, HasSubstr("type filter hook forward priority filter; policy drop;"));
  // DNS is redirected before the catch-all TCP rule, or TCP DNS would reach the proxy port.
  EXPECT_LT(r.find("tcp dport 53 redirect"), r.find("meta l4proto tcp redirect"));
}

TEST(GatewayRuleset, BlockedDestinationsAreResetBeforeTheRedirect) {
  const std::string r = gateway_ruleset(15001, 15053, {"10.0.0.0/8", "10.1.2.3/32", "fc00::/7"});
  EXPECT_THAT(r, HasSubstr("type filter hook prerouting priority -150; policy accept;\n"
                           "    iifname \"gw0\" tcp dport != 53 ip daddr 10.0.0.0/8 reject with tcp reset\n"
                           "    iifname \"gw0\" tcp dport != 53 ip daddr 10.1.2.3/32 reject with tcp reset\n"
                           "    iifname \"gw0\" tcp dport != 53 ip6 daddr fc00::/7 reject with tcp reset\n"));
  EXPECT_THROW(gateway_ruleset(1, 2, {"10.0.0.0/8; flush ruleset"}), ConfigError);
  EXPECT_THROW(gateway_ruleset(1, 2, {""}), ConfigError);
}

TEST(GatewayRuleset, DefaultBlockedDestinationsCoverMetadataLoopbackAndPrivate) {
  const auto blocked = default_blocked_destinations();
  for (const char* cidr : {"169.254.0.0/16", "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12",
                           "192.168.0.0/16", "100.64.0.0/10", "fc00::/7", "fe80::/10", "::ffff:0:0/96"}) {
    EXPECT_THAT(blocked, ::testing::Contains(cidr));
  }
}

TEST(GatewayRuleset, BlockedDestinationsHoldTheIpv6FormsOfEachIpv4Range) {
  const auto blocked = default_blocked_destinations();
  // 169.254.0.0/16 (metadata) as IPv4-mapped, IPv4-compatible, NAT64 /96 and 6to4; the prefixes
  // whose embedding no prefix expresses, whole.
  for (const char* cidr : {"::ffff:169.254.0.0/112", "::169.254.0.0/112", "64:ff9b::a9fe:0/112", "2002:a9fe::/32",
                           "64:ff9b::a00:0/104", "2002:a00::/24", "2002:7f00::/24", "64:ff9b:1::/48", "2001::/32",
                           "fec0::/10"}) {
    EXPECT_THAT(blocked, ::testing::Contains(cidr));
  }
  // Not the whole NAT64 and 6to4 prefixes: their public forms are the gateway's to decide.
  for (const char* cidr : {"64:ff9b::/96", "2002::/16", "::ffff:0.0.0.0/96"}) {
    EXPECT_THAT(blocked, ::testing::Not(::testing::Contains(cidr)));
  }
  EXPECT_EQ(with_ipv4_embeddings({"192.0.2.1/32", "2001:db8::1/128", "x"}),
            (std::vector<std::string>{"192.0.2.1/32", "2001:db8::1/128", "x", "::ffff:192.0.2.1/128",
                                      "::192.0.2.1", "64:ff9b::c000:201", "2002:c000:201::/48"}));
  // Every entry is one the ruleset accepts.
  EXPECT_NO_THROW(gateway_ruleset(15001, 15053, blocked));
}

}  // namespace
}  // namespace airlock::sandbox
