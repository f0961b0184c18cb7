#pragma once
// Each `airlock` subcommand registers itself from its own file.
//
// Conventions for a command's callback (it runs inside app.parse() in main.cpp):
// - a failure throws (airlock::ConfigError for a bad configuration, std::runtime_error
//   otherwise); main prints "airlock: error: <message>" to stderr and exits 2;
// - a command that must exit with another status throws CLI::RuntimeError(status), which main
//   turns into that exit status without printing anything.
#include <CLI/CLI.hpp>

#include <optional>
#include <string>
#include <vector>

namespace airlock::cli {

void add_version_command(CLI::App& app);  // version_command.cpp
void add_check_command(CLI::App& app);    // check_command.cpp
void add_ca_command(CLI::App& app);       // ca_command.cpp
void add_gateway_command(CLI::App& app);  // gateway_command.cpp
// `command`: what followed `--` on the command line (split_command_line), passed verbatim.
void add_run_command(CLI::App& app,       // run_command.cpp
                     std::optional<std::vector<std::string>> command = std::nullopt);

}  // namespace airlock::cli
