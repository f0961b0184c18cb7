// The `airlock` command. Every subcommand registers itself (cli/commands.hpp); this file only
// hardens the process, dispatches, and turns any escaping error into one line and exit 2.
#include <airlock/secret_value.hpp>

#include "cli/command_line.hpp"
#include "cli/commands.hpp"

#include <exception>
#include <iostream>
#include <utility>

int main(int argc, char** argv) {
  airlock::harden_process();
  CLI::App app{"airlock: run untrusted code with placeholders instead of credentials"};
  app.require_subcommand(1);
  airlock::cli::add_version_command(app);
  airlock::cli::add_check_command(app);
  airlock::cli::SplitCommandLine split = airlock::cli::split_command_line(argc, argv);
  airlock::cli::add_run_command(app, std::move(split.command));
  airlock::cli::add_gateway_command(app);
  airlock::cli::add_ca_command(app);
  try {
    app.parse(static_cast<int>(split.options.size()), split.options.data());
  } catch (const CLI::RuntimeError& e) {
    return e.get_exit_code();  // a command's chosen exit status
  } catch (const CLI::Success& e) {
    return app.exit(e);  // --help
  } catch (const CLI::ParseError& e) {
    app.exit(e);  // prints the usage error
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "airlock: error: " << e.what() << "\n";
    return 2;
  } catch (...) {
    std::cerr << "airlock: error: unknown failure\n";
    return 2;
  }
  return 0;
}
