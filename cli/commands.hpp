#pragma once
// Each `airlock` subcommand registers itself from its own file.
#include <CLI/CLI.hpp>

namespace airlock::cli {

void add_check_command(CLI::App& app);    // check_command.cpp
void add_ca_command(CLI::App& app);       // ca_command.cpp
void add_gateway_command(CLI::App& app);  // gateway_command.cpp
void add_run_command(CLI::App& app);      // run_command.cpp

}  // namespace airlock::cli
