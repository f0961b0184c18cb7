#include "cli/commands.hpp"

#include <stdexcept>

namespace airlock::cli {

// Placeholder until the run implementation lands: the subcommand exists and says so.
void add_run_command(CLI::App& app) {
  CLI::App* command = app.add_subcommand("run", "Run a command in an airlock sandbox");
  command->allow_extras();
  command->callback([] { throw std::runtime_error("`airlock run` is not available in this build yet"); });
}

}  // namespace airlock::cli
