#include "machine/protocol.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <charconv>

namespace airlock::machine {

using Json = nlohmann::ordered_json;

namespace {

[[noreturn]] void fail(const char* what, const std::string& message) {
  throw ConfigError(std::string(what) + ": " + message);
}

Json parse_object(std::string_view line, const char* what) {
  Json j = Json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) fail(what, "not a JSON object");
  if (!j.contains("type") || !j["type"].is_string()) fail(what, "needs a string \"type\"");
  return j;
}

std::string get_string(const Json& j, const char* key, const char* what) {
  if (!j.contains(key)) return {};
  if (!j[key].is_string()) fail(what, std::string(key) + " must be a string");
  return j[key].get<std::string>();
}

std::uint64_t get_unsigned(const Json& j, const char* key, const char* what) {
  if (!j.contains(key) || !j[key].is_number_unsigned()) fail(what, std::string(key) + " must be a whole number >= 0");
  return j[key].get<std::uint64_t>();
}

bool get_bool(const Json& j, const char* key) { return j.contains(key) && j[key].is_boolean() && j[key].get<bool>(); }

std::string bytes_field(const Json& j, const char* key, const char* what) {
  const std::string text = get_string(j, key, what);
  std::optional<std::string> bytes = base64_decode(text);
  if (!bytes) fail(what, std::string(key) + " must be base64");
  return std::move(*bytes);
}

void append_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

bool has_nul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

}  // namespace

// ---------------------------------------------------------------- requests

Request parse_request(std::string_view line) {
  constexpr const char* what = "request";
  const Json j = parse_object(line, what);
  const std::string type = j["type"].get<std::string>();
  if (type == "stop") return StopRequest{};
  if (type == "cancel") return CancelRequest{get_unsigned(j, "id", what)};
  if (type != "run") fail(what, "unknown type " + quote_for_message(type) + " (run, cancel, stop)");
  RunRequest r;
  r.id = get_unsigned(j, "id", what);
  if (!j.contains("argv") || !j["argv"].is_array() || j["argv"].empty()) fail(what, "argv must be a non-empty array of strings");
  for (const Json& a : j["argv"]) {
    if (!a.is_string() || has_nul(a.get_ref<const std::string&>())) fail(what, "argv entries must be strings without NUL");
    r.argv.push_back(a.get<std::string>());
  }
  if (r.argv[0].empty()) fail(what, "argv[0] must not be empty");
  if (j.contains("env")) {
    if (!j["env"].is_object()) fail(what, "env must be an object of strings");
    for (auto it = j["env"].begin(); it != j["env"].end(); ++it) {
      const std::string& k = it.key();
      if (k.empty() || k.find('=') != std::string::npos || has_nul(k)) {
        fail(what, "env name " + quote_for_message(k) + " must be non-empty, without '=' or NUL");
      }
      if (!it->is_string() || has_nul(it->get_ref<const std::string&>())) fail(what, "env." + k + " must be a string without NUL");
      r.env.emplace_back(k, it->get<std::string>());
    }
  }
  r.workdir = get_string(j, "workdir", what);
  if (!r.workdir.empty() && (r.workdir[0] != '/' || has_nul(r.workdir))) fail(what, "workdir must be an absolute path");
  r.stdin_bytes = bytes_field(j, "stdin", what);
  if (r.stdin_bytes.size() > kMaxStdinBytes) fail(what, "stdin is over " + std::to_string(kMaxStdinBytes) + " bytes");
  if (j.contains("timeout_ms")) {
    r.timeout_ms = get_unsigned(j, "timeout_ms", what);
    if (*r.timeout_ms == 0) fail(what, "timeout_ms must be greater than 0");
  }
  return r;
}

std::string encode_request(const Request& request) {
  Json j;
  if (std::holds_alternative<StopRequest>(request)) {
    j["type"] = "stop";
  } else if (const auto* c = std::get_if<CancelRequest>(&request)) {
    j["type"] = "cancel";
    j["id"] = c->id;
  } else {
    const RunRequest& r = std::get<RunRequest>(request);
    j["type"] = "run";
    j["id"] = r.id;
    j["argv"] = r.argv;
    Json env = Json::object();
    for (const auto& [k, v] : r.env) env[k] = v;
    j["env"] = std::move(env);
    if (!r.workdir.empty()) j["workdir"] = r.workdir;
    if (!r.stdin_bytes.empty()) j["stdin"] = base64_encode(r.stdin_bytes);
    if (r.timeout_ms) j["timeout_ms"] = *r.timeout_ms;
  }
  return j.dump() + "\n";
}

void check_run_request(const RunRequest& request, const std::vector<SecretBinding>& secrets) {
  for (const SecretBinding& s : secrets) {
    const std::string_view value = s.value().expose();
    auto holds = [&](std::string_view text) { return !value.empty() && text.find(value) != std::string_view::npos; };
    bool found = holds(request.workdir) || holds(request.stdin_bytes);
    for (const std::string& a : request.argv) found = found || holds(a);
    for (const auto& [k, v] : request.env) {
      if (k == s.env_var()) {
        throw ConfigError("run: env " + quote_for_message(k) + " is secret " + quote_for_message(s.env_var()) +
                          "'s variable (it holds the placeholder); choose another name");
      }
      found = found || holds(k) || holds(v);
    }
    if (found) {
      throw ConfigError("run: the request holds the value of secret " + quote_for_message(s.env_var()) +
                        "; a value never enters the sandbox (use its placeholder, " + s.placeholder() + ")");
    }
  }
}

// ---------------------------------------------------------------- events

std::string encode_event(const Event& event) {
  Json j;
  std::visit(
      [&j](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, StartedEvent>) {
          j["type"] = "started";
          j["sandbox"] = e.sandbox;
          Json p = Json::object();
          for (const auto& [k, v] : e.placeholders) p[k] = v;
          j["placeholders"] = std::move(p);
        } else if constexpr (std::is_same_v<T, WarningEvent>) {
          j["type"] = "warning";
          j["message"] = e.message;
        } else if constexpr (std::is_same_v<T, ViolationEvent>) {
          j["type"] = "violation";
          Json record = Json::parse(e.record, nullptr, false);
          j["record"] = record.is_object() ? std::move(record) : Json::object();
        } else if constexpr (std::is_same_v<T, ExitedEvent>) {
          j["type"] = "exited";
          j["id"] = e.id;
          j["code"] = e.code;
          j["timed_out"] = e.timed_out;
          j["stdout"] = base64_encode(e.stdout_bytes);
          j["stderr"] = base64_encode(e.stderr_bytes);
          j["stdout_truncated"] = e.stdout_truncated;
          j["stderr_truncated"] = e.stderr_truncated;
        } else if constexpr (std::is_same_v<T, ErrorEvent>) {
          j["type"] = "error";
          if (e.id) j["id"] = *e.id;
          j["message"] = e.message;
        } else {
          j["type"] = "stopped";
          j["code"] = e.code;
          j["reason"] = e.reason;
        }
      },
      event);
  // Messages come from airlock (and guest paths in them): never let bad UTF-8 throw here.
  return j.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
}

Event parse_event(std::string_view line) {
  constexpr const char* what = "event";
  const Json j = parse_object(line, what);
  const std::string type = j["type"].get<std::string>();
  if (type == "started") {
    StartedEvent e;
    e.sandbox = get_string(j, "sandbox", what);
    if (j.contains("placeholders") && j["placeholders"].is_object()) {
      for (auto it = j["placeholders"].begin(); it != j["placeholders"].end(); ++it) {
        if (it->is_string()) e.placeholders.emplace_back(it.key(), it->get<std::string>());
      }
    }
    return e;
  }
  if (type == "warning") return WarningEvent{get_string(j, "message", what)};
  if (type == "violation") return ViolationEvent{j.contains("record") ? j["record"].dump() : "{}"};
  if (type == "exited") {
    ExitedEvent e;
    e.id = get_unsigned(j, "id", what);
    if (!j.contains("code") || !j["code"].is_number_integer()) fail(what, "code must be a number");
    e.code = j["code"].get<int>();
    e.timed_out = get_bool(j, "timed_out");
    e.stdout_bytes = bytes_field(j, "stdout", what);
    e.stderr_bytes = bytes_field(j, "stderr", what);
    e.stdout_truncated = get_bool(j, "stdout_truncated");
    e.stderr_truncated = get_bool(j, "stderr_truncated");
    return e;
  }
  if (type == "error") {
    ErrorEvent e;
    if (j.contains("id")) e.id = get_unsigned(j, "id", what);
    e.message = get_string(j, "message", what);
    return e;
  }
  if (type == "stopped") {
    StoppedEvent e;
    if (!j.contains("code") || !j["code"].is_number_integer()) fail(what, "code must be a number");
    e.code = j["code"].get<int>();
    e.reason = get_string(j, "reason", what);
    return e;
  }
  fail(what, "unknown type " + quote_for_message(type));
}

// ---------------------------------------------------------------- base64

namespace {
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
}

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const std::uint32_t v = (static_cast<std::uint8_t>(bytes[i]) << 16) | (static_cast<std::uint8_t>(bytes[i + 1]) << 8) |
                            static_cast<std::uint8_t>(bytes[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out.push_back(kAlphabet[(v >> s) & 63]);
  }
  if (i < bytes.size()) {
    std::uint32_t v = static_cast<std::uint8_t>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<std::uint8_t>(bytes[i + 1]) << 8;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(i + 1 < bytes.size() ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::array<int, 256> map;
  map.fill(-1);
  for (int i = 0; i < 64; ++i) map[static_cast<std::uint8_t>(kAlphabet[i])] = i;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = text[i + k];
      if (c == '=' && last && k >= 2) {
        v[k] = 0;
        ++pad;
        continue;
      }
      if (pad) return std::nullopt;  // data after padding
      v[k] = map[static_cast<std::uint8_t>(c)];
      if (v[k] < 0) return std::nullopt;
    }
    const std::uint32_t n = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
    out.push_back(static_cast<char>((n >> 16) & 0xff));
    if (pad < 2) out.push_back(static_cast<char>((n >> 8) & 0xff));
    if (pad < 1) out.push_back(static_cast<char>(n & 0xff));
    // Canonical: the bits padding drops are zero.
    if ((pad == 1 && (v[2] & 3)) || (pad == 2 && (v[1] & 15))) return std::nullopt;
  }
  return out;
}

// ---------------------------------------------------------------- agent frames

std::string encode_run_frame(const RunRequest& request) {
  std::string payload;
  auto add = [&payload](std::string_view s) {
    payload.append(s);
    payload.push_back('\0');
  };
  add(std::to_string(request.argv.size()));
  add(std::to_string(request.env.size()));
  add(std::to_string(request.timeout_ms.value_or(0)));
  add(request.workdir);
  for (const std::string& a : request.argv) add(a);
  for (const auto& [k, v] : request.env) add(k + "=" + v);
  payload.append(request.stdin_bytes);
  std::string frame(1, 'R');
  append_u32(frame, static_cast<std::uint32_t>(payload.size()));
  frame.append(payload);
  return frame;
}

std::string encode_kill_frame() { return std::string("K\0\0\0\0", kFrameHeaderBytes); }

std::optional<AgentExit> parse_exit_payload(std::string_view payload) {
  const std::size_t nul = payload.find('\0');
  if (nul == std::string_view::npos || nul == 0 || payload.size() != nul + 3 || payload.back() != '\0') return std::nullopt;
  int code = 0;
  const auto [end, ec] = std::from_chars(payload.data(), payload.data() + nul, code);
  if (ec != std::errc() || end != payload.data() + nul || code < 0 || code > 255) return std::nullopt;
  const char t = payload[nul + 1];
  if (t != '0' && t != '1') return std::nullopt;
  return AgentExit{code, t == '1'};
}

std::optional<AgentFrame> AgentFrameReader::next() {
  if (!error_.empty()) return std::nullopt;
  if (buffer_.size() - start_ < kFrameHeaderBytes) return std::nullopt;
  const char type = buffer_[start_];
  if (type != 'O' && type != 'E' && type != 'X' && type != 'H') {
    error_ = "the agent sent an unknown frame type";
    return std::nullopt;
  }
  std::uint32_t length = 0;
  for (int i = 0; i < 4; ++i) length |= static_cast<std::uint32_t>(static_cast<std::uint8_t>(buffer_[start_ + 1 + i])) << (8 * i);
  if (length > kMaxAgentFrameBytes) {
    error_ = "the agent sent a frame over " + std::to_string(kMaxAgentFrameBytes) + " bytes";
    return std::nullopt;
  }
  if (buffer_.size() - start_ < kFrameHeaderBytes + length) return std::nullopt;
  AgentFrame frame{type, buffer_.substr(start_ + kFrameHeaderBytes, length)};
  start_ += kFrameHeaderBytes + length;
  if (start_ == buffer_.size()) {
    buffer_.clear();
    start_ = 0;
  } else if (start_ > kMaxAgentFrameBytes) {
    buffer_.erase(0, start_);
    start_ = 0;
  }
  return frame;
}

}  // namespace airlock::machine
