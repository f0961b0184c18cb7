// A user's program against airlock's public C++ API (include/airlock/airlock.hpp).
// Built and run by the test suite: it exits non-zero if an expectation does not hold.
#include <airlock/airlock.hpp>

#include <iostream>
#include <sstream>
#include <string>

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
  if (!ok) {
    std::cerr << "example_api: expectation failed: " << what << "\n";
    ++failures;
  }
}

}  // namespace

int main() {
  using airlock::ViolationAction;

  // The Rust-style builder, the shorthand and the plain-struct form side by side.
  airlock::SecretEnvOptions github;
  github.allow_hosts = {"api.github.com"};
  github.allow_host_patterns = {"*.githubusercontent.com"};
  github.on_violation = ViolationAction::kBlockAndTerminate;

  airlock::SandboxBuilder sandbox;
  sandbox
      .secret([](airlock::SecretBuilder& s) -> airlock::SecretBuilder& {
        return s.env("OPENAI_API_KEY")
            .value("sk-FAKE-example-key")
            .allow_host("api.openai.com")
            .inject_query(false)
            .require_tls_identity(true);
      })
      .secret(airlock::Secret::env("GITHUB_TOKEN", "ghp_FAKE_example", github))
      .secret_env("ANTHROPIC_API_KEY", "sk-ant-FAKE", "api.anthropic.com")
      .network([](airlock::NetworkBuilder& n) -> airlock::NetworkBuilder& {
        return n.on_secret_violation(airlock::parse_violation_action("block")).bypass_tls("*.pinned.example");
      });
  const airlock::SandboxConfig config = sandbox.build();

  expect(config.secrets.size() == 3, "three secrets");
  const airlock::SecretBinding& openai = config.secrets[0];
  expect(openai.placeholder() == "$MSB_OPENAI_API_KEY", "default placeholder");
  expect(openai.match_host("API.OpenAI.com.") != nullptr, "exact host, any case, trailing dot");
  expect(openai.match_host("openai.com") == nullptr, "the apex is not allowed");
  expect(config.secrets[1].match_host("raw.githubusercontent.com") != nullptr, "wildcard host");
  expect(config.secrets[1].match_host("githubusercontent.com") == nullptr, "wildcard excludes apex");
  expect(openai.scopes().headers && openai.scopes().basic_auth, "headers and basic auth by default");
  expect(!openai.scopes().body, "body off by default");

  // The last non-empty per-secret action wins over the network's.
  expect(config.violation_action() == ViolationAction::kBlockAndTerminate, "per-secret action wins");
  expect(airlock::to_string(config.violation_action()) == "block-and-terminate", "action string");

  // Values print as <redacted> and compare in constant time.
  std::ostringstream printed;
  printed << openai.value();
  expect(printed.str() == "<redacted>", "value is redacted when printed");
  expect(openai.value().equals("sk-FAKE-example-key"), "value compares");

  // Broken rules are errors naming the secret and the rule.
  try {
    airlock::SandboxBuilder bad;
    bad.secret_env("TOKEN", "FAKE", "*.com");
    expect(false, "a wildcard over a single label is rejected");
  } catch (const airlock::ConfigError& e) {
    const std::string what = e.what();
    expect(what.find("secret \"TOKEN\"") == 0, "error names the secret");
    expect(what.find("FAKE") == std::string::npos, "error never holds the value");
  }

  if (failures == 0) std::cout << "example_api: all expectations hold\n";
  return failures == 0 ? 0 : 1;
}
