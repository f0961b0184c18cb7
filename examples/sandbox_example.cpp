// A user's program that starts an airlock sandbox with airlock::Sandbox (find_package(airlock),
// target airlock::airlock) and runs commands in it. Built and run by the test suite (in the
// build tree, and against an installed package by tests/e2e/test_sdk_cpp.py): it exits non-zero
// if an expectation does not hold.
//
// The value here is a fake one; a real program reads it from wherever it keeps credentials.
#include <airlock/airlock.hpp>

#include <iostream>
#include <string>

int main() {
  airlock::SandboxBuilder builder;
  builder
      .secret([](airlock::SecretBuilder& s) -> airlock::SecretBuilder& {
        return s.env("OPENAI_API_KEY").value("sk-FAKE-sandbox-example").allow_host("api.openai.com");
      })
      .network([](airlock::NetworkBuilder& n) -> airlock::NetworkBuilder& {
        return n.on_secret_violation(airlock::ViolationAction::kBlockAndLog);
      });

  airlock::SandboxSettings settings;
  settings.name = "example";
  settings.env = {{"GREETING", "hello from the sandbox"}};

  try {
    airlock::Sandbox sandbox = airlock::Sandbox::start(builder.build(), settings);
    // The sandbox sees the placeholder, never the value.
    const airlock::RunResult seen = sandbox.run({"sh", "-c", "echo \"$OPENAI_API_KEY\""});
    std::cout << "the sandbox sees: " << seen.stdout_bytes;
    // Commands share the sandbox: the second one reads what the first one wrote.
    sandbox.run({"sh", "-c", "echo \"$GREETING\" > /tmp/note"});
    const airlock::RunResult note = sandbox.run({"cat", "/tmp/note"});
    std::cout << "the second command reads: " << note.stdout_bytes;
    const airlock::RunResult failed = sandbox.run({"sh", "-c", "exit 3"});
    std::cout << "exit status: " << failed.exit_code << "\n";
    sandbox.stop();
    const bool ok = seen.stdout_bytes == "$MSB_OPENAI_API_KEY\n" && note.stdout_bytes == "hello from the sandbox\n" &&
                    failed.exit_code == 3;
    std::cout << (ok ? "sandbox_example: all expectations hold\n" : "sandbox_example: an expectation failed\n");
    return ok ? 0 : 1;
  } catch (const airlock::ConfigError& e) {
    std::cerr << "sandbox_example: configuration: " << e.what() << "\n";
  } catch (const airlock::SandboxError& e) {
    std::cerr << "sandbox_example: " << e.what() << "\n";
  }
  return 1;
}
