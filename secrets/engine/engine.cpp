// The secrets engine: eligibility (§3 gates), substitution (§3.5), violations (§4), unsafe
// shapes (§5). See engine.hpp for the contract and matcher.hpp for the placeholder forms.
#include <secrets/engine/engine.hpp>

#include <http/content_coding.hpp>
#include <secrets/engine/matcher.hpp>

#include <openssl/crypto.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <utility>

namespace airlock::secrets {

std::string_view to_string(Location location) noexcept {
  switch (location) {
    case Location::kRequestLine: return "request line";
    case Location::kQuery: return "query";
    case Location::kHeader: return "header";
    case Location::kBasicAuth: return "basic auth";
    case Location::kBody: return "body";
    case Location::kTrailer: return "trailer";
    case Location::kStream: return "stream";
  }
  return "unknown";
}

// ---- SecretSet ----

SecretSet::SecretSet(std::vector<SecretBinding> secrets, ViolationAction network_action, EngineOptions options)
    : secrets_(std::move(secrets)),
      action_(effective_violation_action(secrets_, network_action)),
      options_(options),
      compiled_(std::make_unique<Compiled>(secrets_)) {}

SecretSet::~SecretSet() = default;
const std::vector<SecretBinding>& SecretSet::secrets() const noexcept { return secrets_; }
ViolationAction SecretSet::action() const noexcept { return action_; }
const EngineOptions& SecretSet::options() const noexcept { return options_; }

namespace {

constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
// A buffered body's buffer is given back at the message end when larger than this.
constexpr std::size_t kKeptBodyBytes = 64 * 1024;

char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

// `text` in double quotes, control, quote, backslash and non-ASCII bytes escaped (\xNN), so a
// reason stays one printable line whatever the guest sent.
std::string quote(std::string_view text) {
  static constexpr char kHexDigits[] = "0123456789abcdef";
  std::string out = "\"";
  for (const char c : text) {
    const auto b = static_cast<unsigned char>(c);
    if (b < 0x20 || b >= 0x7f || c == '"' || c == '\\') {
      out += "\\x";
      out.push_back(kHexDigits[b >> 4]);
      out.push_back(kHexDigits[b & 15]);
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
  return out;
}

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

bool is_host_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-' || c == '.' || c == '_';
}

// The host part of a Host value or an authority (port stripped, IPv6 brackets kept, lower
// case, one trailing dot removed). False when it is not a plausible host.
bool host_part(std::string_view authority, std::string& out) {
  out.clear();
  std::string_view host;
  std::string_view rest;
  if (!authority.empty() && authority.front() == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return false;
    host = authority.substr(0, close + 1);
    rest = authority.substr(close + 1);
    for (const char c : host.substr(1, host.size() - 2)) {
      if (!(is_digit(c) || (lower(c) >= 'a' && lower(c) <= 'f') || c == ':' || c == '.')) return false;
    }
  } else {
    const std::size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view{} : authority.substr(colon);
    for (const char c : host) {
      if (!is_host_char(c)) return false;
    }
  }
  if (!rest.empty()) {
    if (rest.front() != ':') return false;
    for (const char c : rest.substr(1)) {
      if (!is_digit(c)) return false;
    }
  }
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  if (host.empty()) return false;
  out.reserve(host.size());
  for (const char c : host) out.push_back(lower(c));
  return true;
}

// Why a secret is not eligible for a request (0: it is).
enum Why : std::uint8_t {
  kEligible = 0,
  kHostNotAllowed,
  kNotPinned,
  kNoTlsIdentity,
  kAuthorityMismatch,
};

std::string_view why_text(Why why) noexcept {
  switch (why) {
    case kEligible: return "eligible";
    case kHostNotAllowed: return "the host is not in its allow list";
    case kNotPinned: return "the destination IP was not resolved by this sandbox for an allowed host";
    case kNoTlsIdentity: return "the connection has no verified TLS identity";
    case kAuthorityMismatch: return "the request authority (Host or target) does not match the server name";
  }
  return "not eligible";
}

}  // namespace

// ---- RequestRewriter ----

struct RequestRewriter::Impl final : http::RequestSink {
  // kBufferCoded: a compressed body with an injection due, buffered (de-chunked) whole, then
  // decoded, rewritten and encoded again with the same codings.
  enum class Mode : std::uint8_t { kPassthrough, kBuffer, kRechunk, kBufferCoded };

  Impl(const SecretSet& s, ConnectionContext c)
      : set(s), cs(s.compiled()), ctx(std::move(c)), parser(s.options().http), body_det(cs), inflated_det(cs), opaque_det(cs) {
    const std::size_t n = set.secrets().size();
    eligible.assign(n, 0);
    not_eligible.assign(n, 0);
    why.assign(n, kEligible);
    mask_headers.assign(n, 0);
    mask_basic.assign(n, 0);
    mask_query.assign(n, 0);
    mask_body.assign(n, 0);
    sni = ctx.sni;
    for (char& ch : sni) ch = lower(ch);
    if (!sni.empty() && sni.back() == '.') sni.pop_back();
  }

  ~Impl() override {
    wipe(head_out);
    wipe(body_out);
    // Guest bytes only (never a value): freed, not wiped; wiping its whole capacity would touch
    // every page of a body reserved at its declared length but never sent.
    std::string().swap(body_buf);
    wipe(scratch);
    wipe(decoded);
    wipe(encoded);
    wipe(reencoded);
    wipe(window);
    wipe(inflated);
    wipe(recoded);
  }

  const SecretSet& set;
  const SecretSet::Compiled& cs;
  ConnectionContext ctx;
  std::string sni;
  http::RequestParser parser;

  // Per request.
  std::vector<std::uint8_t> eligible, not_eligible, why;
  std::vector<std::uint8_t> mask_headers, mask_basic, mask_query, mask_body;
  bool any_not_eligible = false, any_headers = false, any_basic = false, any_query = false, any_body = false;
  std::string host;        // the name gates compare against (SNI, or Host for plain HTTP)
  std::string req_host;    // the request's Host host part
  std::string abs_host;    // an absolute-form / authority-form target's host part
  std::string gate_cache_host;  // plain HTTP: the host gates 1–3 were last computed for
  std::vector<std::uint8_t> gate_cache;
  bool gate_cache_valid = false;
  std::optional<HostPattern> any_host_pattern;  // HostPattern::exact(host) for any_host secrets
  std::string any_host_pattern_for;
  bool any_host_pattern_ok = false;

  Mode mode = Mode::kPassthrough;
  bool in_message = false;
  bool is_chunked = false;
  std::string head_out;                 // rewritten head (may hold values)
  std::vector<std::size_t> cl_offsets;  // Content-Length value spans in head_out (buffer mode)
  std::vector<std::size_t> cl_lengths;
  std::string body_buf;                 // buffered body or re-chunk carry (guest bytes)
  std::string body_out;                 // rewritten body (may hold values)
  std::string window;                   // re-chunk: carry + new data
  std::string scratch;                  // a header value being rewritten (may hold values)
  std::string decoded, encoded, reencoded;  // Basic credentials (may hold values)
  StreamDetector body_det;
  // Content codings of the current body; for detection in a compressed body bound for a host
  // that may not receive a value, its streaming decoder and the detector of what it decodes.
  std::vector<http::Coding> body_codings;
  std::optional<http::ContentDecoder> inflater;
  std::optional<Match> inflated_found;
  StreamDetector inflated_det;
  std::string inflated;  // decoded body bytes (may hold values once rewritten)
  std::string recoded;

  // Output during feed()/finish().
  std::string* out = nullptr;
  std::string* guest = nullptr;
  std::size_t committed = 0;      // out->size() at the last message end (or at entry)
  std::size_t verbatim_tail = 0;  // trailing bytes of *out that are verbatim stream data
  std::string held;               // verbatim tail held back between calls

  bool upgraded = false;
  StreamDetector opaque_det;
  std::string after_upgrade;  // guest bytes after an upgrade request, until its answer
  bool values_flowed = false;  // some secret was eligible for a request on this connection
  std::vector<ForwardedRequest> forwarded;

  std::optional<Block> block;
  std::vector<Substitution> subs;

  // ---- verdicts ----

  void set_block(bool violation, std::string env, Location loc, std::string reason) {
    if (block) return;
    Block b;
    b.action = set.action();
    b.violation = violation;
    b.secret_env = std::move(env);
    b.host = host.empty() ? (sni.empty() ? ctx.destination.to_string() : sni) : host;
    b.location = loc;
    b.reason = std::move(reason);
    block = std::move(b);
  }

  void violation(std::uint32_t s, Location loc, std::uint8_t forms) {
    const SecretBinding& secret = set.secrets()[s];
    std::string reason = "placeholder (";
    reason += form_name(forms);
    reason += ") in the ";
    reason += to_string(loc);
    reason += " for a secret not allowed for host ";
    reason += host.empty() ? std::string("(none)") : quote(host);
    reason += ": ";
    reason += why_text(static_cast<Why>(why[s]));
    set_block(true, secret.env_var(), loc, std::move(reason));
  }

  void opaque_violation(std::uint32_t s, std::uint8_t forms) {
    const SecretBinding& secret = set.secrets()[s];
    std::string reason = "placeholder (";
    reason += form_name(forms);
    reason += ") in the opaque stream after a protocol upgrade; placeholders are never substituted there";
    set_block(true, secret.env_var(), Location::kStream, std::move(reason));
  }

  void record(std::uint32_t s, Location loc) {
    subs.push_back(Substitution{set.secrets()[s].env_var(), host, loc});
  }

  // ---- gates ----

  // Gates 1–3 for `name` (the SNI, or the Host for plain HTTP); results into gate_cache.
  void compute_connection_gates(const std::string& name) {
    const auto& secrets = set.secrets();
    gate_cache.assign(secrets.size(), kEligible);
    for (std::size_t i = 0; i < secrets.size(); ++i) {
      const SecretBinding& s = secrets[i];
      if (name.empty()) {
        gate_cache[i] = kHostNotAllowed;
        continue;
      }
      if (!s.any_host() && s.match_host(name) == nullptr) {
        gate_cache[i] = kHostNotAllowed;
        continue;
      }
      if (ctx.transport == Transport::kOpaque ||
          (ctx.transport == Transport::kPlainHttp && s.require_tls_identity())) {
        gate_cache[i] = kNoTlsIdentity;
      }
    }
    gate_cache_host = name;
    gate_cache_valid = true;
  }

  const HostPattern* exact_pattern_for(const std::string& name) {
    if (any_host_pattern_for != name || !any_host_pattern) {
      any_host_pattern_for = name;
      any_host_pattern.reset();
      try {
        any_host_pattern = HostPattern::exact(name);
      } catch (...) {
        // Not a valid host name: no pattern, gate 2 fails.
      }
    }
    return any_host_pattern ? &*any_host_pattern : nullptr;
  }

  void compute_eligibility(const http::RequestHead& head) {
    // Gate 4 inputs: exactly one Host, and an absolute-form or authority-form target.
    std::size_t host_count = 0;
    std::string_view host_value;
    for (const http::HeaderField& f : head.fields) {
      if (iequals(head.view(f.name), "host")) {
        ++host_count;
        host_value = head.view(f.value);
      }
    }
    const bool host_ok = host_count == 1 && host_part(host_value, req_host);
    if (!host_ok) req_host.clear();
    bool target_ok = true;
    const std::string_view target = head.view(head.target);
    const std::string_view method = head.view(head.method);
    if (method == "CONNECT") {
      target_ok = host_part(target, abs_host) && abs_host == req_host;
    } else if (!target.empty() && target.front() != '/' && target != "*") {
      const std::size_t scheme_end = target.find("://");
      if (scheme_end == std::string_view::npos) {
        target_ok = false;
      } else {
        std::string_view authority = target.substr(scheme_end + 3);
        authority = authority.substr(0, authority.find_first_of("/?#"));
        target_ok = authority.find('@') == std::string_view::npos && host_part(authority, abs_host) &&
                    abs_host == req_host;
      }
    }

    if (ctx.transport == Transport::kPlainHttp) {
      host = req_host;
    } else {
      host = sni;
    }
    const bool authority_ok = host_ok && target_ok && !host.empty() && req_host == host;

    if (!gate_cache_valid || gate_cache_host != host) compute_connection_gates(host);

    const auto& secrets = set.secrets();
    any_not_eligible = any_headers = any_basic = any_query = any_body = false;
    for (std::size_t i = 0; i < secrets.size(); ++i) {
      const SecretBinding& s = secrets[i];
      std::uint8_t w = gate_cache[i];
      if (w == kEligible) {
        // Gate 2 is asked per request (a pin can expire while a connection lives), for a
        // pattern that matched the host in gate 1 (any_host: the exact host).
        bool pinned = false;
        if (ctx.pins != nullptr) {
          if (s.any_host()) {
            const HostPattern* pattern = exact_pattern_for(host);
            pinned = pattern != nullptr && ctx.pins->pinned(ctx.destination, *pattern);
          } else {
            for (const HostPattern& pattern : s.hosts()) {
              if (pattern.matches(host) && ctx.pins->pinned(ctx.destination, pattern)) {
                pinned = true;
                break;
              }
            }
          }
        }
        if (!pinned) w = kNotPinned;
      }
      if (w == kEligible && !authority_ok) w = kAuthorityMismatch;
      why[i] = w;
      const bool ok = w == kEligible;
      eligible[i] = ok ? 1 : 0;
      not_eligible[i] = ok ? 0 : 1;
      any_not_eligible = any_not_eligible || !ok;
      const InjectionScopes& sc = s.scopes();
      mask_headers[i] = ok && sc.headers;
      mask_basic[i] = ok && sc.basic_auth;
      mask_query[i] = ok && sc.query;
      mask_body[i] = ok && sc.body;
      any_headers = any_headers || mask_headers[i];
      any_basic = any_basic || mask_basic[i];
      any_query = any_query || mask_query[i];
      any_body = any_body || mask_body[i];
    }
  }

  // ---- substitution helpers ----

  enum class Into : std::uint8_t { kHead, kQuery, kBody, kBasic };

  // Appends `text` to dst with every raw placeholder of a secret in `mask` replaced by its
  // value (percent-encoded for the query). Returns false (and blocks) when a value with CR, LF
  // or NUL would go into the head.
  bool substitute_raw(std::string_view text, const std::vector<std::uint8_t>& mask, Into into, Location loc,
                      std::string& dst) {
    const auto* d = reinterpret_cast<const unsigned char*>(text.data());
    const std::size_t n = text.size();
    std::size_t i = 0, last = 0;
    while (true) {
      i = next_trigger(cs, d, i, n, true);
      if (i >= n) break;
      bool replaced = false;
      for (const std::uint32_t s : raw_candidates(cs, d, n, i)) {
        if (!mask[s]) continue;
        const std::string& p = cs.placeholders[s];
        if (p.size() > n - i || std::memcmp(d + i, p.data(), p.size()) != 0) continue;
        if (into == Into::kHead && cs.value_unsafe_for_head[s]) {
          set_block(false, set.secrets()[s].env_var(), loc,
                    "the value of this secret contains CR, LF or NUL and cannot be placed in a header");
          return false;
        }
        dst.append(text.substr(last, i - last));
        const std::string_view value = set.secrets()[s].value().expose();
        if (into == Into::kQuery) {
          percent_encode_append(value, dst);
        } else {
          dst.append(value);
        }
        record(s, loc);
        i += p.size();
        last = i;
        replaced = true;
        break;
      }
      if (!replaced) ++i;
    }
    dst.append(text.substr(last));
    return true;
  }

  // `Basic <token68>` → the token span inside the value, or empty.
  static std::string_view basic_token(std::string_view value) {
    if (value.size() < 6 || !iequals(value.substr(0, 5), "basic") || (value[5] != ' ' && value[5] != '\t')) {
      return {};
    }
    std::size_t k = 5;
    while (k < value.size() && (value[k] == ' ' || value[k] == '\t')) ++k;
    return value.substr(k);
  }

  // ---- head ----

  Location head_location(const http::RequestHead& head, std::size_t pos) const {
    const std::size_t line_end = head.fields.empty() ? head.raw.size() : head.fields.front().line.offset;
    if (pos >= line_end) return Location::kHeader;
    const std::string_view target = head.view(head.target);
    const std::size_t q = target.find('?');
    if (q != std::string_view::npos && pos > head.target.offset + q && pos < head.target.offset + head.target.length) {
      return Location::kQuery;
    }
    return Location::kRequestLine;
  }

  // Every placeholder form of a secret not eligible for this request, anywhere in the head.
  bool scan_head_violations(const http::RequestHead& head) {
    const auto* d = reinterpret_cast<const unsigned char*>(head.raw.data());
    bool found = false;
    scan_forms(cs, d, 0, head.raw.size(), head.raw.size(), not_eligible.data(), true,
               [&](std::size_t pos, const Match& m) {
                 violation(m.secret, head_location(head, pos), m.forms);
                 found = true;
                 return false;
               });
    if (found) return false;
    // Inside Basic credentials, decoded.
    for (const http::HeaderField& f : head.fields) {
      const std::string_view name = head.view(f.name);
      if (!iequals(name, "authorization") && !iequals(name, "proxy-authorization")) continue;
      const std::string_view token = basic_token(head.view(f.value));
      if (token.empty() || !base64_decode(token, decoded)) continue;
      const auto* dd = reinterpret_cast<const unsigned char*>(decoded.data());
      scan_forms(cs, dd, 0, decoded.size(), decoded.size(), not_eligible.data(), true,
                 [&](std::size_t, const Match& m) {
                   violation(m.secret, Location::kBasicAuth, static_cast<std::uint8_t>(m.forms | kFormBasic));
                   found = true;
                   return false;
                 });
      if (found) return false;
    }
    // Base64 / base64url anywhere in the head.
    std::size_t at = 0;
    const Match m = find_base64_form(cs, head.raw, not_eligible.data(), &at);
    if (m.kind == Match::kFound) {
      violation(m.secret, head_location(head, at), m.forms);
      return false;
    }
    return true;
  }

  // A body-injection secret is due: §5 shapes that cannot be rewritten safely.
  bool check_body_shape(const http::RequestHead& head, std::uint32_t due) {
    if (!body_coding_known) {
      set_block(false, set.secrets()[due].env_var(), Location::kHeader,
                "a body injection is due but the body has a Content-Encoding airlock does not decode; only "
                "identity, gzip, deflate, br and zstd bodies are rewritten");
      return false;
    }
    if (head.framing == http::BodyFraming::kContentLength && head.content_length > set.options().max_body_bytes) {
      set_block(false, set.secrets()[due].env_var(), Location::kBody,
                "a body injection is due but Content-Length " + std::to_string(head.content_length) +
                    " exceeds the body size cap of " + std::to_string(set.options().max_body_bytes) + " bytes");
      return false;
    }
    return true;
  }

  // ---- what the response may be (issue 12 items 3, 4) ----

  static bool has_list_token(std::string_view list, std::string_view token) {
    bool found = false;
    for_each_item(list, [&](std::string_view item) { found = found || iequals(item, token); });
    return found;
  }
  template <typename F>
  static void for_each_item(std::string_view list, F&& f) {
    while (true) {
      const std::size_t comma = list.find(',');
      std::string_view item = list.substr(0, comma);
      while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
      while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
      if (!item.empty()) f(item);
      if (comma == std::string_view::npos) return;
      list.remove_prefix(comma + 1);
    }
  }
  // `list` without the items for which drop(item) holds, joined by ", ".
  template <typename Drop>
  static std::string without_items(std::string_view list, Drop&& drop) {
    std::string out;
    for_each_item(list, [&](std::string_view item) {
      if (drop(item)) return;
      if (!out.empty()) out += ", ";
      out += item;
    });
    return out;
  }

  // How one head field leaves when values may flow: kept, replaced by `value`, or dropped.
  struct FieldEdit {
    enum Kind : std::uint8_t { kKeep, kReplace, kDrop } kind = kKeep;
    std::string value;
  };
  struct ResponseRestrictions {
    bool te_dropped = false;     // TE removed (it offered no "trailers")
    bool h2c_stripped = false;   // h2c removed from Upgrade (with HTTP2-Settings)
    bool upgrade_dropped = false;  // no Upgrade protocol left
    bool accept_encoding_seen = false;
  };

  // Decides the edits before the head is written: TE reduced to "trailers" (or dropped),
  // Upgrade without h2c, HTTP2-Settings dropped, one Accept-Encoding: identity.
  ResponseRestrictions plan_restrictions(const http::RequestHead& head) const {
    ResponseRestrictions r;
    for (const http::HeaderField& f : head.fields) {
      const std::string_view name = head.view(f.name), value = head.view(f.value);
      if (iequals(name, "te") && !has_list_token(value, "trailers")) r.te_dropped = true;
      if (iequals(name, "upgrade") && has_list_token(value, "h2c")) {
        r.h2c_stripped = true;
        if (without_items(value, [](std::string_view i) { return iequals(i, "h2c"); }).empty()) r.upgrade_dropped = true;
      }
    }
    return r;
  }

  FieldEdit restrict_field(std::string_view name, std::string_view value, ResponseRestrictions& r) const {
    if (iequals(name, "accept-encoding")) {
      // One identity offer: a compressed echo would carry a value past the response scrubber.
      if (std::exchange(r.accept_encoding_seen, true)) return {FieldEdit::kDrop, {}};
      return {FieldEdit::kReplace, "identity"};
    }
    if (iequals(name, "te")) {
      // Only chunked (always allowed) and trailers: no transfer-coding the scrubber cannot read.
      if (!has_list_token(value, "trailers")) return {FieldEdit::kDrop, {}};
      return {FieldEdit::kReplace, "trailers"};
    }
    if (iequals(name, "http2-settings") && r.h2c_stripped) return {FieldEdit::kDrop, {}};
    if (iequals(name, "upgrade") && r.h2c_stripped) {
      if (r.upgrade_dropped) return {FieldEdit::kDrop, {}};
      return {FieldEdit::kReplace, without_items(value, [](std::string_view i) { return iequals(i, "h2c"); })};
    }
    if (iequals(name, "connection") && (r.te_dropped || r.h2c_stripped)) {
      std::string v = without_items(value, [&](std::string_view i) {
        return (r.te_dropped && iequals(i, "te")) || (r.h2c_stripped && iequals(i, "http2-settings")) ||
               (r.upgrade_dropped && iequals(i, "upgrade"));
      });
      if (v.empty()) return {FieldEdit::kDrop, {}};
      return {FieldEdit::kReplace, std::move(v)};
    }
    return {};
  }

  // Builds the rewritten head into head_out. Returns false when blocked. With `restrict`
  // (values may flow on this connection), the fields that decide the response's codings are
  // edited (restrict_field) and an Accept-Encoding: identity is added when there was none.
  bool rewrite_head(http::RequestHead& head, bool drop_expect, bool track_cl, bool restrict) {
    const std::string& raw = head.raw;
    const std::string_view rv(raw);
    head_out.clear();
    cl_offsets.clear();
    cl_lengths.clear();
    const std::size_t line_end = head.fields.empty() ? raw.size() - 2 : head.fields.front().line.offset;
    const std::string_view target = head.view(head.target);
    const std::size_t q = target.find('?');
    if (any_query && q != std::string_view::npos) {
      const std::size_t qs = head.target.offset + q + 1;
      const std::size_t te = head.target.offset + head.target.length;
      head_out.append(rv.substr(0, qs));
      if (!substitute_raw(rv.substr(qs, te - qs), mask_query, Into::kQuery, Location::kQuery, head_out)) return false;
      head_out.append(rv.substr(te, line_end - te));
    } else {
      head_out.append(rv.substr(0, line_end));
    }
    std::size_t pos = line_end;
    ResponseRestrictions restrictions = restrict ? plan_restrictions(head) : ResponseRestrictions{};
    if (restrictions.upgrade_dropped) head.upgrade = false;  // nothing left to switch to
    for (const http::HeaderField& f : head.fields) {
      const std::string_view name = head.view(f.name);
      const std::size_t line_stop = f.line.offset + f.line.length;
      const FieldEdit edit = restrict ? restrict_field(name, head.view(f.value), restrictions) : FieldEdit{};
      if ((drop_expect && iequals(name, "expect")) || edit.kind == FieldEdit::kDrop) {
        head_out.append(rv.substr(pos, f.line.offset - pos));
        pos = line_stop;
        continue;
      }
      head_out.append(rv.substr(pos, f.value.offset - pos));
      // An edited value (Upgrade without h2c, Connection without TE) is substituted like any other.
      const std::string_view value = edit.kind == FieldEdit::kReplace ? std::string_view(edit.value) : head.view(f.value);
      if (edit.kind == FieldEdit::kReplace && iequals(name, "accept-encoding")) {
        head_out.append(edit.value);
      } else if (track_cl && iequals(name, "content-length")) {
        cl_offsets.push_back(head_out.size());
        cl_lengths.push_back(value.size());
        head_out.append(value);
      } else {
        std::string_view v = value;
        if (any_headers) {
          scratch.clear();
          if (!substitute_raw(value, mask_headers, Into::kHead, Location::kHeader, scratch)) return false;
          v = scratch;
        }
        const std::string_view token = any_basic && iequals(name, "authorization") ? basic_token(v) : std::string_view{};
        if (!token.empty() && base64_decode(token, decoded)) {
          encoded.clear();
          if (!substitute_raw(decoded, mask_basic, Into::kBasic, Location::kBasicAuth, encoded)) return false;
          if (encoded != decoded) {
            head_out.append(v.substr(0, v.size() - token.size()));
            reencoded = base64_encode(encoded);
            head_out.append(reencoded);
            wipe(reencoded);
          } else {
            head_out.append(v);
          }
        } else {
          head_out.append(v);
        }
      }
      head_out.append(rv.substr(f.value.offset + f.value.length, line_stop - (f.value.offset + f.value.length)));
      pos = line_stop;
    }
    // rv[pos, end) is the empty line ending the head.
    if (restrict && !restrictions.accept_encoding_seen) head_out.append("Accept-Encoding: identity\r\n");
    head_out.append(rv.substr(pos));
    return true;
  }

  void on_head(http::RequestHead& head) override {
    if (block) return;
    in_message = true;
    is_chunked = head.framing == http::BodyFraming::kChunked;
    parse_body_codings(head);
    compute_eligibility(head);
    if (any_not_eligible && !scan_head_violations(head)) return;
    // Sticky: once a value may have reached this upstream, every later response may echo it.
    values_flowed = values_flowed || std::any_of(eligible.begin(), eligible.end(), [](std::uint8_t e) { return e != 0; });

    const bool has_body = is_chunked || (head.framing == http::BodyFraming::kContentLength && head.content_length > 0);
    mode = Mode::kPassthrough;
    if (any_body && has_body) {
      std::uint32_t due = 0;
      while (!mask_body[due]) ++due;
      if (!check_body_shape(head, due)) return;
      mode = !body_codings.empty() ? Mode::kBufferCoded : is_chunked ? Mode::kRechunk : Mode::kBuffer;
    }
    if (mode == Mode::kPassthrough && any_not_eligible && !body_codings.empty() && has_body) {
      // Detection looks inside: the decoded stream, bounded; past a cap or a corrupt byte it
      // stops (what follows goes out unscanned, as any body the server cannot read either).
      // The scan keeps no decoded bytes beyond the detector's carry, so the only bound needed is
      // on work and on one feed's output: the output cap (not the ratio, whose verdict would
      // depend on how the input was cut).
      http::CodingLimits limits;
      limits.max_output = set.options().max_body_bytes;
      limits.max_ratio = std::size_t{1} << 30;
      inflater.emplace(body_codings, limits);
    }
    // A length-framed body buffered whole leaves with its length recomputed.
    const bool buffer = mode == Mode::kBuffer || (mode == Mode::kBufferCoded && !is_chunked);
    const bool drop_expect = buffer && head.expect_continue;
    if (!any_headers && !any_basic && !any_query && !any_body && !values_flowed) {
      out->append(head.raw);
    } else {
      if (!rewrite_head(head, drop_expect, buffer, values_flowed)) return;
      if (!buffer) out->append(head_out);
    }
    const std::string_view method = head.view(head.method);
    forwarded.push_back(
        ForwardedRequest{method == "HEAD", method == "CONNECT", head.upgrade && method != "CONNECT", head.minor_version == 0});
    verbatim_tail = 0;
    if (drop_expect) guest->append(kContinue);
    body_buf.clear();
    if (buffer) body_buf.reserve(static_cast<std::size_t>(head.content_length));
  }

  std::string content_encoding;  // joined Content-Encoding values of the current head
  bool body_coding_known = true;
  void parse_body_codings(const http::RequestHead& head) {
    content_encoding.clear();
    for (const http::HeaderField& f : head.fields) {
      if (!iequals(head.view(f.name), "content-encoding")) continue;
      if (!content_encoding.empty()) content_encoding += ", ";
      content_encoding.append(head.view(f.value));
    }
    body_coding_known = http::parse_content_encoding(content_encoding, body_codings) == http::CodingError::kNone;
    if (!body_coding_known) body_codings.clear();
  }

  // The codings by their own names (never the header's bytes, which the guest chose).
  std::string coding_names() const {
    std::string out;
    for (const http::Coding c : body_codings) {
      if (!out.empty()) out += ", ";
      out.append(http::coding_name(c));
    }
    return out;
  }

  // kBufferCoded: decodes body_buf (bounded by the body cap and the ratio cap), rewrites it, and
  // encodes it again into body_out. A body with nothing substituted leaves as it came.
  bool rewrite_coded_body() {
    std::uint32_t due = 0;
    while (!mask_body[due]) ++due;
    http::CodingLimits limits;
    limits.max_output = set.options().max_body_bytes;
    limits.max_ratio = set.options().max_decompression_ratio;
    inflated.clear();
    if (const http::CodingError e = http::decode_all(body_codings, body_buf, limits, inflated); e != http::CodingError::kNone) {
      wipe(inflated);
      set_block(false, set.secrets()[due].env_var(), Location::kBody,
                "a body injection is due but the " + coding_names() + "-encoded body cannot be decoded: " +
                    std::string(http::describe(e)));
      return false;
    }
    if (any_not_eligible && !detect_base64(inflated, Location::kBody)) {
      wipe(inflated);
      return false;
    }
    const std::size_t substituted_before = subs.size();
    body_out.clear();
    rewrite_body(inflated, true, body_out);
    wipe(inflated);
    if (block) return false;
    if (subs.size() == substituted_before) {
      body_out.assign(body_buf);
      return true;
    }
    recoded.clear();
    if (http::encode_all(body_codings, body_out, recoded) != http::CodingError::kNone) {
      set_block(false, set.secrets()[due].env_var(), Location::kBody, "the rewritten body could not be encoded again");
      return false;
    }
    wipe(body_out);
    body_out.swap(recoded);
    return true;
  }

  // Passthrough detection inside a compressed body. A placeholder found there is acted on at the
  // end of the body, after the raw scan of the same body: which of two findings is reported must
  // not depend on how the guest's bytes were cut (the bytes sent meanwhile carry no value).
  void scan_inflated(std::string_view data, bool last) {
    if (!inflater || inflated_found) return;
    inflated.clear();
    const http::CodingError e = last ? inflater->finish(inflated) : inflater->feed(data, inflated);
    // What decoded before an error is scanned too; then the scan ends (see on_head).
    Match m;
    std::uint64_t at = 0;
    if (!inflated_det.feed(inflated, not_eligible.data(), &m, &at) ||
        ((last || e != http::CodingError::kNone) && !inflated_det.finish(not_eligible.data(), &m, &at))) {
      inflated_found = m;
    }
    if (e != http::CodingError::kNone || inflated_found) inflater.reset();
  }
  // The end of a passthrough body: a placeholder found inside the decoded body is a violation.
  bool finish_inflated() {
    scan_inflated({}, true);
    inflater.reset();
    if (!inflated_found) return true;
    const Match m = *inflated_found;
    inflated_found.reset();
    violation(m.secret, Location::kBody, m.forms);
    return false;
  }

  // Scans `data` (complete, or with `final` false a prefix of the body so far) for body forms:
  // violations block; raw placeholders of body-scope secrets are replaced. Appends the settled
  // part to dst and returns its length (the rest may begin a placeholder).
  std::size_t rewrite_body(std::string_view data, bool final, std::string& dst) {
    const auto* d = reinterpret_cast<const unsigned char*>(data.data());
    const std::size_t n = data.size();
    std::size_t i = 0, last = 0, settled = n;
    while (true) {
      i = next_trigger(cs, d, i, n);
      if (i >= n) break;
      const Match m = match_at(cs, d, n, i, nullptr);
      if (m.kind == Match::kPartial) {
        if (!final) {
          settled = i;
          break;
        }
      } else if (m.kind == Match::kFound) {
        const std::uint32_t s = m.secret;
        if (!eligible[s]) {
          violation(s, Location::kBody, m.forms);
          return 0;
        }
        if (m.forms == kFormRaw && mask_body[s]) {
          dst.append(data.substr(last, i - last));
          dst.append(set.secrets()[s].value().expose());
          record(s, Location::kBody);
          i += m.length;
          last = i;
          continue;
        }
      }
      ++i;
    }
    dst.append(data.substr(last, settled - last));
    return settled;
  }

  void emit_chunk(std::string_view data) {
    if (data.empty()) return;
    char hex[20];
    const auto r = std::to_chars(hex, hex + sizeof hex, data.size(), 16);
    out->append(hex, static_cast<std::size_t>(r.ptr - hex));
    out->append("\r\n");
    out->append(data);
    out->append("\r\n");
  }

  // Re-chunk: rewrites what can be settled of carry + data and emits it as one chunk.
  void rechunk(std::string_view data, bool final) {
    window.assign(body_buf);
    window.append(data);
    body_out.clear();
    const std::size_t settled = rewrite_body(window, final, body_out);
    if (block) return;
    emit_chunk(body_out);
    body_buf.assign(window, settled, std::string::npos);
    verbatim_tail = 0;
  }

  bool detect(StreamDetector& det, std::string_view data, Location loc) {
    Match m;
    std::uint64_t at = 0;
    if (!det.feed(data, not_eligible.data(), &m, &at)) {
      violation(m.secret, loc, m.forms);
      return false;
    }
    return true;
  }

  bool detect_finish(StreamDetector& det, Location loc) {
    Match m;
    std::uint64_t at = 0;
    if (!det.finish(not_eligible.data(), &m, &at)) {
      violation(m.secret, loc, m.forms);
      return false;
    }
    return true;
  }

  // A complete piece (chunk framing, trailers): violations only, every form the head is
  // searched for (raw, percent, JSON, base64 and base64url at each alignment).
  bool detect_whole(std::string_view data, Location loc) {
    bool found = false;
    const auto* d = reinterpret_cast<const unsigned char*>(data.data());
    scan_forms(cs, d, 0, data.size(), data.size(), not_eligible.data(), true, [&](std::size_t, const Match& m) {
      violation(m.secret, loc, m.forms);
      found = true;
      return false;
    });
    return !found && detect_base64(data, loc);
  }

  // Base64 and base64url forms only (rewrite_body finds the others in a buffered body).
  bool detect_base64(std::string_view data, Location loc) {
    std::size_t at = 0;
    const Match m = find_base64_form(cs, data, not_eligible.data(), &at);
    if (m.kind == Match::kFound) {
      violation(m.secret, loc, m.forms);
      return false;
    }
    return true;
  }

  void on_body(std::string_view data) override {
    if (block) return;
    switch (mode) {
      case Mode::kPassthrough:
        if (any_not_eligible && !detect(body_det, data, Location::kBody)) return;
        scan_inflated(data, false);
        out->append(data);
        verbatim_tail += data.size();
        break;
      case Mode::kBuffer:
        body_buf.append(data);
        break;
      case Mode::kRechunk:
        // rewrite_body sees raw, percent and JSON forms; the stream detector adds base64 ones.
        if (any_not_eligible && !detect(body_det, data, Location::kBody)) return;
        rechunk(data, false);
        break;
      case Mode::kBufferCoded:
        if (body_buf.size() + data.size() > set.options().max_body_bytes) {
          std::uint32_t due = 0;
          while (!mask_body[due]) ++due;
          set_block(false, set.secrets()[due].env_var(), Location::kBody,
                    "a body injection is due but the compressed chunked body exceeds the body size cap of " +
                        std::to_string(set.options().max_body_bytes) + " bytes");
          return;
        }
        body_buf.append(data);
        break;
    }
  }

  void on_framing(http::FramingKind kind, std::string_view raw) override {
    if (block) return;
    switch (kind) {
      case http::FramingKind::kEmptyLine:
        out->append(raw);
        verbatim_tail = 0;
        return;
      case http::FramingKind::kChunkHeader:
      case http::FramingKind::kChunkEnd:
        if (any_not_eligible && !detect_whole(raw, Location::kBody)) return;
        if (mode == Mode::kPassthrough) {
          out->append(raw);
          verbatim_tail = 0;
        }
        return;
      case http::FramingKind::kLastChunk: {
        if (mode == Mode::kPassthrough) {
          if (any_not_eligible && !detect_finish(body_det, Location::kBody)) return;
          if (!finish_inflated()) return;
        } else if (mode == Mode::kRechunk) {
          if (any_not_eligible && !detect_finish(body_det, Location::kBody)) return;
          rechunk({}, true);
          if (block) return;
        } else if (mode == Mode::kBufferCoded) {
          if (!rewrite_coded_body()) return;
          emit_chunk(body_out);
          wipe(body_out);
          body_buf.clear();
          mode = Mode::kPassthrough;  // the message end has nothing left to do
        }
        const Location loc = raw.size() > 5 ? Location::kTrailer : Location::kBody;
        if (any_not_eligible && !detect_whole(raw, loc)) return;
        out->append(raw);
        verbatim_tail = 0;
        return;
      }
    }
  }

  void on_message_end() override {
    if (block) return;
    if (mode == Mode::kPassthrough) {
      if (any_not_eligible && !detect_finish(body_det, Location::kBody)) return;
      if (!is_chunked && !finish_inflated()) return;
    } else if (mode == Mode::kBuffer || mode == Mode::kBufferCoded) {
      if (mode == Mode::kBufferCoded) {
        if (!rewrite_coded_body()) return;
      } else {
        if (any_not_eligible && !detect_base64(body_buf, Location::kBody)) return;
        body_out.clear();
        body_out.reserve(body_buf.size() + body_buf.size() / 8 + 64);
        rewrite_body(body_buf, true, body_out);
      }
      if (block) return;
      // Recompute Content-Length: rewrite only its value(s), right to left.
      const std::string len = std::to_string(body_out.size());
      for (std::size_t k = cl_offsets.size(); k-- > 0;) head_out.replace(cl_offsets[k], cl_lengths[k], len);
      out->append(head_out);
      out->append(body_out);
      wipe(body_out);
      wipe(head_out);
      std::string().swap(body_out);  // a keep-alive connection keeps no body-sized buffer
    }
    body_det.reset();
    inflated_det.reset();
    inflater.reset();
    inflated_found.reset();
    body_buf.clear();
    if (body_buf.capacity() > kKeptBodyBytes) std::string().swap(body_buf);
    mode = Mode::kPassthrough;
    in_message = false;
    verbatim_tail = 0;
    committed = out->size();
  }

  // ---- driving ----

  void begin(std::string& to_upstream, std::string* to_guest) {
    out = &to_upstream;
    guest = to_guest;
    committed = to_upstream.size();
    to_upstream.append(held);
    verbatim_tail = held.size();
    held.clear();
  }

  Status end(std::size_t carry) {
    if (block) {
      // Drop this call's output past the last complete message (it may hold values).
      if (out->size() > committed) {
        OPENSSL_cleanse(out->data() + committed, out->size() - committed);
        out->resize(committed);
      }
      held.clear();
      out = nullptr;
      guest = nullptr;
      return Status::kBlocked;
    }
    const std::size_t hold = std::min(carry, verbatim_tail);
    if (hold > 0) {
      held.assign(*out, out->size() - hold, hold);
      out->resize(out->size() - hold);
    }
    out = nullptr;
    guest = nullptr;
    return Status::kOk;
  }

  std::size_t current_carry() const {
    if (upgraded) return opaque_det.carry_size();
    if (mode == Mode::kPassthrough && in_message) return body_det.carry_size();
    return 0;
  }

  void opaque_feed(std::string_view data) {
    Match m;
    std::uint64_t at = 0;
    if (!opaque_det.feed(data, nullptr, &m, &at)) {
      opaque_violation(m.secret, m.forms);
      return;
    }
    out->append(data);
    verbatim_tail += data.size();
  }

  // Bytes after an upgrade request wait for its answer (bounded: a client that speaks the new
  // protocol before the 101 would otherwise make the gateway buffer without limit).
  void hold_after_upgrade(std::string_view rest) {
    if (after_upgrade.size() + rest.size() > kMaxHeldAfterUpgrade) {
      set_block(false, {}, Location::kStream,
                "more than " + std::to_string(kMaxHeldAfterUpgrade) +
                    " bytes sent after an upgrade request before its response");
      return;
    }
    after_upgrade.append(rest);
  }

  Status upgrade_answered(bool switched, std::string& to_upstream, std::string& to_guest) {
    if (block) return Status::kBlocked;
    if (!parser.awaiting_upgrade()) return Status::kOk;
    parser.resolve_upgrade(switched);
    std::string pending;
    pending.swap(after_upgrade);
    return feed(pending, to_upstream, to_guest);
  }

  Status feed(std::string_view in, std::string& to_upstream, std::string& to_guest) {
    if (block) return Status::kBlocked;
    begin(to_upstream, &to_guest);
    if (parser.awaiting_upgrade()) {
      hold_after_upgrade(in);
    } else if (upgraded) {
      opaque_feed(in);
    } else {
      const std::size_t n = parser.parse(in, *this);
      if (!block && parser.error() != http::ParseError::kNone) {
        std::string reason = "malformed request: ";
        reason += http::to_string(parser.error());
        set_block(false, {}, in_message ? Location::kBody : Location::kRequestLine, std::move(reason));
      }
      if (!block && parser.awaiting_upgrade()) {
        committed = out->size();
        if (n < in.size()) hold_after_upgrade(in.substr(n));
      }
      if (!block && parser.upgraded()) {
        upgraded = true;
        in_message = false;
        verbatim_tail = 0;
        committed = out->size();
        if (n < in.size()) opaque_feed(in.substr(n));
      }
    }
    return end(current_carry());
  }

  Status finish(std::string& to_upstream) {
    if (block) return Status::kBlocked;
    begin(to_upstream, nullptr);
    Match m;
    std::uint64_t at = 0;
    if (parser.awaiting_upgrade()) {
      // The guest stopped sending before the answer came: what it sent after the upgrade
      // request is not forwarded (it is neither known to be HTTP nor known to be the new
      // protocol); a placeholder in it is still a violation.
      if (!opaque_det.feed(after_upgrade, nullptr, &m, &at) || !opaque_det.finish(nullptr, &m, &at)) {
        opaque_violation(m.secret, m.forms);
      }
      wipe(after_upgrade);
    } else if (upgraded) {
      if (!opaque_det.finish(nullptr, &m, &at)) opaque_violation(m.secret, m.forms);
    } else if (in_message) {
      switch (mode) {
        case Mode::kPassthrough:
          if (any_not_eligible) detect_finish(body_det, Location::kBody);
          break;
        case Mode::kBuffer:
        case Mode::kBufferCoded:
          // The body never completed: it is not forwarded; a violation in it still blocks.
          if (any_not_eligible) detect_whole(body_buf, Location::kBody);
          break;
        case Mode::kRechunk:
          rechunk({}, true);
          break;
      }
    }
    return end(0);
  }
};

RequestRewriter::RequestRewriter(const SecretSet& set, ConnectionContext context)
    : impl_(std::make_unique<Impl>(set, std::move(context))) {}
RequestRewriter::~RequestRewriter() = default;

Status RequestRewriter::feed(std::string_view in, std::string& to_upstream, std::string& to_guest) {
  return impl_->feed(in, to_upstream, to_guest);
}
Status RequestRewriter::finish(std::string& to_upstream) { return impl_->finish(to_upstream); }
const std::optional<Block>& RequestRewriter::blocked() const noexcept { return impl_->block; }
std::vector<Substitution> RequestRewriter::take_substitutions() {
  std::vector<Substitution> out;
  out.swap(impl_->subs);
  return out;
}
std::size_t RequestRewriter::held_bytes() const noexcept {
  const Impl& m = *impl_;
  return m.head_out.capacity() + m.body_out.capacity() + m.body_buf.capacity() + m.window.capacity() +
         m.scratch.capacity() + m.decoded.capacity() + m.encoded.capacity() + m.reencoded.capacity() +
         m.held.capacity() + m.after_upgrade.capacity();
}
bool RequestRewriter::in_head() const noexcept { return !impl_->upgraded && impl_->parser.in_head(); }
std::vector<ForwardedRequest> RequestRewriter::take_forwarded() {
  std::vector<ForwardedRequest> out;
  out.swap(impl_->forwarded);
  return out;
}
bool RequestRewriter::awaiting_upgrade() const noexcept { return impl_->parser.awaiting_upgrade(); }
Status RequestRewriter::upgrade_answered(bool switched, std::string& to_upstream, std::string& to_guest) {
  return impl_->upgrade_answered(switched, to_upstream, to_guest);
}
bool RequestRewriter::values_may_flow() const noexcept { return impl_->values_flowed; }

// ---- StreamScanner ----

struct StreamScanner::Impl {
  Impl(const SecretSet& s, ConnectionContext c) : set(s), ctx(std::move(c)), det(s.compiled()) {}
  const SecretSet& set;
  ConnectionContext ctx;
  StreamDetector det;
  std::string held;
  std::optional<Block> block;

  void violation(const Match& m) {
    Block b;
    b.action = set.action();
    b.violation = true;
    b.secret_env = set.secrets()[m.secret].env_var();
    b.host = ctx.sni.empty() ? ctx.destination.to_string() : ctx.sni;
    b.location = Location::kStream;
    b.reason = "placeholder (" + std::string(form_name(m.forms)) + ") in a cleartext stream to " + quote(b.host) +
               "; placeholders are never substituted on connections that are not HTTP";
    block = std::move(b);
  }

  Status feed(std::string_view in, std::string& out) {
    if (block) return Status::kBlocked;
    Match m;
    std::uint64_t at = 0;
    if (!det.feed(in, nullptr, &m, &at)) {
      violation(m);
      held.clear();
      return Status::kBlocked;
    }
    out.append(held);
    out.append(in);
    const std::size_t hold = det.carry_size();
    held.assign(out, out.size() - hold, hold);
    out.resize(out.size() - hold);
    return Status::kOk;
  }

  Status finish(std::string& out) {
    if (block) return Status::kBlocked;
    Match m;
    std::uint64_t at = 0;
    if (!det.finish(nullptr, &m, &at)) {
      violation(m);
      held.clear();
      return Status::kBlocked;
    }
    out.append(held);
    held.clear();
    return Status::kOk;
  }
};

StreamScanner::StreamScanner(const SecretSet& set, ConnectionContext context)
    : impl_(std::make_unique<Impl>(set, std::move(context))) {}
StreamScanner::~StreamScanner() = default;
Status StreamScanner::feed(std::string_view in, std::string& out) { return impl_->feed(in, out); }
Status StreamScanner::finish(std::string& out) { return impl_->finish(out); }
const std::optional<Block>& StreamScanner::blocked() const noexcept { return impl_->block; }

}  // namespace airlock::secrets
