#include "cli/config.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace airlock::cli {
namespace {

constexpr const char* kFake = "sk-FAKE-config-test-31337";

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("airlock-config-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    ::setenv("AIRLOCK_TEST_KEY", kFake, 1);
    ::unsetenv("AIRLOCK_TEST_MISSING");
  }
  void TearDown() override {
    std::filesystem::remove_all(dir_);
    ::unsetenv("AIRLOCK_TEST_KEY");
  }

  std::string write(const std::string& name, const std::string& text) {
    const auto path = dir_ / name;
    std::ofstream(path, std::ios::binary) << text;
    return path.string();
  }

  AirlockConfig parse(const std::string& toml) { return parse_config(toml, "test.toml", dir_.string()); }

  // The error for `toml`; fails the test if it was accepted or if the message holds the value.
  std::string error(const std::string& toml) {
    try {
      parse(toml);
    } catch (const ConfigError& e) {
      const std::string what = e.what();
      EXPECT_EQ(what.find(kFake), std::string::npos) << what;
      return what;
    }
    ADD_FAILURE() << "accepted:\n" << toml;
    return "";
  }

  std::filesystem::path dir_;
};

const std::string kSecret = R"(
[[secret]]
env = "OPENAI_API_KEY"
value_from = "env:AIRLOCK_TEST_KEY"
allow_hosts = ["api.openai.com"]
)";

TEST_F(ConfigTest, FullSchema) {
  const std::string ca = write("corp-ca.pem", "not checked here\n");
  const AirlockConfig c = parse(R"(
[network]
on_secret_violation = "block-and-terminate"
intercept_ports = [443, 8443, 443]
tls_bypass = ["*.pinned.example", "exact.example"]
max_body_bytes = 1048576
[[network.upstream_ca]]
file = "corp-ca.pem"
hosts = "*.corp.example"
[[network.upstream_ca]]
file = ")" + ca + R"("

[[secret]]
env = "OPENAI_API_KEY"
value_from = "env:AIRLOCK_TEST_KEY"
allow_hosts = ["api.openai.com"]
allow_host_patterns = ["*.openai.com"]
placeholder = "__OPENAI__"
require_tls_identity = false
on_violation = "block"
inject = { headers = false, basic_auth = false, query = true, body = true }

[[secret]]
env = "ANY"
value_from = "env:AIRLOCK_TEST_KEY"
allow_any_host_dangerous = true

[gateway]
transparent_listen = "127.0.0.1:15001"
proxy_listen = "127.0.0.1:3128"
audit_log = "/var/log/airlock/audit.jsonl"
home = "/var/lib/airlock"
log_level = "debug"
resolve_pins_with_host_dns = true
)");
  const NetworkConfig& n = c.sandbox.network;
  EXPECT_EQ(n.on_secret_violation, ViolationAction::kBlockAndTerminate);
  EXPECT_EQ(n.intercept_ports, (std::vector<std::uint16_t>{443, 8443}));
  ASSERT_EQ(n.tls_bypass.size(), 2u);
  EXPECT_EQ(n.tls_bypass[0].text(), "*.pinned.example");
  EXPECT_EQ(n.max_body_bytes, 1048576u);
  ASSERT_EQ(n.upstream_cas.size(), 2u);
  EXPECT_EQ(n.upstream_cas[0].pem_file, ca);  // relative to the config's directory
  EXPECT_EQ(n.upstream_cas[0].for_hosts->text(), "*.corp.example");
  EXPECT_FALSE(n.upstream_cas[1].for_hosts.has_value());

  ASSERT_EQ(c.sandbox.secrets.size(), 2u);
  const SecretBinding& s = c.sandbox.secrets[0];
  EXPECT_EQ(s.env_var(), "OPENAI_API_KEY");
  EXPECT_TRUE(s.value().equals(kFake));
  EXPECT_EQ(s.placeholder(), "__OPENAI__");
  EXPECT_EQ(s.hosts().size(), 2u);
  EXPECT_FALSE(s.require_tls_identity());
  EXPECT_EQ(s.on_violation(), ViolationAction::kBlock);
  EXPECT_EQ(s.scopes(), (InjectionScopes{false, false, true, true}));
  EXPECT_TRUE(c.sandbox.secrets[1].any_host());
  EXPECT_EQ(c.sandbox.violation_action(), ViolationAction::kBlock);

  EXPECT_EQ(c.gateway.transparent_listen, "127.0.0.1:15001");
  EXPECT_EQ(c.gateway.proxy_listen, "127.0.0.1:3128");
  EXPECT_EQ(c.gateway.audit_log, "/var/log/airlock/audit.jsonl");
  EXPECT_EQ(c.gateway.home, "/var/lib/airlock");
  EXPECT_EQ(c.gateway.log_level, "debug");
  EXPECT_TRUE(c.gateway.resolve_pins_with_host_dns);
}

TEST_F(ConfigTest, Defaults) {
  const AirlockConfig c = parse(kSecret);
  const SecretBinding& s = c.sandbox.secrets.at(0);
  EXPECT_EQ(s.placeholder(), "$MSB_OPENAI_API_KEY");
  EXPECT_EQ(s.scopes(), InjectionScopes{});
  EXPECT_TRUE(s.require_tls_identity());
  EXPECT_EQ(c.sandbox.violation_action(), ViolationAction::kBlockAndLog);
  EXPECT_EQ(c.sandbox.network.intercept_ports, std::vector<std::uint16_t>{443});
  EXPECT_EQ(c.sandbox.network.max_body_bytes, kDefaultMaxBodyBytes);
  EXPECT_FALSE(c.gateway.resolve_pins_with_host_dns);
  EXPECT_TRUE(c.gateway.log_level.empty());
}

TEST_F(ConfigTest, EmptyFileIsAnEmptyConfig) {
  const AirlockConfig c = parse("");
  EXPECT_TRUE(c.sandbox.secrets.empty());
}

TEST_F(ConfigTest, FileValueHasOneTrailingNewlineStripped) {
  write("key", std::string(kFake) + "\n\n");
  write("key-crlf", std::string(kFake) + "\r\n");
  write("key-bare", kFake);
  const auto value_of = [&](const std::string& file) -> std::string {
    return std::string(parse("[[secret]]\nenv = \"K\"\nvalue_from = \"file:" + file + "\"\nallow_hosts = [\"a.example\"]\n")
        .sandbox.secrets.at(0)
        .value()
        .expose());
  };
  EXPECT_EQ(std::string(value_of("key")), std::string(kFake) + "\n");
  EXPECT_EQ(std::string(value_of("key-crlf")), kFake);
  EXPECT_EQ(std::string(value_of("key-bare")), kFake);
  EXPECT_EQ(std::string(value_of((dir_ / "key-bare").string())), kFake);  // absolute path
}

TEST_F(ConfigTest, InlineValueIsRejected) {
  const std::string e = error("[[secret]]\nenv = \"OPENAI_API_KEY\"\nvalue = \"" + std::string(kFake) +
                              "\"\nallow_hosts = [\"api.openai.com\"]\n");
  EXPECT_EQ(e, "test.toml:3: secret \"OPENAI_API_KEY\": inline values are not allowed: shell history and process "
               "listings leak them; use value_from = \"env:NAME\", \"file:PATH\" or \"cmd:PROGRAM ARG...\"");
}

TEST_F(ConfigTest, InlineValueOfAnyTypeIsRejected) {
  EXPECT_NE(error("[[secret]]\nvalue = 12345\n").find("inline values are not allowed"), std::string::npos);
}

TEST_F(ConfigTest, UnknownKeysAreErrors) {
  EXPECT_EQ(error("[netwrk]\n"),
            "test.toml:1: unknown key \"netwrk\" in the top level (expected one of: network, secret, gateway, sandbox)");
  EXPECT_NE(error("[network]\nintercept_port = [443]\n").find("test.toml:2: unknown key \"intercept_port\" in [network]"),
            std::string::npos);
  EXPECT_NE(error(kSecret + "alow_hosts = [\"x.example\"]\n").find("unknown key \"alow_hosts\" in [[secret]]"),
            std::string::npos);
  EXPECT_NE(error(kSecret + "inject = { header = true }\n").find("unknown key \"header\" in secret \"OPENAI_API_KEY\": inject"),
            std::string::npos);
  EXPECT_NE(error("[gateway]\nlisten = \"x\"\n").find("unknown key \"listen\" in [gateway]"), std::string::npos);
  EXPECT_NE(error("[[network.upstream_ca]]\nfile = \"x\"\nhost = \"*.a.example\"\n")
                .find("unknown key \"host\" in [[network.upstream_ca]]"),
            std::string::npos);
}

TEST_F(ConfigTest, MissingEnvVarNamesSecretAndSource) {
  EXPECT_EQ(error("[[secret]]\nenv = \"K\"\nvalue_from = \"env:AIRLOCK_TEST_MISSING\"\nallow_hosts = [\"a.example\"]\n"),
            "test.toml:3: secret \"K\": value_from \"env:AIRLOCK_TEST_MISSING\": environment variable "
            "\"AIRLOCK_TEST_MISSING\" is not set");
}

TEST_F(ConfigTest, EmptyEnvVarIsAnError) {
  ::setenv("AIRLOCK_TEST_MISSING", "", 1);
  EXPECT_NE(error("[[secret]]\nenv = \"K\"\nvalue_from = \"env:AIRLOCK_TEST_MISSING\"\nallow_hosts = [\"a.example\"]\n")
                .find("is empty"),
            std::string::npos);
}

TEST_F(ConfigTest, UnreadableFileNamesSecretAndSource) {
  const std::string e =
      error("[[secret]]\nenv = \"K\"\nvalue_from = \"file:/nonexistent/airlock-key\"\nallow_hosts = [\"a.example\"]\n");
  EXPECT_EQ(e, "test.toml:3: secret \"K\": value_from \"file:/nonexistent/airlock-key\": cannot read "
               "\"/nonexistent/airlock-key\": No such file or directory");
}

TEST_F(ConfigTest, DirectoryAndEmptyAndHugeFilesAreRejected) {
  write("empty", "\n");
  write("huge", std::string(70000, 'k'));
  const auto err = [&](const std::string& src) {
    return error("[[secret]]\nenv = \"K\"\nvalue_from = \"" + src + "\"\nallow_hosts = [\"a.example\"]\n");
  };
  EXPECT_NE(err("file:" + dir_.string()).find("is not a regular file"), std::string::npos);
  EXPECT_NE(err("file:empty").find("is empty"), std::string::npos);
  EXPECT_NE(err("file:huge").find("larger than 64 KiB"), std::string::npos);
  EXPECT_NE(err("file:").find("needs a path"), std::string::npos);
  EXPECT_NE(err("env:").find("needs a variable name"), std::string::npos);
  EXPECT_NE(err(kFake).find("must be \"env:NAME\", \"file:PATH\" or \"cmd:PROGRAM ARG...\""), std::string::npos);
}

TEST_F(ConfigTest, SecretRulesCarryFileAndLine) {
  EXPECT_EQ(error("\n[[secret]]\nenv = \"K\"\nvalue_from = \"env:AIRLOCK_TEST_KEY\"\nallow_host_patterns = [\"*.com\"]\n"),
            "test.toml:2: secret \"K\": host \"*.com\": a wildcard over a single label would match a whole "
            "top-level domain; use at least two labels after `*.`");
  EXPECT_NE(error("[[secret]]\nenv = \"K\"\nvalue_from = \"env:AIRLOCK_TEST_KEY\"\n")
                .find("secret \"K\": at least one allowed host"),
            std::string::npos);
  EXPECT_NE(error(kSecret + "placeholder = \"a\\nb\"\n").find("placeholder must not contain CR, LF or NUL"),
            std::string::npos);
  EXPECT_NE(error(kSecret + "on_violation = \"kill\"\n").find("unknown violation action \"kill\""), std::string::npos);
  EXPECT_NE(error("[[secret]]\nvalue_from = \"env:AIRLOCK_TEST_KEY\"\n").find("needs env = \"NAME\""),
            std::string::npos);
  EXPECT_NE(error("[[secret]]\nenv = \"K\"\nallow_hosts = [\"a.example\"]\n").find("value_from is required"),
            std::string::npos);
}

TEST_F(ConfigTest, SetRulesAreChecked) {
  EXPECT_NE(error(kSecret + kSecret).find("env var is bound twice"), std::string::npos);
  const std::string two = kSecret + "placeholder = \"P\"\n" +
                          "[[secret]]\nenv = \"B\"\nvalue_from = \"env:AIRLOCK_TEST_KEY\"\nallow_hosts = [\"b.example\"]\n"
                          "placeholder = \"xPx\"\n";
  EXPECT_NE(error(two).find("no placeholder may contain another"), std::string::npos);
}

TEST_F(ConfigTest, TypeErrors) {
  EXPECT_NE(error(kSecret + "allow_any_host_dangerous = \"yes\"\n").find("must be true or false"), std::string::npos);
  EXPECT_NE(error(kSecret + "placeholder = 5\n").find("must be a string"), std::string::npos);
  EXPECT_NE(error("[network]\nintercept_ports = 443\n").find("must be an array"), std::string::npos);
  EXPECT_NE(error("[network]\nintercept_ports = []\n").find("must not be empty"), std::string::npos);
  EXPECT_NE(error("[network]\nintercept_ports = [0]\n").find("not in 1..65535"), std::string::npos);
  EXPECT_NE(error("[network]\nintercept_ports = [65536]\n").find("not in 1..65535"), std::string::npos);
  EXPECT_NE(error("[network]\nmax_body_bytes = 0\n").find("greater than 0"), std::string::npos);
  EXPECT_NE(error("[network]\ntls_bypass = [\"*\"]\n").find("bare `*`"), std::string::npos);
  EXPECT_NE(error("[network]\non_secret_violation = \"drop\"\n").find("unknown violation action"), std::string::npos);
  EXPECT_NE(error("[gateway]\nlog_level = \"verbose\"\n").find("log_level \"verbose\""), std::string::npos);
  EXPECT_NE(error("secret = 1\n").find("[[secret]] tables"), std::string::npos);
  EXPECT_NE(error("[[network.upstream_ca]]\nhosts = \"*.a.example\"\n").find("needs file"), std::string::npos);
  EXPECT_NE(error("[[network.upstream_ca]]\nfile = \"/nonexistent/ca.pem\"\n").find("cannot be read"),
            std::string::npos);
}

TEST_F(ConfigTest, EgressRules) {
  const AirlockConfig c = parse("[network]\negress = [\"allow@10.1.2.0/24:tcp:80,443\", \"deny@*.evil.example\", "
                                "\"deny@203.0.113.9:udp\"]\n");
  EXPECT_EQ(c.sandbox.network.egress,
            (std::vector<std::string>{"allow@10.1.2.0/24:tcp:80,443", "deny@*.evil.example", "deny@203.0.113.9:udp"}));
  EXPECT_NE(summarize_config(c).find("egress:               allow@10.1.2.0/24:tcp:80,443, deny@*.evil.example, "),
            std::string::npos);
  // Each error names the line and the rule.
  EXPECT_NE(error("[network]\negress = \"allow@public\"\n").find("test.toml:2: egress must be an array"),
            std::string::npos);
  EXPECT_NE(error("[network]\negress = [\"permit@public\"]\n").find("test.toml:2: rule 'permit@public'"),
            std::string::npos);
  EXPECT_NE(error("[network]\negress = [\"allow@10.0.0.0/33\"]\n").find("rule 'allow@10.0.0.0/33'"),
            std::string::npos);
  EXPECT_NE(error("[network]\negress = [\n  \"allow@8.8.8.8:udp:53\"]\n").find("test.toml:3: rule 'allow@8.8.8.8:udp:53': "
                                                                            "airlock relays TCP and DNS only"),
            std::string::npos);
  EXPECT_NE(error("[network]\negress = [1]\n").find("must be a string"), std::string::npos);
}

TEST_F(ConfigTest, InvalidTomlHasALine) {
  EXPECT_EQ(error("[network]\nmax_body_bytes = = 3\n").rfind("test.toml:2: not valid TOML: ", 0), 0u);
}

TEST_F(ConfigTest, TomlErrorsDoNotEchoTheOffendingText) {
  const std::string e = error("[[secret]]\nenv = \"K\"\nvalue = 98765432109876543210987\n");
  EXPECT_EQ(e.find("98765432109876543210987"), std::string::npos) << e;
  EXPECT_EQ(e.rfind("test.toml:3: not valid TOML: ", 0), 0u) << e;
}

TEST_F(ConfigTest, LoadConfigReadsAFile) {
  const std::string path = write("airlock.toml", kSecret);
  EXPECT_EQ(load_config(path).sandbox.secrets.size(), 1u);
  try {
    load_config((dir_ / "missing.toml").string());
    FAIL() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("missing.toml: cannot open"), std::string::npos) << e.what();
  }
}

TEST_F(ConfigTest, SummaryShowsPlaceholdersNeverValues) {
  const AirlockConfig c = parse(kSecret + "inject = { body = true }\n[network]\ntls_bypass = [\"*.pinned.example\"]\n");
  const std::string summary = summarize_config(c);
  EXPECT_EQ(summary.find(kFake), std::string::npos) << summary;
  EXPECT_NE(summary.find("OPENAI_API_KEY"), std::string::npos);
  EXPECT_NE(summary.find("placeholder:          $MSB_OPENAI_API_KEY"), std::string::npos) << summary;
  EXPECT_NE(summary.find("hosts:                api.openai.com"), std::string::npos);
  EXPECT_NE(summary.find("inject:               headers, basic_auth, body"), std::string::npos);
  EXPECT_NE(summary.find("require_tls_identity: yes"), std::string::npos);
  EXPECT_NE(summary.find("violation action:     block-and-log"), std::string::npos);
  EXPECT_NE(summary.find("tls_bypass:           *.pinned.example"), std::string::npos);
}

}  // namespace
}  // namespace airlock::cli

namespace airlock::cli {
namespace {

class ConfigViewTest : public ConfigTest {};

TEST_F(ConfigViewTest, FileSourcesAreRecordedSoTheGuestNeverSeesThem) {
  write("token", std::string(kFake) + "\n");
  const AirlockConfig config = parse(
      "[[secret]]\nenv = \"A\"\nvalue_from = \"file:token\"\nallow_hosts = [\"a.example.com\"]\n"
      "[[secret]]\nenv = \"B\"\nvalue_from = \"env:HOME\"\nallow_hosts = [\"b.example.com\"]\n");
  EXPECT_EQ(config.secret_files, (std::vector<std::string>{(dir_ / "token").string()}));
}

TEST_F(ConfigViewTest, SandboxTableTakesAnIdRange) {
  EXPECT_EQ(parse("[sandbox]\nid_range = \"200000-265535\"\n").view.id_range, "200000-265535");
  EXPECT_EQ(parse("").view.id_range, "");
  EXPECT_NE(error("[sandbox]\nids = 1\n").find("ids"), std::string::npos);
}

TEST(GatewayBudgetConfig, SizesCountsAndFailOpen) {
  const AirlockConfig c = parse_config(
      "[gateway]\nmemory_budget = \"2G\"\nclient_memory_budget = 67108864\nmax_connections = 500\n"
      "max_client_connections = 50\naudit_fail_open = true\n",
      "test.toml", "/tmp");
  EXPECT_EQ(c.gateway.memory_budget, std::uint64_t{2} << 30);
  EXPECT_EQ(c.gateway.client_memory_budget, std::uint64_t{64} << 20);
  EXPECT_EQ(c.gateway.max_connections, 500u);
  EXPECT_EQ(c.gateway.max_client_connections, 50u);
  EXPECT_TRUE(c.gateway.audit_fail_open);
  const AirlockConfig d = parse_config("", "test.toml", "/tmp");
  EXPECT_FALSE(d.gateway.memory_budget || d.gateway.max_connections || d.gateway.audit_fail_open);
}

TEST(GatewayBudgetConfig, BadValuesAreErrors) {
  auto error = [](const std::string& toml) {
    try {
      parse_config(toml, "test.toml", "/tmp");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(error("[gateway]\nmemory_budget = \"lots\"\n").find("must be a size like 512M"), std::string::npos);
  EXPECT_NE(error("[gateway]\nmemory_budget = 1000\n").find("at least 1M"), std::string::npos);
  EXPECT_NE(error("[gateway]\nclient_memory_budget = true\n").find("must be a size"), std::string::npos);
  EXPECT_NE(error("[gateway]\nmax_connections = 0\n").find("at least 1"), std::string::npos);
  EXPECT_NE(error("[gateway]\naudit_fail_open = 1\n").find("true or false"), std::string::npos);
}

}  // namespace
}  // namespace airlock::cli
