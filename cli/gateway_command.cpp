#include "cli/commands.hpp"

#include <stdexcept>

namespace airlock::cli {

// Placeholder until the gateway implementation lands: the subcommand exists and says so.
void add_gateway_command(CLI::App& app) {
  CLI::App* command = app.add_subcommand("gateway", "Run the airlock gateway on its own (transparent or explicit proxy)");
  command->allow_extras();
  command->callback([] { throw std::runtime_error("`airlock gateway` is not available in this build yet"); });
}

}  // namespace airlock::cli
