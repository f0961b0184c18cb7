#pragma once
// `value_from = "cmd:PROGRAM ARG..."`: a secret's value is the standard output of a command.
// No shell: the text is split on spaces and tabs, nothing else is interpreted (quotes, `$`, `*`
// and the like are refused: put anything more in a script). PROGRAM without a `/` is looked up
// in PATH; a relative path with a `/` is taken from the config file's directory. The command
// gets /dev/null as stdin, this process's stderr, and this process's environment without the
// variables `hidden_env` names (those that hold or name other secrets). Fails closed: a non-zero
// exit, a signal, the timeout, empty output or output over the cap is a ConfigError that names
// the secret and the program, never the output (nor the arguments, which may hold a token).
#include <airlock/secret_value.hpp>

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::cli {

struct CommandLimits {
  std::chrono::milliseconds timeout{10'000};  // from start to exit; then the command's process group is killed
  std::size_t max_bytes = 64u << 10;          // standard output
};

// `command` is the text after "cmd:". One trailing newline ("\n" or "\r\n") is removed.
SecretValue read_command_value(std::string_view env_var, std::string_view command, const std::string& base_dir,
                               const std::vector<std::string>& hidden_env, const CommandLimits& limits = {});

}  // namespace airlock::cli
