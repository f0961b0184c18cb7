#include "cli/command_value.hpp"
#include "cli/config.hpp"

#include <airlock/errors.hpp>
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

namespace airlock::cli {
namespace {

constexpr const char* kFake = "sk-FAKE-cmd-test-9a7c31";  // an obviously fake value

class CommandValue : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("airlock-cmd-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  // An executable script in the test directory; returns its name relative to it ("./NAME").
  std::string script(const std::string& name, const std::string& body) {
    const auto path = dir_ / name;
    std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
    ::chmod(path.c_str(), 0755);
    return "./" + name;
  }
  std::string value(const std::string& command, const std::vector<std::string>& hidden = {}, CommandLimits limits = {}) {
    return std::string(read_command_value("KEY", command, dir_.string(), hidden, limits).expose());
  }
  // The error, checked to name the secret and to hold neither the value nor the output.
  std::string error(const std::string& command, CommandLimits limits = {}) {
    try {
      read_command_value("KEY", command, dir_.string(), {}, limits);
    } catch (const ConfigError& e) {
      const std::string what = e.what();
      EXPECT_EQ(what.find(kFake), std::string::npos) << "the error holds the output";
      EXPECT_NE(what.find("secret \"KEY\""), std::string::npos) << what;
      return what;
    }
    ADD_FAILURE() << "accepted: " << command;
    return {};
  }
  std::filesystem::path dir_;
};

TEST_F(CommandValue, StandardOutputIsTheValueWithOneTrailingNewlineRemoved) {
  EXPECT_EQ(value(script("ok", std::string("printf '%s\\n\\n' ") + kFake)), std::string(kFake) + "\n");
  EXPECT_EQ(value(script("crlf", std::string("printf '%s\\r\\n' ") + kFake)), kFake);
  EXPECT_EQ(value("printf %s " + std::string(kFake)), kFake) << "PATH lookup, arguments split on spaces";
}

TEST_F(CommandValue, FailsClosedWithoutShowingTheOutput) {
  const std::string print = std::string("printf %s ") + kFake + "; ";
  EXPECT_NE(error(script("fail", print + "exit 3")).find("exited with status 3"), std::string::npos);
  EXPECT_NE(error(script("empty", "exit 0")).find("printed nothing"), std::string::npos);
  EXPECT_NE(error(script("newline", "echo")).find("printed nothing"), std::string::npos);
  EXPECT_NE(error(script("signal", print + "kill -KILL $$")).find("killed by signal 9"), std::string::npos);
  EXPECT_NE(error("./no-such-program").find("cannot run"), std::string::npos);
  EXPECT_NE(error(script("big", "head -c 70000 /dev/zero")).find("more than 64 KiB"), std::string::npos);
  EXPECT_NE(error("yes " + std::string(kFake)).find("more than 64 KiB"), std::string::npos) << "endless output";
  CommandLimits tiny;
  tiny.max_bytes = 8;
  EXPECT_NE(error(script("nine", "printf 123456789"), tiny).find("more than"), std::string::npos);
  EXPECT_EQ(value(script("eight", "printf 12345678"), {}, tiny), "12345678");
}

TEST_F(CommandValue, TimeoutKillsTheCommandAndWhatItStarted) {
  CommandLimits quick;
  quick.timeout = std::chrono::milliseconds(300);
  const auto marker = dir_ / "survived";
  // A child in the background keeps the pipe open for 5 s: the timeout must not wait for it (the
  // bound; it was 2 s of 2, which left a loaded machine 1.7 s for the spawn and the kill).
  const std::string cmd = script("slow", "(sleep 5; touch " + marker.string() + ") & printf %s " + kFake + "; sleep 20");
  const auto start = std::chrono::steady_clock::now();
  EXPECT_NE(error(cmd, quick).find("did not finish within 300 ms"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(4500));
  std::this_thread::sleep_until(start + std::chrono::seconds(7));
  EXPECT_FALSE(std::filesystem::exists(marker)) << "the command's process group outlived the timeout";
}

TEST_F(CommandValue, NoShellIsInvolved) {
  for (const char* text : {"sh -c 'echo x'", "echo $HOME", "cat *", "echo x > f", "echo x; echo y", "echo `id`", ""}) {
    error(text);
  }
}

TEST_F(CommandValue, OtherSecretsAreNotInTheCommandsEnvironment) {
  ::setenv("AIRLOCK_CMD_TEST_OTHER", kFake, 1);
  const std::string cmd = script("env", "printf %s \"${AIRLOCK_CMD_TEST_OTHER-unset}\"");
  EXPECT_EQ(value(cmd, {"AIRLOCK_CMD_TEST_OTHER"}), "unset");
  EXPECT_EQ(value(cmd, {}), kFake) << "the rest of the environment is passed";
  ::unsetenv("AIRLOCK_CMD_TEST_OTHER");
}

TEST_F(CommandValue, TheCommandGetsNoOtherDescriptor) {
  const int fd = ::dup2(2, 100);  // inheritable, like an asio socket
  ASSERT_EQ(fd, 100);
  EXPECT_EQ(value(script("fds", "[ -e /proc/self/fd/100 ] && echo leaked || echo closed")), "closed");
  ::close(fd);
}

// Through the config file: a cmd: source, and the env: source of another secret hidden from it.
TEST_F(CommandValue, ConfigFileSource) {
  ::setenv("AIRLOCK_CMD_TEST_OTHER", kFake, 1);
  script("token", "printf %s \"cmd-${AIRLOCK_CMD_TEST_OTHER-unset}\"");
  const std::string toml =
      "[[secret]]\nenv = \"A\"\nvalue_from = \"cmd:./token\"\nallow_hosts = [\"a.example\"]\n"
      "[[secret]]\nenv = \"B\"\nvalue_from = \"env:AIRLOCK_CMD_TEST_OTHER\"\nallow_hosts = [\"b.example\"]\n";
  AirlockConfig config = parse_config(toml, "test.toml", dir_.string());
  ASSERT_EQ(config.sandbox.secrets.size(), 2u);
  EXPECT_EQ(std::string(config.sandbox.secrets[0].value().expose()), "cmd-unset");
  ::unsetenv("AIRLOCK_CMD_TEST_OTHER");
  script("token", std::string("printf %s ") + kFake + "; exit 1");
  try {
    parse_config(toml, "test.toml", dir_.string());
    ADD_FAILURE() << "accepted";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.find(kFake), std::string::npos);
    EXPECT_NE(what.find("test.toml:3: secret \"A\": value_from \"cmd:\" command"), std::string::npos) << what;
  }
}

}  // namespace
}  // namespace airlock::cli
