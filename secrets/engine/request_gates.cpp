// The gates, verdicts and substitutions of one request (secrets-spec §3–§5), for every codec.
// See request_gates.hpp.
#include <secrets/engine/request_gates.hpp>

#include <openssl/crypto.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

namespace airlock::secrets::detail {

namespace {
constexpr std::array<char, 256> make_lower() {
  std::array<char, 256> t{};
  for (int c = 0; c < 256; ++c) t[c] = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return t;
}
constexpr std::array<char, 256> kLower = make_lower();

// iequals(a, b) for a `b` already in lower case (the names the engine looks for).
bool iequals_lower(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (kLower[static_cast<unsigned char>(a[i])] != b[i]) return false;
  }
  return true;
}
}  // namespace

bool reuse_head_scan = true;

char lower(char c) noexcept { return kLower[static_cast<unsigned char>(c)]; }

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (kLower[static_cast<unsigned char>(a[i])] != kLower[static_cast<unsigned char>(b[i])]) return false;
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

// Host name bytes (a registered name as the gates accept it), by table lookup.
constexpr std::array<bool, 256> make_host_chars() {
  std::array<bool, 256> t{};
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  t['-'] = t['.'] = t['_'] = true;
  return t;
}
constexpr std::array<bool, 256> kHostChar = make_host_chars();

bool is_host_char(char c) noexcept { return kHostChar[static_cast<unsigned char>(c)]; }

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
  out.assign(host);
  for (char& c : out) c = lower(c);
  return true;
}

FieldName classify_field_name(std::string_view name) noexcept {
  switch (name.size()) {
    case 2: return iequals_lower(name, "te") ? FieldName::kTe : FieldName::kOther;
    case 4: return iequals_lower(name, "host") ? FieldName::kHost : FieldName::kOther;
    case 6: return iequals_lower(name, "expect") ? FieldName::kExpect : FieldName::kOther;
    case 7: return iequals_lower(name, "upgrade") ? FieldName::kUpgrade : FieldName::kOther;
    case 10: return iequals_lower(name, "connection") ? FieldName::kConnection : FieldName::kOther;
    case 13: return iequals_lower(name, "authorization") ? FieldName::kAuthorization : FieldName::kOther;
    case 14:
      if (iequals_lower(name, "content-length")) return FieldName::kContentLength;
      return iequals_lower(name, "http2-settings") ? FieldName::kHttp2Settings : FieldName::kOther;
    case 15: return iequals_lower(name, "accept-encoding") ? FieldName::kAcceptEncoding : FieldName::kOther;
    case 16: return iequals_lower(name, "content-encoding") ? FieldName::kContentEncoding : FieldName::kOther;
    case 19: return iequals_lower(name, "proxy-authorization") ? FieldName::kProxyAuthorization : FieldName::kOther;
    default: return FieldName::kOther;
  }
}

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

std::string_view basic_token(std::string_view value) {
  if (value.size() < 6 || !iequals(value.substr(0, 5), "basic") || (value[5] != ' ' && value[5] != '\t')) {
    return {};
  }
  std::size_t k = 5;
  while (k < value.size() && (value[k] == ' ' || value[k] == '\t')) ++k;
  return value.substr(k);
}

RequestGates::RequestGates(const SecretSet& s, ConnectionContext c)
    : set(s), cs(s.compiled()), ctx(std::move(c)), body_det(cs), inflated_det(cs) {
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

RequestGates::~RequestGates() {
  wipe(scratch);
  wipe(decoded);
  wipe(encoded);
  wipe(reencoded);
  wipe(inflated);
  wipe(recoded);
}

// ---- verdicts ----

void RequestGates::set_block(bool violation, std::string env, Location loc, std::string reason) {
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

void RequestGates::violation(std::uint32_t s, Location loc, std::uint8_t forms) {
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

void RequestGates::record(std::uint32_t s, Location loc) {
  if (spare_subs.empty()) {
    subs.push_back(Substitution{set.secrets()[s].env_var(), host, loc});
    return;
  }
  Substitution sub = std::move(spare_subs.back());
  spare_subs.pop_back();
  sub.secret_env.assign(set.secrets()[s].env_var());
  sub.host.assign(host);
  sub.location = loc;
  subs.push_back(std::move(sub));
}

void RequestGates::recycle_substitutions() noexcept {
  // A few are kept (names and hosts, never values): a request rarely substitutes more.
  constexpr std::size_t kKept = 8;
  for (Substitution& sub : subs) {
    if (spare_subs.size() < kKept) spare_subs.push_back(std::move(sub));
  }
  subs.clear();
}

// ---- gates ----

// Gates 1–3 for `name` (the SNI, or the Host for plain HTTP); results into gate_cache.
void RequestGates::compute_connection_gates(const std::string& name) {
  const auto& secrets = set.secrets();
  gate_cache.assign(secrets.size(), kEligible);
  gate_patterns.clear();
  gate_pattern_end.assign(secrets.size(), 0);
  for (std::size_t i = 0; i < secrets.size(); ++i) {
    const SecretBinding& s = secrets[i];
    if (name.empty()) {
      gate_cache[i] = kHostNotAllowed;
    } else if (!s.any_host() && s.match_host(name) == nullptr) {
      gate_cache[i] = kHostNotAllowed;
    } else {
      if (ctx.transport == Transport::kOpaque ||
          (ctx.transport == Transport::kPlainHttp && s.require_tls_identity())) {
        gate_cache[i] = kNoTlsIdentity;
      }
      if (!s.any_host()) {
        for (const HostPattern& pattern : s.hosts()) {
          if (pattern.matches(name)) gate_patterns.push_back(&pattern);
        }
      }
    }
    gate_pattern_end[i] = static_cast<std::uint32_t>(gate_patterns.size());
  }
  gate_cache_host = name;
  gate_cache_valid = true;
}

const HostPattern* RequestGates::exact_pattern_for(const std::string& name) {
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

void RequestGates::decide(const std::string& request_host, bool authority_ok) {
  if (ctx.transport == Transport::kPlainHttp) {
    host = request_host;
  } else {
    host = sni;
  }
  const bool gate4 = authority_ok && !host.empty() && request_host == host;

  if (!gate_cache_valid || gate_cache_host != host) compute_connection_gates(host);

  const auto& secrets = set.secrets();
  bool changed = !decided;
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
          // The patterns that match this host (gates 1–3 were computed for it, above).
          for (std::uint32_t k = i == 0 ? 0 : gate_pattern_end[i - 1]; k < gate_pattern_end[i]; ++k) {
            if (ctx.pins->pinned(ctx.destination, *gate_patterns[k])) {
              pinned = true;
              break;
            }
          }
        }
      }
      if (!pinned) w = kNotPinned;
    }
    if (w == kEligible && !gate4) w = kAuthorityMismatch;
    // The arrays below follow from why[i] and the secret's scopes alone: kept when it is the
    // same as for the previous request (the usual case on a kept-alive connection).
    if (decided && why[i] == w) continue;
    changed = true;
    why[i] = w;
    const bool ok = w == kEligible;
    eligible[i] = ok ? 1 : 0;
    not_eligible[i] = ok ? 0 : 1;
    const InjectionScopes& sc = s.scopes();
    mask_headers[i] = ok && sc.headers;
    mask_basic[i] = ok && sc.basic_auth;
    mask_query[i] = ok && sc.query;
    mask_body[i] = ok && sc.body;
  }
  decided = true;
  if (!changed) return;
  any_not_eligible = any_headers = any_basic = any_query = any_body = false;
  for (std::size_t i = 0; i < secrets.size(); ++i) {
    any_not_eligible = any_not_eligible || !eligible[i];
    any_headers = any_headers || mask_headers[i];
    any_basic = any_basic || mask_basic[i];
    any_query = any_query || mask_query[i];
    any_body = any_body || mask_body[i];
  }
}

void RequestGates::note_values_may_flow() noexcept {
  values_flowed = values_flowed || std::any_of(eligible.begin(), eligible.end(), [](std::uint8_t e) { return e != 0; });
}

// ---- substitution ----

bool RequestGates::substitute_raw(std::string_view text, const std::vector<std::uint8_t>& mask, Into into,
                                  Location loc, ValueSink dst, const RawStarts* known) {
  const auto* d = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  std::size_t i = 0, last = 0;
  std::size_t k = 0;  // into known->at
  while (true) {
    if (known != nullptr) {
      // The next raw first byte at or after i, as next_trigger(raw_only) would find it.
      while (k < known->at.size() && known->at[k] - known->base < i) ++k;
      i = k < known->at.size() ? known->at[k] - known->base : n;
    } else {
      i = next_trigger(cs, d, i, n, true);
    }
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
        dst.room_for(3 * value.size());  // percent_encode_append writes to the string itself
        percent_encode_append(value, dst.str());
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

bool RequestGates::substitute_header_value(std::string_view name, std::string_view value, ValueSink dst) {
  return substitute_header_value(classify_field_name(name), value, dst);
}

bool RequestGates::substitute_header_value(FieldName kind, std::string_view value, ValueSink dst,
                                           const RawStarts* known) {
  std::string_view v = value;
  if (any_headers) {
    scratch.clear();
    if (!substitute_raw(value, mask_headers, Into::kHead, Location::kHeader, scratch, known)) return false;
    v = scratch;
  }
  const std::string_view token = any_basic && kind == FieldName::kAuthorization ? basic_token(v) : std::string_view{};
  if (!token.empty() && base64_decode(token, decoded)) {
    encoded.clear();
    if (!substitute_raw(decoded, mask_basic, Into::kBasic, Location::kBasicAuth, encoded)) return false;
    if (encoded != decoded) {
      dst.append(v.substr(0, v.size() - token.size()));
      reencoded = base64_encode(encoded);
      dst.append(reencoded);
      wipe(reencoded);
    } else {
      dst.append(v);
    }
  } else {
    dst.append(v);
  }
  return true;
}

// ---- violation scans ----

bool RequestGates::detect_whole(std::string_view data, Location loc) {
  return detect_forms(data, loc) && detect_base64(data, loc);
}

bool RequestGates::detect_forms(std::string_view data, Location loc) {
  bool found = false;
  const auto* d = reinterpret_cast<const unsigned char*>(data.data());
  scan_forms(cs, d, 0, data.size(), data.size(), not_eligible.data(), true, [&](std::size_t, const Match& m) {
    violation(m.secret, loc, m.forms);
    found = true;
    return false;
  });
  return !found;
}

bool RequestGates::detect_base64(std::string_view data, Location loc) {
  std::size_t at = 0;
  const Match m = find_base64_form(cs, data, not_eligible.data(), &at);
  if (m.kind == Match::kFound) {
    violation(m.secret, loc, m.forms);
    return false;
  }
  return true;
}

bool RequestGates::detect_basic(std::string_view name, std::string_view value) {
  return detect_basic(classify_field_name(name), value);
}

bool RequestGates::detect_basic(FieldName kind, std::string_view value) {
  if (kind != FieldName::kAuthorization && kind != FieldName::kProxyAuthorization) return true;
  const std::string_view token = basic_token(value);
  if (token.empty() || !base64_decode(token, decoded)) return true;
  bool found = false;
  const auto* dd = reinterpret_cast<const unsigned char*>(decoded.data());
  scan_forms(cs, dd, 0, decoded.size(), decoded.size(), not_eligible.data(), true, [&](std::size_t, const Match& m) {
    violation(m.secret, Location::kBasicAuth, static_cast<std::uint8_t>(m.forms | kFormBasic));
    found = true;
    return false;
  });
  return !found;
}

bool RequestGates::detect(StreamDetector& det, std::string_view data, Location loc) {
  Match m;
  std::uint64_t at = 0;
  if (!det.feed(data, not_eligible.data(), &m, &at)) {
    violation(m.secret, loc, m.forms);
    return false;
  }
  return true;
}

bool RequestGates::detect_finish(StreamDetector& det, Location loc) {
  Match m;
  std::uint64_t at = 0;
  if (!det.finish(not_eligible.data(), &m, &at)) {
    violation(m.secret, loc, m.forms);
    return false;
  }
  return true;
}

// ---- the body ----

std::uint32_t RequestGates::first_body_due() const noexcept {
  std::uint32_t due = 0;
  while (due < mask_body.size() && !mask_body[due]) ++due;
  return due;
}

void RequestGates::parse_body_codings(std::string_view content_encoding) {
  body_coding_known = http::parse_content_encoding(content_encoding, body_codings) == http::CodingError::kNone;
  if (!body_coding_known) body_codings.clear();
}

bool RequestGates::check_body_shape(std::optional<std::uint64_t> content_length) {
  const std::uint32_t due = first_body_due();
  if (!body_coding_known) {
    set_block(false, set.secrets()[due].env_var(), Location::kHeader,
              "a body injection is due but the body has a Content-Encoding airlock does not decode; only "
              "identity, gzip, deflate, br and zstd bodies are rewritten");
    return false;
  }
  if (content_length && *content_length > set.options().max_body_bytes) {
    set_block(false, set.secrets()[due].env_var(), Location::kBody,
              "a body injection is due but Content-Length " + std::to_string(*content_length) +
                  " exceeds the body size cap of " + std::to_string(set.options().max_body_bytes) + " bytes");
    return false;
  }
  return true;
}

void RequestGates::start_inflated_scan() {
  // Detection looks inside: the decoded stream, bounded; past a cap or a corrupt byte it stops
  // (what follows goes out unscanned, as any body the server cannot read either). The scan keeps
  // no decoded bytes beyond the detector's carry, so the only bound needed is on work and on one
  // feed's output: the output cap (not the ratio, whose verdict would depend on how the input
  // was cut).
  http::CodingLimits limits;
  limits.max_output = set.options().max_body_bytes;
  limits.max_ratio = std::size_t{1} << 30;
  inflater.emplace(body_codings, limits);
}

void RequestGates::reset_body() {
  body_det.reset();
  inflated_det.reset();
  inflater.reset();
  inflated_found.reset();
}

std::string RequestGates::coding_names() const {
  std::string out;
  for (const http::Coding c : body_codings) {
    if (!out.empty()) out += ", ";
    out.append(http::coding_name(c));
  }
  return out;
}

bool RequestGates::rewrite_coded_body(const std::string& body_buf, ValueSink body_out) {
  const std::uint32_t due = first_body_due();
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

void RequestGates::scan_inflated(std::string_view data, bool last) {
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

bool RequestGates::finish_inflated() {
  scan_inflated({}, true);
  inflater.reset();
  if (!inflated_found) return true;
  const Match m = *inflated_found;
  inflated_found.reset();
  violation(m.secret, Location::kBody, m.forms);
  return false;
}

std::size_t RequestGates::rewrite_body(std::string_view data, bool final, ValueSink dst) {
  return rewrite_range(data, 0, data.size(), final, dst);
}

std::size_t RequestGates::rewrite_range(std::string_view data, std::size_t from, std::size_t start_limit, bool final,
                                        ValueSink dst) {
  const auto* d = reinterpret_cast<const unsigned char*>(data.data());
  const std::size_t n = data.size();
  const std::size_t limit = std::min(start_limit, n);
  std::size_t i = from, last = from, settled = limit;
  while (true) {
    i = next_trigger(cs, d, i, limit);
    if (i >= limit) break;
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
  // A placeholder that starts before the limit may end past it.
  settled = std::max(settled, last);
  dst.append(data.substr(last, settled - last));
  return settled;
}

void RequestGates::rewrite_body_piece(std::string_view data, bool final, ValueSink dst, std::size_t& open) {
  std::size_t from = 0;  // where the scan of `data` starts
  if (open > 0) {
    // The open tail goes back through the scan with the bytes after it: in a window of the tail
    // and the next max_form bytes (every form starting in the tail ends within them), so the
    // rest of the piece is scanned where it lies, not copied.
    body_window.assign(dst.str(), dst.size() - open, open);
    dst.resize(dst.size() - open);
    const bool whole = data.size() <= cs.max_form;
    body_window.append(data.substr(0, whole ? data.size() : cs.max_form));
    // Positions in the tail only (unless the window holds the whole piece); never partial there
    // unless the window is the whole piece, as each has max_form bytes after it.
    const std::size_t limit = whole ? body_window.size() : open;
    const std::size_t settled = rewrite_range(body_window, 0, limit, final, dst);
    if (block) return;
    if (whole || settled < open) {
      // The window is the whole piece (or, defensively, a form in the tail is still open): what
      // is not settled stays open, in the window, the piece's bytes after it appended as they are.
      const std::string_view rest = std::string_view(body_window).substr(settled);
      dst.append(rest);
      if (!whole) dst.append(data.substr(cs.max_form));
      open = rest.size() + (whole ? 0 : data.size() - cs.max_form);
      return;
    }
    from = settled - open;  // past a placeholder that began in the tail, or the piece's start
  }
  const std::size_t settled = rewrite_range(data, from, data.size(), final, dst);
  if (block) return;
  dst.append(data.substr(settled));
  open = data.size() - settled;
}

bool RequestGates::detect_base64_piece(std::string_view data, std::string& carry, Location loc) {
  if (cs.base64_forms.empty() || data.empty()) return true;
  const std::size_t keep = cs.max_base64_form - 1;
  std::size_t at = 0;
  if (!carry.empty()) {
    // A form that begins in the carry ends within the piece's first max_base64_form - 1 bytes.
    body_window.assign(carry);
    body_window.append(data.substr(0, std::min(data.size(), keep)));
    const Match m = find_base64_form(cs, body_window, not_eligible.data(), &at);
    if (m.kind == Match::kFound && at < carry.size()) {
      violation(m.secret, loc, m.forms);
      return false;
    }
  }
  const Match m = find_base64_form(cs, data, not_eligible.data(), &at);
  if (m.kind == Match::kFound) {
    violation(m.secret, loc, m.forms);
    return false;
  }
  if (data.size() >= keep) {
    carry.assign(data.substr(data.size() - keep));
  } else {
    carry.append(data);
    if (carry.size() > keep) carry.erase(0, carry.size() - keep);
  }
  return true;
}

}  // namespace airlock::secrets::detail
