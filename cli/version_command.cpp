#include "cli/commands.hpp"

#include <iostream>

#ifndef AIRLOCK_VERSION
#define AIRLOCK_VERSION "unknown"
#endif

namespace airlock::cli {

void add_version_command(CLI::App& app) {
  app.add_subcommand("version", "Print airlock's version")->callback([] {
    std::cout << "airlock " << AIRLOCK_VERSION << "\n";
  });
}

}  // namespace airlock::cli
