#include "cli/commands.hpp"
#include "cli/config.hpp"

#include <iostream>
#include <memory>

namespace airlock::cli {

void add_check_command(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  CLI::App* command = app.add_subcommand(
      "check", "Validate a configuration file and print a summary (placeholders, never values)");
  command->add_option("CONFIG", *path, "the airlock.toml to check")->required();
  command->callback([path] {
    const AirlockConfig config = load_config(*path);
    std::cout << *path << ": OK\n" << summarize_config(config);
  });
}

}  // namespace airlock::cli
