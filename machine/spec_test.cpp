#include "machine/spec.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace airlock::machine {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kValue = "sk-fake-spec-value-0123456789";

std::string spec_with_secret(const std::string& secret_fields) {
  return std::string(R"({"version":1,"secrets":[{"env":"API_KEY","value":")") + kValue + "\"" + secret_fields + "}]}";
}

std::string error_of(std::string text) {
  try {
    parse_spec(text);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(MachineSpec, ParsesEveryField) {
  std::string text = R"({"version":1,"name":"worker",
    "secrets":[{"env":"STRIPE_KEY","value":"sk-fake","allow_hosts":["api.stripe.com"],
                "allow_host_patterns":["*.stripe.com"],"placeholder":"$MSB_STRIPE","require_tls":false,
                "scopes":{"headers":false,"basic_auth":false,"query":true,"body":true},"on_violation":"block"}],
    "network":{"on_secret_violation":"block-and-terminate","egress":["allow@203.0.113.2:tcp:443"],
               "intercept_ports":[443,8443],"tls_bypass":["*.bypass.test"],
               "upstream_cas":[{"file":"/tmp/ca.pem","hosts":"*.stripe.com"}],"max_body_bytes":1024,
               "dns_servers":["127.0.0.1:5353"]},
    "mounts":[{"host":"/srv/data","guest":"/data","read_only":true}],
    "rootfs":"/srv/root","workdir":"/work","env":{"B":"2","A":"1"},
    "limits":{"timeout_ms":5000,"memory_bytes":1048576,"cpus":1.5,"pids":64},
    "gateway":{"home":"/tmp/h","audit_log":"/tmp/a.jsonl","log_level":"info"},
    "command":["sh","-c","true"]})";
  const Spec spec = parse_spec(text);
  EXPECT_TRUE(text.empty());
  EXPECT_EQ(spec.name, "worker");
  ASSERT_EQ(spec.config.secrets.size(), 1u);
  const SecretBinding& s = spec.config.secrets[0];
  EXPECT_EQ(s.env_var(), "STRIPE_KEY");
  EXPECT_TRUE(s.value().equals("sk-fake"));
  ASSERT_EQ(s.hosts().size(), 2u);
  EXPECT_EQ(s.placeholder(), "$MSB_STRIPE");
  EXPECT_FALSE(s.require_tls_identity());
  EXPECT_EQ(s.scopes(), (InjectionScopes{false, false, true, true}));
  EXPECT_EQ(s.on_violation(), ViolationAction::kBlock);
  EXPECT_EQ(spec.config.network.on_secret_violation, ViolationAction::kBlockAndTerminate);
  EXPECT_EQ(spec.config.network.intercept_ports, (std::vector<std::uint16_t>{443, 8443}));
  EXPECT_EQ(spec.config.network.egress, (std::vector<std::string>{"allow@203.0.113.2:tcp:443"}));
  EXPECT_EQ(spec.config.network.max_body_bytes, 1024u);
  ASSERT_EQ(spec.config.network.upstream_cas.size(), 1u);
  EXPECT_EQ(spec.dns_servers, (std::vector<std::string>{"127.0.0.1:5353"}));
  EXPECT_EQ(spec.mounts, (std::vector<Mount>{{"/srv/data", "/data", true}}));
  EXPECT_EQ(spec.rootfs, "/srv/root");
  EXPECT_EQ(spec.workdir, "/work");
  ASSERT_EQ(spec.env.size(), 2u);
  EXPECT_EQ(spec.env[0].first, "B");  // the order given
  EXPECT_EQ(*spec.limits.timeout_ms, 5000u);
  EXPECT_EQ(*spec.limits.cpus, 1.5);
  EXPECT_EQ(spec.gateway.log_level, "info");
  EXPECT_EQ(spec.command, (std::vector<std::string>{"sh", "-c", "true"}));
  // §4: the last non-empty per-secret action wins over the network's.
  EXPECT_EQ(spec.config.violation_action(), ViolationAction::kBlock);
}

TEST(MachineSpec, DefaultsFollowTheSecretModel) {
  std::string text = spec_with_secret(R"(,"allow_hosts":["api.example.com"],"placeholder":"","require_tls":null)");
  const Spec spec = parse_spec(text);
  const SecretBinding& s = spec.config.secrets[0];
  EXPECT_EQ(s.placeholder(), "$MSB_API_KEY");
  EXPECT_TRUE(s.require_tls_identity());
  EXPECT_EQ(s.scopes(), InjectionScopes{});
  EXPECT_EQ(spec.config.violation_action(), ViolationAction::kBlockAndLog);
  EXPECT_TRUE(spec.command.empty());
}

TEST(MachineSpec, TheSeedsValidationRulesAreErrorsThatNeverHoldTheValue) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {spec_with_secret(""), "at least one"},
      {spec_with_secret(R"(,"allow_hosts":["*"])"), "not allowed in an exact host"},
      {spec_with_secret(R"(,"allow_host_patterns":["*"])"), "allow_any_host_dangerous"},
      {spec_with_secret(R"(,"allow_host_patterns":["*.com"])"), "single label"},
      {spec_with_secret(R"(,"allow_hosts":["a.test"],"placeholder":"a\nb")"), "placeholder"},
      {spec_with_secret(R"(,"allow_hosts":["a.test"],"placeholder":")" + std::string(1025, 'x') + "\""), "1024"},
      {spec_with_secret(R"(,"allow_hosts":["a.test"],"on_violation":"explode")"), "explode"},
      {R"({"version":1,"secrets":[{"env":"A=B","value":"v","allow_hosts":["a.test"]}]})", "="},
      {R"({"version":1,"secrets":[{"env":"","value":"v","allow_hosts":["a.test"]}]})", "env"},
      {R"({"version":1,"secrets":[{"env":"A","allow_hosts":["a.test"]}]})", "value is required"},
  };
  for (const auto& [text, rule] : cases) {
    const std::string error = error_of(text);
    EXPECT_THAT(error, HasSubstr(rule)) << text.substr(0, 120);
    EXPECT_THAT(error, HasSubstr("spec: "));
    EXPECT_THAT(error, Not(HasSubstr(kValue)));
  }
}

TEST(MachineSpec, TwoSecretsSharingAPlaceholderAreRefused) {
  EXPECT_THAT(error_of(R"({"version":1,"secrets":[
      {"env":"A","value":"v1","allow_hosts":["a.test"],"placeholder":"$P"},
      {"env":"B","value":"v2","allow_hosts":["b.test"],"placeholder":"$P"}]})"),
              HasSubstr("placeholder"));
}

TEST(MachineSpec, VersionUnknownKeysAndTypesAreChecked) {
  EXPECT_THAT(error_of(R"({"secrets":[]})"), HasSubstr("version is required"));
  EXPECT_THAT(error_of(R"({"version":2})"), HasSubstr("version 2 is not supported"));
  EXPECT_THAT(error_of(R"({"version":1,"secretz":[]})"), HasSubstr("unknown key \"secretz\""));
  EXPECT_THAT(error_of(spec_with_secret(R"(,"allow_hosts":["a.test"],"requre_tls":false)")),
              HasSubstr("unknown key \"requre_tls\""));
  EXPECT_THAT(error_of(R"({"version":1,"network":{"egress":"allow@x"}})"), HasSubstr("array of strings"));
  EXPECT_THAT(error_of(R"({"version":1,"mounts":[{"host":"rel","guest":"/g"}]})"), HasSubstr("absolute"));
  EXPECT_THAT(error_of(R"({"version":1,"limits":{"timeout_ms":-1}})"), HasSubstr("whole number"));
  EXPECT_THAT(error_of(R"({"version":1,"limits":{"cpus":0}})"), HasSubstr("cpus"));
  EXPECT_THAT(error_of(R"({"version":1,"env":{"A=B":"x"}})"), HasSubstr("'='"));
  EXPECT_THAT(error_of(R"({"version":1,"command":[""]})"), HasSubstr("command[0]"));
  EXPECT_THAT(error_of(R"([1])"), HasSubstr("JSON object"));
}

TEST(MachineSpec, ASyntaxErrorNeverQuotesTheInput) {
  // nlohmann's own message would quote the last token read: here, the value.
  std::string text = R"({"version":1,"secrets":[{"env":"A","value":")" + std::string(kValue) + "\u0001\"}]}";
  const std::string error = error_of(text);
  EXPECT_THAT(error, HasSubstr("not valid JSON"));
  EXPECT_THAT(error, Not(HasSubstr("sk-fake")));
}

TEST(MachineSpec, TheInputIsWipedOnErrorToo) {
  std::string text = spec_with_secret("");
  const std::string copy = text;
  EXPECT_THROW(parse_spec(text), ConfigError);
  EXPECT_TRUE(text.empty());
  std::string big(kMaxMessageBytes + 1, ' ');
  EXPECT_THAT(error_of(big), HasSubstr("longer than"));
}

TEST(MachineSpec, EncodeThenParseIsTheSameSpec) {
  std::string text = spec_with_secret(R"(,"allow_hosts":["api.example.com"],"allow_host_patterns":["*.example.com"],
      "on_violation":"block-and-terminate","scopes":{"body":true})");
  Spec spec = parse_spec(text);
  spec.mounts.push_back({"/a", "/b", true});
  spec.env.emplace_back("K", "V");
  spec.limits.pids = 7;
  spec.command = {"true"};
  std::string encoded = encode_spec(spec);
  EXPECT_THAT(encoded, HasSubstr(kValue));
  const Spec again = parse_spec(encoded);
  EXPECT_TRUE(encoded.empty());
  const SecretBinding& s = again.config.secrets[0];
  EXPECT_TRUE(s.value().equals(kValue));
  EXPECT_EQ(s.hosts().size(), 2u);
  EXPECT_EQ(s.on_violation(), ViolationAction::kBlockAndTerminate);
  EXPECT_TRUE(s.scopes().body);
  EXPECT_EQ(again.mounts, spec.mounts);
  EXPECT_EQ(again.env, spec.env);
  EXPECT_EQ(*again.limits.pids, 7u);
  EXPECT_EQ(again.command, spec.command);
}

TEST(MachineSpec, Workspace) {
  std::string text = R"({"version":1,"workspace":{"dir":"/srv/project","mode":"overlay"}})";
  Spec spec = parse_spec(text);
  EXPECT_EQ(spec.workspace.dir, "/srv/project");
  EXPECT_EQ(spec.workspace.mode, Workspace::Mode::kOverlay);
  std::string encoded = encode_spec(spec);
  EXPECT_EQ(parse_spec(encoded).workspace.mode, Workspace::Mode::kOverlay);
  std::string none = R"({"version":1,"workspace":{"mode":"none"}})";
  EXPECT_EQ(parse_spec(none).workspace.mode, Workspace::Mode::kNone);
  EXPECT_THAT(error_of(R"({"version":1,"workspace":{"mode":"rw"}})"), HasSubstr("read-write, overlay, none"));
  EXPECT_THAT(error_of(R"({"version":1,"workspace":{"dir":"rel"}})"), HasSubstr("absolute"));
  EXPECT_THAT(error_of(R"({"version":1,"workspace":{"dir":"/x","mode":"none"}})"), HasSubstr("mode none"));
}

TEST(MachineSpec, WipeZeroesTheBytes) {
  std::string s(64, 'v');
  const char* data = s.data();
  wipe(s);
  EXPECT_TRUE(s.empty());
  for (int i = 0; i < 64; ++i) EXPECT_EQ(data[i], '\0');
}

}  // namespace
}  // namespace airlock::machine
