#include "cli/commands.hpp"

#include "cli/build_commit.hpp"  // generated at build time (cmake/git_version.cmake)

#include <iostream>

#ifndef AIRLOCK_VERSION
#define AIRLOCK_VERSION "unknown"
#endif

namespace airlock::cli {

void add_version_command(CLI::App& app) {
  app.add_subcommand("version", "Print airlock's version and the commit it was built from")->callback([] {
    std::cout << "airlock " << AIRLOCK_VERSION << " (" << AIRLOCK_BUILD_COMMIT << ")\n";
  });
}

}  // namespace airlock::cli
