#include "cli/command_line.hpp"

#include <cstring>

namespace airlock::cli {

SplitCommandLine split_command_line(int argc, char** argv) {
  SplitCommandLine out;
  int end = argc;
  if (argc >= 2 && std::strcmp(argv[1], "run") == 0) {
    for (int i = 2; i < argc; ++i) {
      if (std::strcmp(argv[i], "--") == 0) {
        end = i;
        out.command.emplace(argv + i + 1, argv + argc);
        break;
      }
    }
  }
  out.options.assign(argv, argv + end);
  return out;
}

}  // namespace airlock::cli
