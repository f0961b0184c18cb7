#include "machine/spec.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <string_view>

namespace airlock::machine {

using Json = nlohmann::ordered_json;

void wipe(std::string& text) noexcept {
  if (!text.empty()) {
    volatile char* p = text.data();
    for (std::size_t i = 0; i < text.size(); ++i) p[i] = 0;
  }
  text.clear();
}

namespace {

[[noreturn]] void fail(const std::string& what) { throw ConfigError("spec: " + what); }

// nlohmann's DOM builder, except that every string token is wiped from the lexer's buffer once
// copied, and a syntax error becomes a message without the token (which may be a value).
class WipingDomBuilder {
 public:
  explicit WipingDomBuilder(Json& root) : dom_(root, false) {}
  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(Json::number_integer_t v) { return dom_.number_integer(v); }
  bool number_unsigned(Json::number_unsigned_t v) { return dom_.number_unsigned(v); }
  bool number_float(Json::number_float_t v, const Json::string_t& s) { return dom_.number_float(v, s); }
  bool string(Json::string_t& v) {
    const bool ok = dom_.string(v);
    wipe(v);
    return ok;
  }
  bool binary(Json::binary_t& v) { return dom_.binary(v); }
  bool start_object(std::size_t n) { return dom_.start_object(n); }
  bool key(Json::string_t& v) { return dom_.key(v); }
  bool end_object() { return dom_.end_object(); }
  bool start_array(std::size_t n) { return dom_.start_array(n); }
  bool end_array() { return dom_.end_array(); }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception&) {
    error_at_ = position;
    return false;
  }
  std::optional<std::size_t> error_at() const { return error_at_; }

 private:
  nlohmann::detail::json_sax_dom_parser<Json> dom_;
  std::optional<std::size_t> error_at_;
};

// Wipes every string in a parsed tree (values may be anywhere a caller misplaced them).
void wipe_tree(Json& j) {
  if (j.is_string()) {
    wipe(j.get_ref<std::string&>());
  } else if (j.is_structured()) {
    for (Json& child : j) wipe_tree(child);
  }
}

struct TreeWiper {
  Json& tree;
  ~TreeWiper() { wipe_tree(tree); }
};

void check_keys(const Json& object, const std::string& where, std::initializer_list<std::string_view> known) {
  for (auto it = object.begin(); it != object.end(); ++it) {
    if (std::find(known.begin(), known.end(), it.key()) == known.end()) {
      std::string list;
      for (std::string_view k : known) list += (list.empty() ? "" : ", ") + std::string(k);
      fail(where + ": unknown key " + quote_for_message(it.key()) + " (known: " + list + ")");
    }
  }
}

const Json& object_at(const Json& parent, const char* key, const std::string& where) {
  const Json& j = parent.at(key);
  if (!j.is_object()) fail(where + " must be an object");
  return j;
}

std::string string_of(const Json& j, const std::string& where) {
  if (!j.is_string()) fail(where + " must be a string");
  return j.get<std::string>();
}

bool bool_of(const Json& j, const std::string& where) {
  if (!j.is_boolean()) fail(where + " must be true or false");
  return j.get<bool>();
}

std::uint64_t unsigned_of(const Json& j, const std::string& where) {
  if (!j.is_number_unsigned()) fail(where + " must be a whole number >= 0");
  return j.get<std::uint64_t>();
}

std::vector<std::string> strings_of(const Json& j, const std::string& where) {
  if (!j.is_array()) fail(where + " must be an array of strings");
  std::vector<std::string> out;
  for (const Json& item : j) out.push_back(string_of(item, where + " entries"));
  return out;
}

std::string absolute_path(const Json& j, const std::string& where) {
  std::string path = string_of(j, where);
  if (path.empty() || path[0] != '/') fail(where + " must be an absolute path");
  if (path.find('\0') != std::string::npos) fail(where + " must not contain NUL");
  return path;
}

// One secret. The value is taken into locked memory; its tree copy is wiped by the caller.
SecretBinding parse_secret(Json& s, std::size_t index) {
  const std::string where = "secrets[" + std::to_string(index) + "]";
  if (!s.is_object()) fail(where + " must be an object");
  check_keys(s, where,
             {"env", "value", "allow_hosts", "allow_host_patterns", "allow_any_host_dangerous", "placeholder",
              "require_tls", "scopes", "on_violation"});
  if (!s.contains("env")) fail(where + ": env is required");
  SecretBuilder b;
  const std::string env = string_of(s["env"], where + ".env");
  const std::string named = where + " (" + quote_for_message(env) + ")";
  b.env(env);
  if (!s.contains("value")) fail(named + ": value is required");
  Json& value = s["value"];
  if (!value.is_string()) fail(named + ": value must be a string");
  b.value(SecretValue::take(value.get_ref<std::string&>()));
  for (auto it = s.begin(); it != s.end(); ++it) {
    const std::string& k = it.key();
    const std::string field = named + "." + k;
    if (k == "allow_hosts") {
      for (const std::string& h : strings_of(*it, field)) b.allow_host(h);
    } else if (k == "allow_host_patterns") {
      for (const std::string& p : strings_of(*it, field)) b.allow_host_pattern(p);
    } else if (k == "allow_any_host_dangerous") {
      b.allow_any_host_dangerous(bool_of(*it, field));
    } else if (k == "placeholder") {
      // "" is the SDKs' "not set" (Go's zero value): the default placeholder.
      const std::string p = string_of(*it, field);
      if (!p.empty()) b.placeholder(p);
    } else if (k == "require_tls") {
      if (!it->is_null()) b.require_tls_identity(bool_of(*it, field));
    } else if (k == "on_violation") {
      b.on_violation(parse_violation_action(string_of(*it, field)));
    } else if (k == "scopes") {
      if (!it->is_object()) fail(field + " must be an object");
      check_keys(*it, field, {"headers", "basic_auth", "query", "body"});
      const Json& sc = *it;
      if (sc.contains("headers")) b.inject_headers(bool_of(sc["headers"], field + ".headers"));
      if (sc.contains("basic_auth")) b.inject_basic_auth(bool_of(sc["basic_auth"], field + ".basic_auth"));
      if (sc.contains("query")) b.inject_query(bool_of(sc["query"], field + ".query"));
      if (sc.contains("body")) b.inject_body(bool_of(sc["body"], field + ".body"));
    }
  }
  return b.build();
}

void parse_network(const Json& n, Spec& spec) {
  check_keys(n, "network",
             {"on_secret_violation", "egress", "intercept_ports", "tls_bypass", "upstream_cas", "max_body_bytes",
              "dns_servers"});
  NetworkBuilder builder;
  if (n.contains("on_secret_violation")) {
    builder.on_secret_violation(parse_violation_action(string_of(n["on_secret_violation"], "network.on_secret_violation")));
  }
  if (n.contains("egress")) builder.config().egress = strings_of(n["egress"], "network.egress");
  if (n.contains("intercept_ports")) {
    const Json& ports = n["intercept_ports"];
    if (!ports.is_array() || ports.empty()) fail("network.intercept_ports must be a non-empty array of ports");
    std::vector<std::uint16_t> list;
    for (const Json& p : ports) {
      const std::uint64_t port = unsigned_of(p, "network.intercept_ports entries");
      if (port < 1 || port > 65535) fail("network.intercept_ports: " + std::to_string(port) + " is not in 1..65535");
      if (std::find(list.begin(), list.end(), port) == list.end()) list.push_back(static_cast<std::uint16_t>(port));
    }
    builder.config().intercept_ports = std::move(list);
  }
  if (n.contains("tls_bypass")) {
    for (const std::string& h : strings_of(n["tls_bypass"], "network.tls_bypass")) builder.bypass_tls(h);
  }
  if (n.contains("upstream_cas")) {
    const Json& cas = n["upstream_cas"];
    if (!cas.is_array()) fail("network.upstream_cas must be an array of {\"file\": PATH, \"hosts\": PATTERN}");
    for (const Json& ca : cas) {
      if (!ca.is_object()) fail("network.upstream_cas entries must be objects");
      check_keys(ca, "network.upstream_cas", {"file", "hosts"});
      if (!ca.contains("file")) fail("network.upstream_cas entries need a file");
      std::optional<std::string> hosts;
      if (ca.contains("hosts")) hosts = string_of(ca["hosts"], "network.upstream_cas hosts");
      builder.upstream_ca_file(absolute_path(ca["file"], "network.upstream_cas file"),
                               hosts ? std::optional<std::string_view>(*hosts) : std::nullopt);
    }
  }
  if (n.contains("max_body_bytes")) {
    const std::uint64_t bytes = unsigned_of(n["max_body_bytes"], "network.max_body_bytes");
    if (bytes == 0) fail("network.max_body_bytes must be greater than 0");
    builder.max_body_bytes(static_cast<std::size_t>(bytes));
  }
  if (n.contains("dns_servers")) spec.dns_servers = strings_of(n["dns_servers"], "network.dns_servers");
  spec.config.network = builder.config();
}

void parse_limits(const Json& l, Limits& out) {
  check_keys(l, "limits", {"timeout_ms", "memory_bytes", "cpus", "pids"});
  if (l.contains("timeout_ms")) {
    out.timeout_ms = unsigned_of(l["timeout_ms"], "limits.timeout_ms");
    if (*out.timeout_ms == 0) fail("limits.timeout_ms must be greater than 0");
  }
  if (l.contains("memory_bytes")) {
    out.memory_bytes = unsigned_of(l["memory_bytes"], "limits.memory_bytes");
    if (*out.memory_bytes == 0) fail("limits.memory_bytes must be greater than 0");
  }
  if (l.contains("pids")) {
    out.pids = unsigned_of(l["pids"], "limits.pids");
    if (*out.pids == 0) fail("limits.pids must be greater than 0");
  }
  if (l.contains("cpus")) {
    const Json& c = l["cpus"];
    if (!c.is_number() || !(c.get<double>() > 0) || c.get<double>() > 4096) {
      fail("limits.cpus must be a number in (0, 4096]");
    }
    out.cpus = c.get<double>();
  }
}

void parse_env(const Json& e, Spec& spec) {
  if (!e.is_object()) fail("env must be an object of strings");
  for (auto it = e.begin(); it != e.end(); ++it) {
    const std::string& k = it.key();
    if (k.empty() || k.find('=') != std::string::npos || k.find('\0') != std::string::npos) {
      fail("env: the name " + quote_for_message(k) + " must be non-empty, without '=' or NUL");
    }
    std::string v = string_of(*it, "env." + k);
    if (v.find('\0') != std::string::npos) fail("env." + k + " must not contain NUL");
    spec.env.emplace_back(k, std::move(v));
  }
}

Spec parse_tree(Json& root) {
  if (!root.is_object()) fail("the spec must be a JSON object");
  check_keys(root, "the top level",
             {"version", "name", "secrets", "network", "mounts", "rootfs", "workspace", "workdir", "env", "limits",
              "gateway", "command"});
  if (!root.contains("version")) fail("version is required (this airlock speaks version 1)");
  if (!root["version"].is_number_unsigned() || root["version"].get<std::uint64_t>() != kVersion) {
    fail("version " + root["version"].dump() + " is not supported (this airlock speaks version 1)");
  }
  Spec spec;
  if (root.contains("name")) spec.name = string_of(root["name"], "name");
  if (root.contains("network")) parse_network(object_at(root, "network", "network"), spec);
  if (root.contains("secrets")) {
    Json& secrets = root["secrets"];
    if (!secrets.is_array()) fail("secrets must be an array");
    for (std::size_t i = 0; i < secrets.size(); ++i) spec.config.secrets.push_back(parse_secret(secrets[i], i));
    validate_secret_set(spec.config.secrets);
  }
  if (root.contains("mounts")) {
    const Json& mounts = root["mounts"];
    if (!mounts.is_array()) fail("mounts must be an array");
    for (std::size_t i = 0; i < mounts.size(); ++i) {
      const std::string where = "mounts[" + std::to_string(i) + "]";
      const Json& m = mounts[i];
      if (!m.is_object()) fail(where + " must be an object");
      check_keys(m, where, {"host", "guest", "read_only"});
      if (!m.contains("host") || !m.contains("guest")) fail(where + " needs host and guest");
      Mount mount{absolute_path(m["host"], where + ".host"), absolute_path(m["guest"], where + ".guest"), false};
      if (m.contains("read_only")) mount.read_only = bool_of(m["read_only"], where + ".read_only");
      spec.mounts.push_back(std::move(mount));
    }
  }
  if (root.contains("rootfs")) {
    spec.rootfs = string_of(root["rootfs"], "rootfs");
    if (!spec.rootfs.empty()) spec.rootfs = absolute_path(root["rootfs"], "rootfs");
  }
  if (root.contains("workspace")) {
    const Json& w = object_at(root, "workspace", "workspace");
    check_keys(w, "workspace", {"dir", "mode"});
    if (w.contains("dir")) spec.workspace.dir = absolute_path(w["dir"], "workspace.dir");
    if (w.contains("mode")) {
      const std::string mode = string_of(w["mode"], "workspace.mode");
      if (mode == "read-write") spec.workspace.mode = Workspace::Mode::kReadWrite;
      else if (mode == "overlay") spec.workspace.mode = Workspace::Mode::kOverlay;
      else if (mode == "none") spec.workspace.mode = Workspace::Mode::kNone;
      else fail("workspace.mode " + quote_for_message(mode) + " is not one of read-write, overlay, none");
    }
    if (spec.workspace.mode == Workspace::Mode::kNone && !spec.workspace.dir.empty()) {
      fail("workspace: a dir with mode none");
    }
  }
  if (root.contains("workdir")) {
    spec.workdir = string_of(root["workdir"], "workdir");
    if (!spec.workdir.empty()) spec.workdir = absolute_path(root["workdir"], "workdir");
  }
  if (root.contains("env")) parse_env(root["env"], spec);
  if (root.contains("limits")) parse_limits(object_at(root, "limits", "limits"), spec.limits);
  if (root.contains("gateway")) {
    const Json& g = object_at(root, "gateway", "gateway");
    check_keys(g, "gateway", {"home", "audit_log", "log_level"});
    if (g.contains("home")) spec.gateway.home = string_of(g["home"], "gateway.home");
    if (g.contains("audit_log")) spec.gateway.audit_log = string_of(g["audit_log"], "gateway.audit_log");
    if (g.contains("log_level")) {
      spec.gateway.log_level = string_of(g["log_level"], "gateway.log_level");
      static constexpr std::string_view kLevels[] = {"", "trace", "debug", "info", "warn", "error"};
      if (std::find(std::begin(kLevels), std::end(kLevels), spec.gateway.log_level) == std::end(kLevels)) {
        fail("gateway.log_level " + quote_for_message(spec.gateway.log_level) +
             " is not one of error, warn, info, debug, trace");
      }
    }
  }
  if (root.contains("command")) {
    spec.command = strings_of(root["command"], "command");
    for (const std::string& a : spec.command) {
      if (a.find('\0') != std::string::npos) fail("command arguments must not contain NUL");
    }
    if (!spec.command.empty() && spec.command[0].empty()) fail("command[0] must not be empty");
  }
  return spec;
}

}  // namespace

Spec parse_spec(std::string& text) {
  struct TextWiper {
    std::string& text;
    ~TextWiper() { wipe(text); }
  } text_wiper{text};
  if (text.size() > kMaxMessageBytes) fail("longer than " + std::to_string(kMaxMessageBytes) + " bytes");
  Json root;
  TreeWiper tree_wiper{root};
  WipingDomBuilder builder(root);
  const bool ok = Json::sax_parse(text, &builder, nlohmann::detail::input_format_t::json, true);
  if (!ok || builder.error_at()) {
    fail("not valid JSON (near byte " + std::to_string(builder.error_at().value_or(0)) + ")");
  }
  // Secret rules throw ConfigError("secret X: ..."): keep them, prefixed like every spec error.
  try {
    return parse_tree(root);
  } catch (const ConfigError& e) {
    if (std::string_view(e.what()).starts_with("spec: ")) throw;
    fail(e.what());
  } catch (const Json::exception&) {
    fail("malformed");  // a type the checks above missed; never the input's text
  }
}

std::string encode_spec(const Spec& spec) {
  Json root;
  root["version"] = kVersion;
  if (!spec.name.empty()) root["name"] = spec.name;
  Json secrets = Json::array();
  for (const SecretBinding& s : spec.config.secrets) {
    Json j;
    j["env"] = s.env_var();
    j["value"] = std::string(s.value().expose());
    Json hosts = Json::array(), patterns = Json::array();
    for (const HostPattern& h : s.hosts()) (h.is_wildcard() ? patterns : hosts).push_back(h.text());
    j["allow_hosts"] = hosts;
    j["allow_host_patterns"] = patterns;
    if (s.any_host()) j["allow_any_host_dangerous"] = true;
    j["placeholder"] = s.placeholder();
    j["require_tls"] = s.require_tls_identity();
    j["scopes"] = {{"headers", s.scopes().headers},
                   {"basic_auth", s.scopes().basic_auth},
                   {"query", s.scopes().query},
                   {"body", s.scopes().body}};
    if (s.on_violation() != ViolationAction::kUnset) j["on_violation"] = to_string(s.on_violation());
    secrets.push_back(std::move(j));
  }
  root["secrets"] = std::move(secrets);
  const NetworkConfig& n = spec.config.network;
  Json net;
  if (n.on_secret_violation != ViolationAction::kUnset) net["on_secret_violation"] = to_string(n.on_secret_violation);
  net["egress"] = n.egress;
  net["intercept_ports"] = n.intercept_ports;
  Json bypass = Json::array();
  for (const HostPattern& h : n.tls_bypass) bypass.push_back(h.text());
  net["tls_bypass"] = bypass;
  Json cas = Json::array();
  for (const UpstreamCa& ca : n.upstream_cas) {
    Json c{{"file", ca.pem_file}};
    if (ca.for_hosts) c["hosts"] = ca.for_hosts->text();
    cas.push_back(std::move(c));
  }
  net["upstream_cas"] = cas;
  net["max_body_bytes"] = n.max_body_bytes;
  net["dns_servers"] = spec.dns_servers;
  root["network"] = std::move(net);
  Json mounts = Json::array();
  for (const Mount& m : spec.mounts) mounts.push_back({{"host", m.host}, {"guest", m.guest}, {"read_only", m.read_only}});
  root["mounts"] = std::move(mounts);
  if (!spec.rootfs.empty()) root["rootfs"] = spec.rootfs;
  if (!spec.workspace.dir.empty() || spec.workspace.mode != Workspace::Mode::kReadWrite) {
    Json w = Json::object();
    if (!spec.workspace.dir.empty()) w["dir"] = spec.workspace.dir;
    w["mode"] = spec.workspace.mode == Workspace::Mode::kOverlay ? "overlay"
                : spec.workspace.mode == Workspace::Mode::kNone  ? "none"
                                                                 : "read-write";
    root["workspace"] = std::move(w);
  }
  if (!spec.workdir.empty()) root["workdir"] = spec.workdir;
  Json env = Json::object();
  for (const auto& [k, v] : spec.env) env[k] = v;
  root["env"] = std::move(env);
  Json limits = Json::object();
  if (spec.limits.timeout_ms) limits["timeout_ms"] = *spec.limits.timeout_ms;
  if (spec.limits.memory_bytes) limits["memory_bytes"] = *spec.limits.memory_bytes;
  if (spec.limits.cpus) limits["cpus"] = *spec.limits.cpus;
  if (spec.limits.pids) limits["pids"] = *spec.limits.pids;
  root["limits"] = std::move(limits);
  Json gw = Json::object();
  if (!spec.gateway.home.empty()) gw["home"] = spec.gateway.home;
  if (!spec.gateway.audit_log.empty()) gw["audit_log"] = spec.gateway.audit_log;
  if (!spec.gateway.log_level.empty()) gw["log_level"] = spec.gateway.log_level;
  root["gateway"] = std::move(gw);
  if (!spec.command.empty()) root["command"] = spec.command;
  std::string text = root.dump();
  wipe_tree(root);
  return text;
}

}  // namespace airlock::machine
