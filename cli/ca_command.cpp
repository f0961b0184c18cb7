// `airlock ca`: where the local CA lives and its certificate (what guests and clients must trust).
#include "cli/commands.hpp"
#include "cli/config.hpp"

#include <airlock/errors.hpp>
#include <tls/certificate_authority.hpp>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>

namespace airlock::cli {
namespace {

struct CaArgs {
  std::string home;
  std::string config;
  std::string file;
};

std::string home_of(const CaArgs& args) {
  if (!args.home.empty()) return args.home;
  if (!args.config.empty()) {
    AirlockConfig config = load_config(args.config);
    if (!config.gateway.home.empty()) return config.gateway.home;
  }
  return tls::default_home();
}

}  // namespace

void add_ca_command(CLI::App& app) {
  auto args = std::make_shared<CaArgs>();
  CLI::App* command = app.add_subcommand("ca", "Manage airlock's local certificate authority");
  command->require_subcommand(1);
  for (CLI::App* sub : {command->add_subcommand("path", "Print the CA certificate's path (generating the CA the first time)"),
                        command->add_subcommand("export", "Write the CA certificate (PEM) to FILE or stdout")}) {
    sub->add_option("--home", args->home, "airlock's state directory (default: $AIRLOCK_HOME or ~/.airlock)");
    sub->add_option("--config", args->config, "take the state directory from this config's [gateway] home");
  }
  CLI::App* path = command->get_subcommand("path");
  CLI::App* exp = command->get_subcommand("export");
  exp->add_option("FILE", args->file, "destination file (default: stdout)");
  path->callback([args] {
    std::string home = home_of(*args);
    tls::CertificateAuthority::load_or_create(home);
    std::cout << tls::ca_files(home).certificate << "\n";
  });
  exp->callback([args] {
    std::string pem = tls::CertificateAuthority::load_or_create(home_of(*args)).certificate_pem();
    if (args->file.empty() || args->file == "-") {
      std::cout << pem << std::flush;
      return;
    }
    std::ofstream out(args->file, std::ios::binary | std::ios::trunc);
    out << pem;
    out.close();
    if (!out) throw ConfigError("cannot write " + quote_for_message(args->file) + ": " + std::strerror(errno));
  });
}

}  // namespace airlock::cli
