#include "cli/config.hpp"
#include "cli/command_value.hpp"
#include "cli/egress.hpp"
#include "sandbox/sandbox.hpp"

#include <toml++/toml.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

namespace airlock::cli {
namespace {

constexpr std::size_t kMaxConfigBytes = 1u << 20;
constexpr std::size_t kMaxValueFileBytes = 64u << 10;

// Prefixes errors with "ORIGIN:LINE: ".
class Context {
 public:
  explicit Context(std::string origin) : origin_(std::move(origin)) {}

  [[noreturn]] void fail(const toml::node* at, std::string_view message) const {
    std::string prefix = origin_;
    if (at != nullptr && at->source().begin.line > 0) prefix += ":" + std::to_string(at->source().begin.line);
    throw ConfigError(prefix + ": " + std::string(message));
  }
  [[noreturn]] void fail(const toml::node& at, std::string_view message) const { fail(&at, message); }

 private:
  std::string origin_;
};

// Every key of `table` must be one of `allowed`: a typo in a security config is an error.
void check_keys(const Context& ctx, const toml::table& table, std::string_view where,
                std::initializer_list<std::string_view> allowed) {
  for (auto&& [key, node] : table) {
    if (std::find(allowed.begin(), allowed.end(), key.str()) == allowed.end()) {
      std::string list;
      for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      ctx.fail(node, "unknown key " + quote_for_message(key.str()) + " in " + std::string(where) +
                         " (expected one of: " + list + ")");
    }
  }
}

std::string get_string(const Context& ctx, const toml::node& node, std::string_view what) {
  if (!node.is_string()) ctx.fail(node, std::string(what) + " must be a string");
  return *node.value<std::string>();
}

bool get_bool(const Context& ctx, const toml::node& node, std::string_view what) {
  if (!node.is_boolean()) ctx.fail(node, std::string(what) + " must be true or false");
  return *node.value<bool>();
}

std::int64_t get_int(const Context& ctx, const toml::node& node, std::string_view what) {
  if (!node.is_integer()) ctx.fail(node, std::string(what) + " must be an integer");
  return *node.value<std::int64_t>();
}

std::vector<std::string> get_strings(const Context& ctx, const toml::node& node, std::string_view what) {
  const toml::array* array = node.as_array();
  if (array == nullptr) ctx.fail(node, std::string(what) + " must be an array of strings");
  std::vector<std::string> out;
  for (const toml::node& item : *array) out.push_back(get_string(ctx, item, std::string(what) + " entries"));
  return out;
}

// A size: bytes as an integer, or a string with a K, M or G suffix ("512M").
std::uint64_t get_size(const Context& ctx, const toml::node& node, std::string_view what) {
  std::uint64_t bytes = 0;
  if (node.is_integer()) {
    const std::int64_t v = *node.value<std::int64_t>();
    if (v < 0) ctx.fail(node, std::string(what) + " must not be negative");
    bytes = static_cast<std::uint64_t>(v);
  } else if (node.is_string()) {
    try {
      bytes = sandbox::parse_memory_size(*node.value<std::string>());
    } catch (const std::exception&) {
      ctx.fail(node, std::string(what) + " must be a size like 512M or 2G");
    }
  } else {
    ctx.fail(node, std::string(what) + " must be a size (bytes, or a string such as \"512M\")");
  }
  if (bytes < (1u << 20)) ctx.fail(node, std::string(what) + " must be at least 1M");
  return bytes;
}

const toml::table& get_table(const Context& ctx, const toml::node& node, std::string_view what) {
  const toml::table* table = node.as_table();
  if (table == nullptr) ctx.fail(node, std::string(what) + " must be a table");
  return *table;
}

std::string resolve_path(const std::string& base_dir, const std::string& path) {
  if (path.empty() || path.front() == '/' || base_dir.empty()) return path;
  return base_dir + "/" + path;
}

ViolationAction get_action(const Context& ctx, const toml::node& node, std::string_view what) {
  const std::string text = get_string(ctx, node, what);
  try {
    return parse_violation_action(text);
  } catch (const ConfigError& e) {
    ctx.fail(node, std::string(what) + ": " + e.what());
  }
}

void parse_network(const Context& ctx, const toml::table& table, const std::string& base_dir, NetworkConfig& out) {
  check_keys(ctx, table, "[network]",
             {"on_secret_violation", "intercept_ports", "tls_bypass", "max_body_bytes", "upstream_ca", "egress"});
  NetworkBuilder builder;
  {
    if (const toml::node* n = table.get("on_secret_violation")) {
      builder.on_secret_violation(get_action(ctx, *n, "on_secret_violation"));
    }
    if (const toml::node* n = table.get("intercept_ports")) {
      const toml::array* ports = n->as_array();
      if (ports == nullptr) ctx.fail(n, "intercept_ports must be an array of port numbers");
      if (ports->empty()) ctx.fail(n, "intercept_ports must not be empty (no TLS would be intercepted)");
      std::vector<std::uint16_t> list;
      for (const toml::node& p : *ports) {
        const std::int64_t port = get_int(ctx, p, "intercept_ports entries");
        if (port < 1 || port > 65535) ctx.fail(p, "intercept port " + std::to_string(port) + " is not in 1..65535");
        if (std::find(list.begin(), list.end(), port) == list.end()) list.push_back(static_cast<std::uint16_t>(port));
      }
      builder.config().intercept_ports = std::move(list);  // the file's list replaces the default
    }
    if (const toml::node* n = table.get("tls_bypass")) {
      for (const std::string& host : get_strings(ctx, *n, "tls_bypass")) {
        try {
          builder.bypass_tls(host);
        } catch (const ConfigError& e) {
          ctx.fail(n, e.what());
        }
      }
    }
    if (const toml::node* n = table.get("egress")) {
      const toml::array* rules = n->as_array();
      if (rules == nullptr) ctx.fail(n, "egress must be an array of rules, e.g. [\"allow@api.example.com:tcp:443\"]");
      for (const toml::node& rule : *rules) {
        const std::string text = get_string(ctx, rule, "egress rules");
        try {
          parse_egress_rule(text);
        } catch (const ConfigError& e) {
          ctx.fail(rule, e.what());
        }
        builder.config().egress.push_back(text);
      }
    }
    if (const toml::node* n = table.get("max_body_bytes")) {
      const std::int64_t bytes = get_int(ctx, *n, "max_body_bytes");
      if (bytes <= 0) ctx.fail(n, "max_body_bytes must be greater than 0");
      builder.max_body_bytes(static_cast<std::size_t>(bytes));
    }
    if (const toml::node* n = table.get("upstream_ca")) {
      const toml::array* cas = n->as_array();
      if (cas == nullptr || !cas->is_array_of_tables()) {
        ctx.fail(n, "upstream_ca must be written as [[network.upstream_ca]] tables");
      }
      for (const toml::node& item : *cas) {
        const toml::table& ca = get_table(ctx, item, "[[network.upstream_ca]]");
        check_keys(ctx, ca, "[[network.upstream_ca]]", {"file", "hosts"});
        const toml::node* file = ca.get("file");
        if (file == nullptr) ctx.fail(item, "[[network.upstream_ca]] needs file = \"PATH\" (a PEM file)");
        const std::string pem = resolve_path(base_dir, get_string(ctx, *file, "upstream_ca file"));
        std::optional<std::string> hosts;
        if (const toml::node* h = ca.get("hosts")) hosts = get_string(ctx, *h, "upstream_ca hosts");
        if (::access(pem.c_str(), R_OK) != 0) {
          ctx.fail(file, "upstream CA file " + quote_for_message(pem) + " cannot be read: " + std::strerror(errno));
        }
        try {
          builder.upstream_ca_file(pem, hosts ? std::optional<std::string_view>(*hosts) : std::nullopt);
        } catch (const ConfigError& e) {
          ctx.fail(item, e.what());
        }
      }
    }
  }
  out = builder.config();
}

SecretBinding parse_secret(const Context& ctx, const toml::table& table, const std::string& base_dir,
                           std::vector<std::string>& source_files, const std::vector<std::string>& hidden_env) {
  // An inline value is refused before anything else, and without echoing it.
  if (const toml::node* v = table.get("value")) {
    const toml::node* env = table.get("env");
    const std::string who =
        env != nullptr && env->is_string() ? "secret " + quote_for_message(*env->value<std::string>()) + ": " : "";
    ctx.fail(v, who + "inline values are not allowed: shell history and process listings leak them; "
                      "use value_from = \"env:NAME\", \"file:PATH\" or \"cmd:PROGRAM ARG...\"");
  }
  check_keys(ctx, table, "[[secret]]",
             {"env", "value_from", "allow_hosts", "allow_host_patterns", "allow_any_host_dangerous", "placeholder",
              "require_tls_identity", "on_violation", "inject"});
  const toml::node* env_node = table.get("env");
  if (env_node == nullptr) ctx.fail(table, "[[secret]] needs env = \"NAME\" (the environment variable it binds)");
  const std::string env = get_string(ctx, *env_node, "env");
  const std::string named = "secret " + quote_for_message(env) + ": ";

  SecretBuilder b;
  b.env(env);
  for (auto&& [key, node] : table) {
    const std::string_view k = key.str();
    const std::string what = named + std::string(k);
    if (k == "allow_hosts") {
      for (const auto& h : get_strings(ctx, node, what)) b.allow_host(h);
    } else if (k == "allow_host_patterns") {
      for (const auto& p : get_strings(ctx, node, what)) b.allow_host_pattern(p);
    } else if (k == "allow_any_host_dangerous") {
      b.allow_any_host_dangerous(get_bool(ctx, node, what));
    } else if (k == "placeholder") {
      b.placeholder(get_string(ctx, node, what));
    } else if (k == "require_tls_identity") {
      b.require_tls_identity(get_bool(ctx, node, what));
    } else if (k == "on_violation") {
      b.on_violation(get_action(ctx, node, what));
    } else if (k == "inject") {
      const toml::table& inject = get_table(ctx, node, what);
      check_keys(ctx, inject, named + "inject", {"headers", "basic_auth", "query", "body"});
      if (const toml::node* n = inject.get("headers")) b.inject_headers(get_bool(ctx, *n, what + ".headers"));
      if (const toml::node* n = inject.get("basic_auth")) b.inject_basic_auth(get_bool(ctx, *n, what + ".basic_auth"));
      if (const toml::node* n = inject.get("query")) b.inject_query(get_bool(ctx, *n, what + ".query"));
      if (const toml::node* n = inject.get("body")) b.inject_body(get_bool(ctx, *n, what + ".body"));
    }
  }
  const toml::node* from = table.get("value_from");
  if (from == nullptr) {
    ctx.fail(table, named + "value_from is required (\"env:NAME\", \"file:PATH\" or \"cmd:PROGRAM ARG...\")");
  }
  const std::string source = get_string(ctx, *from, named + "value_from");
  if (source.rfind("file:", 0) == 0 && source.size() > 5) source_files.push_back(resolve_path(base_dir, source.substr(5)));
  try {
    b.value(read_value_from(env, source, base_dir, hidden_env));
  } catch (const ConfigError& e) {
    ctx.fail(from, e.what());
  }
  try {
    return b.build();
  } catch (const ConfigError& e) {
    ctx.fail(table, e.what());
  }
}

void parse_gateway(const Context& ctx, const toml::table& table, GatewaySettings& out) {
  check_keys(ctx, table, "[gateway]",
             {"transparent_listen", "proxy_listen", "audit_log", "home", "log_level", "resolve_pins_with_host_dns",
              "memory_budget", "client_memory_budget", "max_connections", "max_client_connections", "audit_fail_open"});
  if (const toml::node* n = table.get("transparent_listen")) out.transparent_listen = get_string(ctx, *n, "transparent_listen");
  if (const toml::node* n = table.get("proxy_listen")) out.proxy_listen = get_string(ctx, *n, "proxy_listen");
  if (const toml::node* n = table.get("audit_log")) out.audit_log = get_string(ctx, *n, "audit_log");
  if (const toml::node* n = table.get("home")) out.home = get_string(ctx, *n, "home");
  if (const toml::node* n = table.get("log_level")) {
    out.log_level = get_string(ctx, *n, "log_level");
    static constexpr std::array<std::string_view, 5> kLevels{"trace", "debug", "info", "warn", "error"};
    if (std::find(kLevels.begin(), kLevels.end(), out.log_level) == kLevels.end()) {
      ctx.fail(n, "log_level " + quote_for_message(out.log_level) + " is not one of trace, debug, info, warn, error");
    }
  }
  if (const toml::node* n = table.get("resolve_pins_with_host_dns")) {
    out.resolve_pins_with_host_dns = get_bool(ctx, *n, "resolve_pins_with_host_dns");
  }
  for (auto [key, field] : {std::pair{"memory_budget", &out.memory_budget},
                             std::pair{"client_memory_budget", &out.client_memory_budget}}) {
    if (const toml::node* n = table.get(key)) *field = get_size(ctx, *n, key);
  }
  for (auto [key, field] : {std::pair{"max_connections", &out.max_connections},
                             std::pair{"max_client_connections", &out.max_client_connections}}) {
    if (const toml::node* n = table.get(key)) {
      const std::int64_t v = get_int(ctx, *n, key);
      if (v < 1) ctx.fail(n, std::string(key) + " must be at least 1");
      *field = static_cast<std::uint64_t>(v);
    }
  }
  if (const toml::node* n = table.get("audit_fail_open")) out.audit_fail_open = get_bool(ctx, *n, "audit_fail_open");
  for (const std::string* listen : {&out.transparent_listen, &out.proxy_listen, &out.audit_log, &out.home}) {
    if (listen->find('\0') != std::string::npos) ctx.fail(table, "[gateway] paths and addresses must not contain NUL");
  }
}

// toml++ sometimes quotes the text it failed on ('12345678901234567890123' is not representable);
// that text may be an inline value, so any quoted run longer than one character is hidden.
std::string redact_parse_error(std::string_view description) {
  std::string out;
  std::size_t i = 0;
  while (i < description.size()) {
    const std::size_t open = description.find('\'', i);
    if (open == std::string_view::npos) break;
    const std::size_t close = description.find('\'', open + 1);
    if (close == std::string_view::npos) break;
    out.append(description.substr(i, open - i));
    if (close - open - 1 > 1) {
      out += "'(text hidden)'";
    } else {
      out.append(description.substr(open, close - open + 1));
    }
    i = close + 1;
  }
  if (i < description.size()) out.append(description.substr(i));
  return out;
}

std::string directory_of(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

SecretValue read_value_from(std::string_view env_var, std::string_view value_from, const std::string& base_dir,
                            const std::vector<std::string>& hidden_env) {
  const std::string named = "secret " + quote_for_message(env_var) + ": ";
  if (value_from.rfind("cmd:", 0) == 0) return read_command_value(env_var, value_from.substr(4), base_dir, hidden_env);
  if (value_from.rfind("env:", 0) == 0) {
    const std::string name(value_from.substr(4));
    if (name.empty() || name.find('=') != std::string::npos) {
      throw ConfigError(named + "value_from " + quote_for_message(value_from) + " needs a variable name after env:");
    }
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) {
      throw ConfigError(named + "value_from " + quote_for_message(value_from) + ": environment variable " +
                        quote_for_message(name) + " is not set");
    }
    if (*value == '\0') {
      throw ConfigError(named + "value_from " + quote_for_message(value_from) + ": environment variable " +
                        quote_for_message(name) + " is empty");
    }
    return SecretValue(std::string_view(value));
  }
  if (value_from.rfind("file:", 0) == 0) {
    const std::string path = resolve_path(base_dir, std::string(value_from.substr(5)));
    if (value_from.size() == 5) {
      throw ConfigError(named + "value_from \"file:\" needs a path after file:");
    }
    const std::string source = named + "value_from " + quote_for_message(value_from);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw ConfigError(source + ": cannot read " + quote_for_message(path) + ": " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      throw ConfigError(source + ": " + quote_for_message(path) + " is not a regular file");
    }
    // Read into a fixed buffer that is wiped afterwards; the value moves into locked memory.
    std::string buffer(kMaxValueFileBytes + 1, '\0');
    std::size_t used = 0;
    while (used < buffer.size()) {
      const ssize_t n = ::read(fd, buffer.data() + used, buffer.size() - used);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        const int err = errno;
        ::close(fd);
        SecretValue::take(buffer);  // wipes what was read
        throw ConfigError(source + ": cannot read " + quote_for_message(path) + ": " + std::strerror(err));
      }
      if (n == 0) break;
      used += static_cast<std::size_t>(n);
    }
    ::close(fd);
    if (used > kMaxValueFileBytes) {
      SecretValue::take(buffer);
      throw ConfigError(source + ": " + quote_for_message(path) + " is larger than 64 KiB");
    }
    std::size_t size = used;
    if (size > 0 && buffer[size - 1] == '\n') {
      --size;
      if (size > 0 && buffer[size - 1] == '\r') --size;
    }
    SecretValue value(std::string_view(buffer.data(), size));
    SecretValue::take(buffer);  // wipes the plain copy
    if (value.empty()) throw ConfigError(source + ": " + quote_for_message(path) + " is empty");
    return value;
  }
  // Not echoed: text that is neither reference form may well be the value itself.
  throw ConfigError(named + "value_from must be \"env:NAME\", \"file:PATH\" or \"cmd:PROGRAM ARG...\" (values are never written "
                            "inline; the text given is not shown in case it is one)");
}

AirlockConfig parse_config(std::string_view toml_text, const std::string& origin, const std::string& base_dir) {
  const Context ctx(origin);
  toml::table root;
  try {
    root = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    const auto line = e.source().begin.line;
    throw ConfigError(origin + (line > 0 ? ":" + std::to_string(line) : std::string()) +
                      ": not valid TOML: " + redact_parse_error(e.description()));
  }
  check_keys(ctx, root, "the top level", {"network", "secret", "gateway", "sandbox"});

  AirlockConfig config;
  if (const toml::node* n = root.get("network")) {
    parse_network(ctx, get_table(ctx, *n, "[network]"), base_dir, config.sandbox.network);
  }
  if (const toml::node* n = root.get("secret")) {
    const toml::array* secrets = n->as_array();
    if (secrets == nullptr || !secrets->is_array_of_tables()) {
      ctx.fail(n, "secrets must be written as [[secret]] tables");
    }
    // What a cmd: source must not see: every secret's env var and env: source (either may hold a value).
    std::vector<std::string> hidden_env;
    for (const toml::node& item : *secrets) {
      const toml::table& t = *item.as_table();
      if (auto e = t["env"].value<std::string>()) hidden_env.push_back(*e);
      if (auto v = t["value_from"].value<std::string>(); v && v->rfind("env:", 0) == 0) hidden_env.push_back(v->substr(4));
    }
    for (const toml::node& item : *secrets) {
      config.sandbox.secrets.push_back(parse_secret(ctx, *item.as_table(), base_dir, config.secret_files, hidden_env));
    }
    try {
      validate_secret_set(config.sandbox.secrets);
    } catch (const ConfigError& e) {
      ctx.fail(nullptr, e.what());
    }
  }
  if (const toml::node* n = root.get("gateway")) parse_gateway(ctx, get_table(ctx, *n, "[gateway]"), config.gateway);
  if (const toml::node* n = root.get("sandbox")) {
    const toml::table& t = get_table(ctx, *n, "[sandbox]");
    check_keys(ctx, t, "[sandbox]", {"id_range"});
    if (const toml::node* r = t.get("id_range")) config.view.id_range = get_string(ctx, *r, "[sandbox] id_range");
  }
  return config;
}

AirlockConfig load_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot open: " + std::strerror(errno));
  std::string text;
  text.resize(kMaxConfigBytes + 1);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  if (text.size() > kMaxConfigBytes) throw ConfigError(path + ": larger than 1 MiB");
  return parse_config(text, path, directory_of(path));
}

}  // namespace airlock::cli
