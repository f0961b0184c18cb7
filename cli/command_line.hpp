#pragma once
// `airlock run [OPTIONS] -- CMD ARGS...`: what follows the first `--` is the guest's argv, byte for
// byte. It is cut off before the option parser sees it (CLI11 would split `[1,2]` into `1`, `2`
// and read `-t` or `--x=y` as its own options).
#include <optional>
#include <string>
#include <vector>

namespace airlock::cli {

struct SplitCommandLine {
  std::vector<char*> options;  // argv for the option parser: up to (not including) the `--`
  std::optional<std::vector<std::string>> command;  // after the `--`; nullopt without one
};

// Splits only `airlock run ...` (argv[1] == "run"); any other command line goes to the parser
// whole. The returned pointers point into argv.
SplitCommandLine split_command_line(int argc, char** argv);

}  // namespace airlock::cli
