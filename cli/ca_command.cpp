#include "cli/commands.hpp"

#include <stdexcept>

namespace airlock::cli {

// Placeholder until the ca implementation lands: the subcommand exists and says so.
void add_ca_command(CLI::App& app) {
  CLI::App* command = app.add_subcommand("ca", "Manage airlock's local certificate authority");
  command->allow_extras();
  command->callback([] { throw std::runtime_error("`airlock ca` is not available in this build yet"); });
}

}  // namespace airlock::cli
