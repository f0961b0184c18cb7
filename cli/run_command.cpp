// `airlock run`: a command in a sandbox whose environment holds placeholders and whose only
// network is the gateway. Also `airlock gc`, which removes what a crashed run left behind.
//
// Exit status: the command's own; 124 when --timeout elapsed; 125 when the sandbox was
// terminated (block-and-terminate); 126/127 when the command cannot be run / is not found;
// 2 for a usage or configuration error; 3 when the sandbox could not be set up.
#include "cli/commands.hpp"
#include "cli/config.hpp"

#include "sandbox/sandbox.hpp"

#include "cli/egress.hpp"
#include "cli/network_services.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <climits>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <iostream>
#include <memory>
#include <thread>

namespace airlock::cli {
namespace {

struct RunArgs {
  std::string config;
  std::vector<std::string> secrets;
  std::vector<std::string> secret_files;
  std::vector<std::string> env;
  std::vector<std::string> env_pass;
  std::vector<std::string> volumes;
  std::string rootfs;
  std::string workdir;
  bool no_workdir = false;
  bool workdir_overlay = false;
  bool print_view = false;
  std::string id_range;
  bool tty = false;
  double timeout = 0;
  std::string memory;
  double cpus = 0;
  std::uint64_t pids = 0;
  std::string gateway_memory;
  std::uint64_t max_connections = 0;
  std::string ca_cert;
  std::vector<std::string> dns_servers;
  std::vector<std::string> egress;
  std::vector<std::string> command;
};

void add_hosts(SecretBuilder& builder, std::string_view hosts, const std::string& flag) {
  std::size_t start = 0;
  bool any = false;
  while (start <= hosts.size()) {
    const std::size_t comma = std::min(hosts.find(',', start), hosts.size());
    const std::string_view host = hosts.substr(start, comma - start);
    if (!host.empty()) {
      if (host.starts_with("*.")) builder.allow_host_pattern(host);
      else builder.allow_host(host);
      any = true;
    }
    start = comma + 1;
  }
  if (!any) throw ConfigError(flag + ": no host given after '@'");
}

// `--secret ENV@HOST[,HOST...]`: the value comes from the host's variable ENV. An inline value
// (`ENV=value@host`) is refused without repeating it: shell history and `ps` would keep it.
SecretBinding secret_from_env(const std::string& spec) {
  const std::size_t at = spec.find('@');
  const std::size_t eq = spec.find('=');
  if (eq != std::string::npos && (at == std::string::npos || eq < at)) {
    throw ConfigError("--secret " + spec.substr(0, eq) +
                      "=...: inline values are not accepted (shell history and process listings "
                      "would keep them); export the value and pass --secret " +
                      spec.substr(0, eq) + "@HOST, or use --secret-file");
  }
  if (at == std::string::npos || at == 0) {
    throw ConfigError("--secret " + spec + ": expected ENV@HOST[,HOST...]");
  }
  const std::string env = spec.substr(0, at);
  const char* value = std::getenv(env.c_str());
  if (value == nullptr) {
    throw ConfigError("--secret " + env + ": the host variable " + env + " is not set");
  }
  SecretBuilder builder;
  builder.env(env).value(SecretValue(value));
  add_hosts(builder, std::string_view(spec).substr(at + 1), "--secret " + env);
  return builder.build();
}

// `--secret-file ENV=PATH@HOST[,HOST...]`
SecretBinding secret_from_file(const std::string& spec, std::vector<std::string>& source_files) {
  const std::size_t eq = spec.find('=');
  const std::size_t at = spec.rfind('@');
  if (eq == std::string::npos || eq == 0 || at == std::string::npos || at < eq + 2) {
    throw ConfigError("--secret-file " + spec + ": expected ENV=PATH@HOST[,HOST...]");
  }
  const std::string env = spec.substr(0, eq);
  const std::string path = spec.substr(eq + 1, at - eq - 1);
  char cwd[PATH_MAX];
  const std::string base = ::getcwd(cwd, sizeof cwd) != nullptr ? cwd : "/";
  source_files.push_back(path.starts_with("/") ? path : base + "/" + path);
  SecretBuilder builder;
  builder.env(env).value(read_value_from(env, "file:" + path, base));
  add_hosts(builder, std::string_view(spec).substr(at + 1), "--secret-file " + env);
  return builder.build();
}

sandbox::SandboxOptions make_options(const RunArgs& args) {
  sandbox::SandboxOptions options;
  options.command = args.command;
  for (const std::string& kv : args.env) {
    const std::size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) throw ConfigError("--env " + kv + ": expected K=V");
    options.env.set.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
  }
  options.env.pass = args.env_pass;
  for (const std::string& v : args.volumes) options.volumes.push_back(sandbox::parse_volume(v));
  options.rootfs = args.rootfs;
  if (args.no_workdir && (!args.workdir.empty() || args.workdir_overlay)) {
    throw ConfigError("--no-workdir cannot be combined with --workdir or --workdir-overlay");
  }
  options.workdir = args.workdir;
  options.workspace = args.no_workdir        ? sandbox::SandboxOptions::Workspace::kNone
                      : args.workdir_overlay ? sandbox::SandboxOptions::Workspace::kOverlay
                                             : sandbox::SandboxOptions::Workspace::kReadWrite;
  if (!args.id_range.empty()) options.id_pool = sandbox::parse_id_range(args.id_range);
  options.tty = args.tty;
  if (args.timeout < 0) throw ConfigError("--timeout must be positive");
  if (args.timeout > 0) {
    options.limits.timeout = std::chrono::milliseconds(static_cast<long long>(args.timeout * 1000));
  }
  if (!args.memory.empty()) options.limits.memory_bytes = sandbox::parse_memory_size(args.memory);
  if (args.cpus < 0) throw ConfigError("--cpus must be positive");
  if (args.cpus > 0) options.limits.cpus = args.cpus;
  if (args.pids > 0) options.limits.pids = args.pids;
  if (!args.ca_cert.empty()) {
    std::ifstream in(args.ca_cert);
    if (!in) throw ConfigError("--ca-cert " + args.ca_cert + ": cannot read");
    options.ca_pem.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (options.ca_pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
      throw ConfigError("--ca-cert " + args.ca_cert + ": no PEM certificate in it");
    }
  }
  return options;
}

// Signals to `airlock run` go to the guest (through its init); SIGWINCH also resizes its pty.
// With `on_hangup` (a --config to reload), SIGHUP calls it instead of going to the guest.
// A signalfd and an eventfd, so stopping never waits for a polling tick.
class SignalForwarder {
 public:
  explicit SignalForwarder(sandbox::Sandbox& box, std::function<void()> on_hangup = nullptr)
      : box_(box), on_hangup_(std::move(on_hangup)) {
    const sigset_t set = forwarded();
    signals_ = ::signalfd(-1, &set, SFD_CLOEXEC);
    stop_ = ::eventfd(0, EFD_CLOEXEC);
    if (signals_ < 0 || stop_ < 0) throw sandbox::SandboxError("signalfd/eventfd failed");
    thread_ = std::thread([this] {
      for (;;) {
        pollfd fds[2] = {{signals_, POLLIN, 0}, {stop_, POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0) continue;
        if (fds[1].revents) return;
        signalfd_siginfo info{};
        if (::read(signals_, &info, sizeof info) != sizeof info) continue;
        const int sig = static_cast<int>(info.ssi_signo);
        if (sig == SIGHUP && on_hangup_) {
          on_hangup_();
          continue;
        }
        if (sig == SIGWINCH) box_.sync_terminal_size();
        box_.forward_signal(sig);
      }
    });
  }
  ~SignalForwarder() {
    const std::uint64_t one = 1;
    (void)!::write(stop_, &one, sizeof one);
    thread_.join();
    ::close(signals_);
    ::close(stop_);
  }
  static sigset_t forwarded() {
    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH}) sigaddset(&set, s);
    return set;
  }

 private:
  sandbox::Sandbox& box_;
  std::function<void()> on_hangup_;
  int signals_ = -1;
  int stop_ = -1;
  std::thread thread_;
};

// What this sandbox may make the gateway spend outside its cgroup (see sandbox_budget):
// --gateway-memory over [gateway] memory_budget over --memory; --max-connections over
// [gateway] max_connections.
gateway::BudgetLimits run_budget(const RunArgs& args, const GatewaySettings& settings) {
  std::optional<std::uint64_t> memory, gateway_memory;
  if (!args.memory.empty()) memory = sandbox::parse_memory_size(args.memory);
  if (!args.gateway_memory.empty()) gateway_memory = sandbox::parse_memory_size(args.gateway_memory);
  return sandbox_budget(settings, memory, gateway_memory, args.max_connections);
}

// SIGHUP with --config: the secrets read again (config, --secret, --secret-file) and given to the
// gateway. The guest's environment was fixed at start, so only values rotate: a secret added or
// removed, a changed placeholder or a new file: source (the guest's view hides the sources it had
// at start) is refused with a message, and the running secrets stay.
// "ENV=PLACEHOLDER" of each secret, sorted: what the guest's environment was built from.
std::vector<std::string> secret_names(const std::vector<SecretBinding>& set) {
  std::vector<std::string> out;
  for (const SecretBinding& s : set) out.push_back(s.env_var() + "=" + s.placeholder());
  std::sort(out.begin(), out.end());
  return out;
}

void reload_run_secrets(const RunArgs& args, const std::vector<std::string>& running,
                        const std::vector<std::string>& running_files, NetworkServices& services) {
  try {
    AirlockConfig config = load_config(args.config);
    std::vector<SecretBinding> secrets = std::move(config.sandbox.secrets);
    std::vector<std::string> files = std::move(config.secret_files);
    for (const std::string& spec : args.secrets) secrets.push_back(secret_from_env(spec));
    for (const std::string& spec : args.secret_files) secrets.push_back(secret_from_file(spec, files));
    validate_secret_set(secrets);
    if (secret_names(secrets) != running) {
      throw ConfigError("the secrets (or their placeholders) differ from those the sandbox started with; the guest's "
                        "environment cannot change, so a reload only rotates values: restart `airlock run` to add or "
                        "remove a secret");
    }
    std::vector<std::string> a = files, b = running_files;
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    if (a != b) {
      throw ConfigError("the file: sources differ from those at start (the guest's view hides only those): restart "
                        "`airlock run` to use another file");
    }
    const std::size_t count = secrets.size();
    const std::uint64_t generation = services.replace_secrets(std::move(secrets));
    std::cerr << "airlock: reloaded " << args.config << ": " << count << " secret value" << (count == 1 ? "" : "s")
              << " read again (generation " << generation << ")\n";
  } catch (const std::exception& e) {
    std::cerr << "airlock: reload failed, the running secrets stay: " << e.what() << "\n";
  }
}

int run(const RunArgs& args) {
  phase("begin");
  std::vector<SecretBinding> secrets;
  NetworkConfig network;
  GatewaySettings settings;
  std::vector<std::string> secret_files;
  std::string id_range;
  std::vector<std::string> running_files;  // for a reload's comparison
  if (!args.config.empty()) {
    AirlockConfig config = load_config(args.config);
    secrets = std::move(config.sandbox.secrets);
    network = std::move(config.sandbox.network);
    settings = std::move(config.gateway);
    secret_files = std::move(config.secret_files);
    id_range = config.view.id_range;
  }
  for (const std::string& spec : args.secrets) secrets.push_back(secret_from_env(spec));
  for (const std::string& spec : args.secret_files) secrets.push_back(secret_from_file(spec, secret_files));
  validate_secret_set(secrets);
  running_files = secret_files;
  sandbox::SandboxOptions options = make_options(args);
  if (args.id_range.empty() && !id_range.empty()) options.id_pool = sandbox::parse_id_range(id_range);
  options.secret_files = std::move(secret_files);
  if (args.print_view) {
    std::cout << sandbox::describe_view(options, secrets);
    return 0;
  }
  if (args.command.empty()) throw ConfigError("no command given (airlock run [OPTIONS] -- CMD...)");

  // Blocked before any thread starts, so every thread inherits the mask and only the
  // forwarder receives them.
  const sigset_t forwarded = SignalForwarder::forwarded();
  ::pthread_sigmask(SIG_BLOCK, &forwarded, nullptr);

  ::signal(SIGPIPE, SIG_IGN);  // the gateway writes to sockets the guest may have closed

  SandboxWithNetwork sandbox = make_sandbox_with_network(std::move(options), secrets, network, settings,
                                                       args.egress, args.dns_servers, run_budget(args, settings));
  sandbox::Sandbox& box = *sandbox.box;
  box.start();
  phase("sandbox started");
  std::size_t printed = 0;
  for (; printed < box.warnings().size(); ++printed) {
    std::cerr << "airlock: warning: " << box.warnings()[printed] << "\n";
  }
  sandbox::ExitStatus status;
  {
    const std::vector<std::string> running = secret_names(secrets);
    std::function<void()> on_hangup;
    if (!args.config.empty()) {
      on_hangup = [&args, &running, &running_files, &sandbox] {
        reload_run_secrets(args, running, running_files, *sandbox.services);
      };
    }
    SignalForwarder forwarder(box, std::move(on_hangup));
    status = box.wait();
  }
  phase("command ended");
  for (; printed < box.warnings().size(); ++printed) {
    std::cerr << "airlock: " << box.warnings()[printed] << "\n";
  }
  switch (status.kind) {
    case sandbox::ExitStatus::Kind::kTerminated:
      std::cerr << "airlock: sandbox terminated: " << status.reason << "\n";
      break;
    case sandbox::ExitStatus::Kind::kTimedOut:
      std::cerr << "airlock: sandbox timed out after " << args.timeout << " s\n";
      break;
    case sandbox::ExitStatus::Kind::kExited:
      break;
  }
  sandbox.services.reset();
  phase("gateway stopped");
  return status.code;
}

}  // namespace

void add_run_command(CLI::App& app, std::optional<std::vector<std::string>> after_separator) {
  auto args = std::make_shared<RunArgs>();
  CLI::App* command = app.add_subcommand(
      "run", "Run a command in a sandbox whose environment holds placeholders, not secrets");
  command->add_option("--config", args->config, "airlock.toml with secrets and network settings");
  command->add_option("--secret", args->secrets,
                      "ENV@HOST[,HOST...]: bind the host's variable ENV to these hosts "
                      "(*.example.com allowed); the sandbox sees a placeholder")
      ->allow_extra_args(false);
  command->add_option("--secret-file", args->secret_files,
                      "ENV=PATH@HOST[,HOST...]: the same, the value read from a file")
      ->allow_extra_args(false);
  command->add_option("--env", args->env, "K=V: set a variable in the sandbox")
      ->allow_extra_args(false);
  command->add_option("--env-pass", args->env_pass, "K: pass the host's variable K, if set")
      ->allow_extra_args(false);
  command->add_option("--volume,-v", args->volumes, "HOST:GUEST[:ro]: bind a host path")
      ->allow_extra_args(false);
  command->add_option("--rootfs", args->rootfs, "a directory to use as the guest's root");
  command->add_option("--workdir", args->workdir,
                      "DIR: the workspace, seen by the guest at the same path, read-write, as its working "
                      "directory (default: the current directory)");
  command->add_flag("--no-workdir", args->no_workdir, "share no directory (the command starts in HOME)");
  command->add_flag("--workdir-overlay", args->workdir_overlay,
                    "the guest may write in the workspace, but its writes go to a layer discarded at exit; "
                    "the host copy stays untouched");
  command->add_flag("--print-view", args->print_view,
                    "print what the guest would see of the host (mounts, workspace, hidden and rewritten "
                    "files) and exit");
  command->add_option("--id-range", args->id_range,
                      "FIRST-LAST: host ids reserved for sandboxes (each takes 65536 of them; default "
                      "1879048192-2147352575)");
  command->add_flag("-t,--tty", args->tty, "give the command a terminal");
  command->add_option("--timeout", args->timeout, "seconds; then the sandbox is killed (exit 124)");
  command->add_option("--memory", args->memory, "memory limit, e.g. 512M (cgroups)");
  command->add_option("--cpus", args->cpus, "CPU limit, e.g. 1.5 (cgroups)");
  command->add_option("--pids", args->pids, "process limit (cgroups)");
  command->add_option("--gateway-memory", args->gateway_memory,
                      "memory the gateway may hold for this sandbox (bodies it buffers to rewrite, output it "
                      "buffers), e.g. 128M; past it a request is blocked (default: the --memory value, else 256M)");
  command->add_option("--max-connections", args->max_connections,
                      "open connections of this sandbox through the gateway (default 1024)");
  command->add_option("--ca-cert", args->ca_cert,
                      "an extra CA certificate (PEM) the guest trusts; the gateway's CA is added "
                      "automatically");
  command->add_option("--dns-server", args->dns_servers,
                      "IP[:PORT]: the resolver the sandbox's DNS forwarder asks (default: the "
                      "host's /etc/resolv.conf)")
      ->allow_extra_args(false);
  command->add_option("--egress", args->egress,
                      "RULE: an egress rule, before the config file's (allow@api.example.com:tcp:443, "
                      "deny@private, allow@10.1.2.0/24:tcp:80; default: allow public TCP, deny the rest)")
      ->allow_extra_args(false);
  command->add_option("command", args->command, "the command and its arguments (after --)");
  command->footer(
      "Exit status: the command's; 124 timeout; 125 terminated (block-and-terminate); "
      "126/127 cannot run / not found; 2 usage or config error; 3 sandbox setup failed.");
  command->callback([args, after_separator = std::move(after_separator)] {
    // After `--`: verbatim, never seen by the option parser.
    if (after_separator) args->command.insert(args->command.end(), after_separator->begin(), after_separator->end());
    int code = 0;
    try {
      code = run(*args);
    } catch (const sandbox::SandboxError& e) {
      std::cerr << "airlock: error: " << e.what() << "\n";
      throw CLI::RuntimeError(sandbox::kExitSetupFailed);
    }
    if (code != 0) throw CLI::RuntimeError(code);
  });

  auto state_root = std::make_shared<std::string>("/run/airlock");
  CLI::App* gc = app.add_subcommand(
      "gc", "Remove what crashed sandboxes recorded under the state directory left behind (state, id leases, their cgroups and airlock-<id> namespaces)");
  gc->add_option("--state-dir", *state_root, "where sandboxes record their owner (only their leftovers are removed)")
      ->capture_default_str();
  gc->callback([state_root] {
    for (const std::string& line : sandbox::collect_garbage(*state_root)) {
      std::cout << "removed " << line << "\n";
    }
  });
}

}  // namespace airlock::cli
