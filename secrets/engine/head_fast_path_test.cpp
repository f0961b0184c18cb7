// The request head's fast paths (field names told apart once, unchanged fields copied as one
// run, decide() keeping unchanged verdicts, gate 2's patterns cached per host) against the code
// they replaced: a reference kept here as it was at 6af4c83 (every field name compared with
// iequals, every field value passed through substitution, every gate decided from scratch for
// each request). Hostile heads, many per kept-alive connection with the Host changing under
// them: the rewriter must forward the same bytes, record the same substitutions and block with
// the same verdict as the reference does for each head on its own.
#include <http/request_parser.hpp>
#include <secrets/engine/engine.hpp>
#include <secrets/engine/engine_test_util.hpp>
#include <secrets/engine/matcher.hpp>
#include <secrets/engine/request_gates.hpp>

#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace airlock::secrets {
namespace {

using detail::basic_token;
using detail::iequals;
using detail::RequestGates;
using namespace testing;

// ---- the reference (the head path at 6af4c83) ----

bool ref_is_host_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}
char ref_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
bool ref_iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (ref_lower(a[i]) != ref_lower(b[i])) return false;
  return true;
}

bool ref_host_part(std::string_view authority, std::string& out) {
  out.clear();
  std::string_view host, rest;
  if (!authority.empty() && authority.front() == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return false;
    host = authority.substr(0, close + 1);
    rest = authority.substr(close + 1);
    for (const char c : host.substr(1, host.size() - 2)) {
      if (!((c >= '0' && c <= '9') || (ref_lower(c) >= 'a' && ref_lower(c) <= 'f') || c == ':' || c == '.')) return false;
    }
  } else {
    const std::size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view{} : authority.substr(colon);
    for (const char c : host)
      if (!ref_is_host_char(c)) return false;
  }
  if (!rest.empty()) {
    if (rest.front() != ':') return false;
    for (const char c : rest.substr(1))
      if (c < '0' || c > '9') return false;
  }
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  if (host.empty()) return false;
  for (const char c : host) out.push_back(ref_lower(c));
  return true;
}

struct ReferenceHead : RequestGates {
  ReferenceHead(const SecretSet& s, ConnectionContext c) : RequestGates(s, std::move(c)) {}
  std::string head_out, req_host, abs_host, local_decoded, local_encoded;
  std::vector<std::size_t> cl_offsets;

  // decide() as it was: every secret, every gate, from scratch.
  void ref_decide(const std::string& request_host, bool authority_ok) {
    host = ctx.transport == Transport::kPlainHttp ? request_host : sni;
    const bool gate4 = authority_ok && !host.empty() && request_host == host;
    const auto& secrets = set.secrets();
    any_not_eligible = any_headers = any_basic = any_query = any_body = false;
    for (std::size_t i = 0; i < secrets.size(); ++i) {
      const SecretBinding& s = secrets[i];
      std::uint8_t w = detail::kEligible;
      if (host.empty() || (!s.any_host() && s.match_host(host) == nullptr)) {
        w = detail::kHostNotAllowed;
      } else if (ctx.transport == Transport::kOpaque || (ctx.transport == Transport::kPlainHttp && s.require_tls_identity())) {
        w = detail::kNoTlsIdentity;
      }
      if (w == detail::kEligible) {
        bool pinned = false;
        if (ctx.pins != nullptr) {
          if (s.any_host()) {
            try {
              pinned = ctx.pins->pinned(ctx.destination, HostPattern::exact(host));
            } catch (...) {
              pinned = false;  // not a host name: no pattern
            }
          } else {
            for (const HostPattern& pattern : s.hosts()) {
              if (pattern.matches(host) && ctx.pins->pinned(ctx.destination, pattern)) {
                pinned = true;
                break;
              }
            }
          }
        }
        if (!pinned) w = detail::kNotPinned;
      }
      if (w == detail::kEligible && !gate4) w = detail::kAuthorityMismatch;
      why[i] = w;
      const bool ok = w == detail::kEligible;
      eligible[i] = ok;
      not_eligible[i] = !ok;
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

  void compute_eligibility(const http::RequestHead& head) {
    std::size_t host_count = 0;
    std::string_view host_value;
    for (const http::HeaderField& f : head.fields) {
      if (ref_iequals(head.view(f.name), "host")) {
        ++host_count;
        host_value = head.view(f.value);
      }
    }
    const bool host_ok = host_count == 1 && ref_host_part(host_value, req_host);
    if (!host_ok) req_host.clear();
    bool target_ok = true;
    const std::string_view target = head.view(head.target);
    if (head.view(head.method) == "CONNECT") {
      target_ok = ref_host_part(target, abs_host) && abs_host == req_host;
    } else if (!target.empty() && target.front() != '/' && target != "*") {
      const std::size_t scheme_end = target.find("://");
      if (scheme_end == std::string_view::npos) {
        target_ok = false;
      } else {
        std::string_view authority = target.substr(scheme_end + 3);
        authority = authority.substr(0, authority.find_first_of("/?#"));
        target_ok = authority.find('@') == std::string_view::npos && ref_host_part(authority, abs_host) && abs_host == req_host;
      }
    }
    ref_decide(req_host, host_ok && target_ok);
  }

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

  bool ref_detect_basic(std::string_view name, std::string_view value) {
    if (!ref_iequals(name, "authorization") && !ref_iequals(name, "proxy-authorization")) return true;
    const std::string_view token = basic_token(value);
    if (token.empty() || !base64_decode(token, local_decoded)) return true;
    bool found = false;
    const auto* dd = reinterpret_cast<const unsigned char*>(local_decoded.data());
    scan_forms(cs, dd, 0, local_decoded.size(), local_decoded.size(), not_eligible.data(), true, [&](std::size_t, const Match& m) {
      violation(m.secret, Location::kBasicAuth, static_cast<std::uint8_t>(m.forms | kFormBasic));
      found = true;
      return false;
    });
    return !found;
  }

  bool scan_head_violations(const http::RequestHead& head) {
    const auto* d = reinterpret_cast<const unsigned char*>(head.raw.data());
    bool found = false;
    scan_forms(cs, d, 0, head.raw.size(), head.raw.size(), not_eligible.data(), true, [&](std::size_t pos, const Match& m) {
      violation(m.secret, head_location(head, pos), m.forms);
      found = true;
      return false;
    });
    if (found) return false;
    for (const http::HeaderField& f : head.fields)
      if (!ref_detect_basic(head.view(f.name), head.view(f.value))) return false;
    std::size_t at = 0;
    const Match m = find_base64_form(cs, head.raw, not_eligible.data(), &at);
    if (m.kind == Match::kFound) {
      violation(m.secret, head_location(head, at), m.forms);
      return false;
    }
    return true;
  }

  bool ref_substitute_header_value(std::string_view name, std::string_view value, std::string& dst) {
    std::string scratch;
    std::string_view v = value;
    if (any_headers) {
      if (!substitute_raw(value, mask_headers, Into::kHead, Location::kHeader, scratch)) return false;
      v = scratch;
    }
    const std::string_view token = any_basic && ref_iequals(name, "authorization") ? basic_token(v) : std::string_view{};
    if (!token.empty() && base64_decode(token, local_decoded)) {
      local_encoded.clear();
      if (!substitute_raw(local_decoded, mask_basic, Into::kBasic, Location::kBasicAuth, local_encoded)) return false;
      if (local_encoded != local_decoded) {
        dst.append(v.substr(0, v.size() - token.size()));
        dst.append(base64_encode(local_encoded));
      } else {
        dst.append(v);
      }
    } else {
      dst.append(v);
    }
    return true;
  }

  static bool has_list_token(std::string_view list, std::string_view token) {
    bool found = false;
    for_each_item(list, [&](std::string_view item) { found = found || ref_iequals(item, token); });
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
  struct FieldEdit {
    enum Kind : std::uint8_t { kKeep, kReplace, kDrop } kind = kKeep;
    std::string value;
  };
  struct Restrictions {
    bool te_dropped = false, h2c_stripped = false, upgrade_dropped = false, accept_encoding_seen = false;
  };
  Restrictions plan_restrictions(const http::RequestHead& head) const {
    Restrictions r;
    for (const http::HeaderField& f : head.fields) {
      const std::string_view name = head.view(f.name), value = head.view(f.value);
      if (ref_iequals(name, "te") && !has_list_token(value, "trailers")) r.te_dropped = true;
      if (ref_iequals(name, "upgrade") && has_list_token(value, "h2c")) {
        r.h2c_stripped = true;
        if (without_items(value, [](std::string_view i) { return ref_iequals(i, "h2c"); }).empty()) r.upgrade_dropped = true;
      }
    }
    return r;
  }
  FieldEdit restrict_field(std::string_view name, std::string_view value, Restrictions& r) const {
    if (ref_iequals(name, "accept-encoding")) {
      if (std::exchange(r.accept_encoding_seen, true)) return {FieldEdit::kDrop, {}};
      return {FieldEdit::kReplace, "identity"};
    }
    if (ref_iequals(name, "te")) {
      if (!has_list_token(value, "trailers")) return {FieldEdit::kDrop, {}};
      return {FieldEdit::kReplace, "trailers"};
    }
    if (ref_iequals(name, "http2-settings") && r.h2c_stripped) return {FieldEdit::kDrop, {}};
    if (ref_iequals(name, "upgrade") && r.h2c_stripped) {
      if (r.upgrade_dropped) return {FieldEdit::kDrop, {}};
      return {FieldEdit::kReplace, without_items(value, [](std::string_view i) { return ref_iequals(i, "h2c"); })};
    }
    if (ref_iequals(name, "connection") && (r.te_dropped || r.h2c_stripped)) {
      std::string v = without_items(value, [&](std::string_view i) {
        return (r.te_dropped && ref_iequals(i, "te")) || (r.h2c_stripped && ref_iequals(i, "http2-settings")) ||
               (r.upgrade_dropped && ref_iequals(i, "upgrade"));
      });
      if (v.empty()) return {FieldEdit::kDrop, {}};
      return {FieldEdit::kReplace, std::move(v)};
    }
    return {};
  }

  bool rewrite_head(const http::RequestHead& head, bool drop_expect, bool track_cl, bool restrict) {
    const std::string_view rv(head.raw);
    head_out.clear();
    const std::size_t line_end = head.fields.empty() ? rv.size() - 2 : head.fields.front().line.offset;
    const std::string_view target = head.view(head.target);
    const std::size_t q = target.find('?');
    if (any_query && q != std::string_view::npos) {
      const std::size_t qs = head.target.offset + q + 1;
      const std::size_t te = head.target.offset + head.target.length;
      head_out.append(rv.substr(0, qs));
      if (!substitute_query(rv.substr(qs, te - qs), head_out)) return false;
      head_out.append(rv.substr(te, line_end - te));
    } else {
      head_out.append(rv.substr(0, line_end));
    }
    std::size_t pos = line_end;
    Restrictions restrictions = restrict ? plan_restrictions(head) : Restrictions{};
    for (const http::HeaderField& f : head.fields) {
      const std::string_view name = head.view(f.name);
      const std::size_t line_stop = f.line.offset + f.line.length;
      const FieldEdit edit = restrict ? restrict_field(name, head.view(f.value), restrictions) : FieldEdit{};
      if ((drop_expect && ref_iequals(name, "expect")) || edit.kind == FieldEdit::kDrop) {
        head_out.append(rv.substr(pos, f.line.offset - pos));
        pos = line_stop;
        continue;
      }
      head_out.append(rv.substr(pos, f.value.offset - pos));
      const std::string_view value = edit.kind == FieldEdit::kReplace ? std::string_view(edit.value) : head.view(f.value);
      if (edit.kind == FieldEdit::kReplace && ref_iequals(name, "accept-encoding")) {
        head_out.append(edit.value);
      } else if (track_cl && ref_iequals(name, "content-length")) {
        head_out.append(value);  // the body has no placeholder: its length does not change
      } else if (!ref_substitute_header_value(name, value, head_out)) {
        return false;
      }
      head_out.append(rv.substr(f.value.offset + f.value.length, line_stop - (f.value.offset + f.value.length)));
      pos = line_stop;
    }
    if (restrict && !restrictions.accept_encoding_seen) head_out.append("Accept-Encoding: identity\r\n");
    head_out.append(rv.substr(pos));
    return true;
  }

  // The head (and a placeholder-free body) of one request as the rewriter forwards it, or its
  // block. `flowed`: values may already have reached this upstream (sticky, per connection).
  // False when the request is one the reference does not model (a body to decode).
  bool forward(const http::RequestHead& head, std::string_view body, bool& flowed, std::string& out) {
    values_flowed = flowed;
    compute_eligibility(head);
    if (any_not_eligible && !scan_head_violations(head)) return true;
    note_values_may_flow();
    flowed = values_flowed;
    const bool has_body = head.framing == http::BodyFraming::kContentLength && head.content_length > 0;
    const bool buffer = any_body && has_body;
    if (buffer) {
      std::string joined;
      for (const http::HeaderField& f : head.fields) {
        if (!ref_iequals(head.view(f.name), "content-encoding")) continue;
        if (!joined.empty()) joined += ", ";
        joined.append(head.view(f.value));
      }
      parse_body_codings(joined);
      if (!check_body_shape(head.content_length)) return true;
      if (!body_codings.empty()) return false;
    }
    const bool drop_expect = buffer && head.expect_continue;
    if (!any_headers && !any_basic && !any_query && !any_body && !values_flowed) {
      out = head.raw + std::string(body);
    } else if (rewrite_head(head, drop_expect, buffer, values_flowed)) {
      out = head_out + std::string(body);
    }
    return true;
  }
};

// ---- hostile heads ----

struct HeadSink final : http::RequestSink {
  std::optional<http::RequestHead> head;
  void on_head(http::RequestHead& h) override { head = h; }
  void on_body(std::string_view) override {}
  void on_framing(http::FramingKind, std::string_view) override {}
  void on_message_end() override {}
};

std::string b64(std::string_view s) { return base64_encode(s); }

class HeadGenerator {
 public:
  explicit HeadGenerator(std::uint32_t seed) : rng_(seed) {}

  std::string request() {
    static const std::vector<std::string> methods = {"GET", "POST", "PUT", "HEAD", "OPTIONS"};
    static const std::vector<std::string> targets = {
        "/", "/v1/x", "/q?key=$MSB_API_KEY", "/q?a=$MSB_OTHER_KEY&b=1", "/q?k=%24MSB_API_KEY", "/$MSB_API_KEY/x",
        "https://api.example.com/x?k=$MSB_API_KEY", "https://API.example.com:443/", "https://evil.example.net/x",
        "https://api.example.com@evil.example.net/", "http://api.example.com", "*", "/q?{{BODY}}"};
    const std::string method = pick(methods);
    std::string target = pick(targets);
    if (target == "*" && method != "OPTIONS") target = "/";
    std::string r = method + " " + target + (coin(5) ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
    const int n = static_cast<int>(rng_() % 9);
    bool host_done = false;
    for (int i = 0; i < n; ++i) {
      std::string f = field();
      if (f.rfind("host:", 0) == 0 || f.rfind("Host:", 0) == 0 || f.rfind("HOST:", 0) == 0) {
        if (host_done) continue;  // the parser refuses a second Host
        host_done = true;
      }
      r += f + "\r\n";
    }
    if (!host_done && !coin(10)) r += "Host: " + host() + "\r\n";
    std::string body;
    if (method == "POST" || method == "PUT") {
      body = pick(std::vector<std::string>{"", "hello", "x=1&y=2"});
      if (!body.empty() || coin(2)) r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
      if (coin(3)) r += "Expect: 100-continue\r\n";
    }
    return r + "\r\n" + body;
  }

 private:
  static const std::vector<std::string>& hosts() {
    static const std::vector<std::string> h = {"api.example.com", "API.Example.COM.", "api.example.com:443",
                                               "other.example.com", "evil.example.net", "api.example.com:x",
                                               "[::1]", "api.example.com.", "a.b.example.com", "x.api.example.com"};
    return h;
  }
  std::string host() { return coin(3) ? pick(hosts()) : sni_; }
 public:
  std::string sni_ = "api.example.com";  // the host most requests name

 private:
  std::string field() {
    static const std::vector<std::string> names = {
        "Host", "host", "HOST", "Authorization", "authorization", "AUTHORIZATION", "Proxy-Authorization",
        "proxy-authorization", "Accept-Encoding", "accept-encoding", "TE", "te", "Upgrade", "upgrade", "Connection",
        "connection", "HTTP2-Settings", "http2-settings", "Expect", "Content-Encoding", "X-Key", "Cookie",
        "Hostx", "Authorizatio", "X-Authorization", "Accept-Encodinf", "Tf", "Upgradf", "Connectiom", "X-$MSB_API_KEY", "X-Other",
        "X-$MSB_API_KEY", "User-Agent", "Accept"};
    // Mostly what a client sends (placeholders that may be substituted, coding and upgrade
    // fields), some of the time a form that blocks somewhere (another secret's placeholder,
    // encoded, in Basic credentials, cut short).
    static const std::vector<std::string> usual = {
        "$MSB_API_KEY", "Bearer $MSB_API_KEY", "Bearer %24MSB_API_KEY", "  $MSB_API_KEY$MSB_API_KEY  ", "$MSB_",
        "$MSB_API_KE", "Basic " + b64("user:$MSB_API_KEY"), "Basic " + b64("$MSB_API_KEY:x"), "Basic " + b64("nothing"),
        "Basic !!", "gzip, br", "identity", "trailers", "gzip", "trailers, gzip", "h2c", "websocket, h2c", "H2C",
        "keep-alive", "TE, Upgrade, HTTP2-Settings", "te", "Upgrade", "AAMAAABkAAQAAP__", "100-continue", "{{BODY}}",
        "pre{{BODY}}post", "plain text", "", "$", "$$MSB_API_KEY", "x$MSB_API_KEYy", "Bearer $MSB_MULTI_KEY"};
    static const std::vector<std::string> hostile = {
        "Bearer $MSB_OTHER_KEY", "Bearer %24MSB_OTHER_KEY", "Bearer \\u0024MSB_OTHER_KEY", "basic\t" + b64("u:$MSB_OTHER_KEY"),
        b64("x$MSB_OTHER_KEY"), "$MSB_ANY_KEY", "$MSB_MULTI_KEY", "Basic " + b64("u:$MSB_MULTI_KEY")};
    std::string name = pick(names);
    if (name == "Host" || name == "host" || name == "HOST") return name + ": " + host();
    auto one = [&]() { return coin(12) ? pick(hostile) : pick(usual); };
    std::string value = one();
    if (coin(6)) value = value + " " + one();
    return name + ":" + (coin(2) ? " " : "") + value;
  }
  template <typename T>
  const T& pick(const std::vector<T>& v) {
    return v[rng_() % v.size()];
  }
  bool coin(unsigned one_in) { return rng_() % one_in == 0; }
  std::mt19937 rng_;
};

struct Lab {
  FakePins pins;
  std::unique_ptr<SecretSet> set;
  Lab() {
    pins.pin(api_ip(), "api.example.com").pin(api_ip(), "*.api.example.com");
    InjectionScopes headers_basic_query{.headers = true, .basic_auth = true, .query = true, .body = false};
    InjectionScopes body_only{.headers = false, .basic_auth = false, .query = false, .body = true};
    std::vector<SecretSpec> specs = {
        SecretSpec("API_KEY", "real-api-value", {"api.example.com"}, headers_basic_query, false),
        SecretSpec("OTHER_KEY", "real-other-value", {"other.example.com"}),
        // Two patterns match x.api.example.com; only the second is pinned for it.
        SecretSpec("MULTI_KEY", "real-multi-value", {"evil.example.net", "*.example.com", "*.api.example.com"}),
        SecretSpec("BODY_KEY", "real-body-value", {"api.example.com"}, body_only, true, false, "{{BODY}}"),
        SecretSpec("ANY_KEY", "real-any-value", {}, InjectionScopes{}, true, true),
    };
    set = std::make_unique<SecretSet>(make_secrets(specs), ViolationAction::kBlockAndLog);
  }
};

void compare_connection(const Lab& lab, const ConnectionContext& ctx, HeadGenerator& gen, int requests, int& compared,
                        int& blocked_seen, int& rewritten_seen) {
  auto rw = std::make_unique<RequestRewriter>(*lab.set, ctx);
  bool flowed = false;
  for (int i = 0; i < requests; ++i) {
    const std::string wire = gen.request();
    http::RequestParser parser;
    HeadSink sink;
    parser.parse(wire, sink);
    if (parser.error() != http::ParseError::kNone || !sink.head || parser.awaiting_upgrade()) continue;
    ReferenceHead ref(*lab.set, ctx);
    const std::string body = wire.substr(sink.head->raw.size());
    std::string want;
    bool ref_flowed = flowed;
    if (!ref.forward(*sink.head, body, ref_flowed, want)) continue;
    flowed = ref_flowed;

    std::string up, guest;
    const Status st = rw->feed(wire, up, guest);
    ++compared;
    SCOPED_TRACE(wire);
    ASSERT_EQ(st == Status::kBlocked, ref.block.has_value());
    if (ref.block) {
      ++blocked_seen;
      const Block& got = *rw->blocked();
      EXPECT_EQ(got.violation, ref.block->violation);
      EXPECT_EQ(got.secret_env, ref.block->secret_env);
      EXPECT_EQ(got.location, ref.block->location);
      EXPECT_EQ(got.host, ref.block->host);
      EXPECT_EQ(got.reason, ref.block->reason);
      if (::testing::Test::HasFailure()) return;
      // The connection ends with a block: the next requests go on a new one.
      rw = std::make_unique<RequestRewriter>(*lab.set, ctx);
      flowed = false;
      continue;
    }
    EXPECT_EQ(up, want);
    if (up != wire) ++rewritten_seen;
    const std::vector<Substitution> subs = rw->take_substitutions();
    ASSERT_EQ(subs.size(), ref.subs.size());
    for (std::size_t k = 0; k < subs.size(); ++k) {
      EXPECT_EQ(subs[k].secret_env, ref.subs[k].secret_env);
      EXPECT_EQ(subs[k].host, ref.subs[k].host);
      EXPECT_EQ(subs[k].location, ref.subs[k].location);
    }
    EXPECT_EQ(rw->values_may_flow(), flowed);
    if (::testing::Test::HasFailure()) return;
  }
}

TEST(HeadFastPath, SameAsTheReferenceOverHostileHeadsOnKeptAliveConnections) {
  const Lab lab;
  HeadGenerator gen(20261201);
  int compared = 0, blocked = 0, rewritten = 0;
  for (int c = 0; c < 1500 && !::testing::Test::HasFailure(); ++c) {
    // TLS to api.example.com (pinned), TLS to an unpinned address, and plain HTTP, where the
    // gated name is the Host and changes from request to request.
    const int kind = c % 9;
    const ConnectionContext ctx = kind < 5    ? tls_context(&lab.pins)
                                  : kind == 5 ? tls_context(&lab.pins, "api.example.com", evil_ip())
                                  : kind == 6 ? tls_context(&lab.pins, "x.api.example.com")
                                              : plain_context(&lab.pins);
    gen.sni_ = kind == 6 ? "x.api.example.com" : "api.example.com";
    compare_connection(lab, ctx, gen, 1 + c % 25, compared, blocked, rewritten);
  }
  std::printf("compared %d requests: %d blocked, %d rewritten\n", compared, blocked, rewritten);
  // The generator reaches both verdicts and rewrites often enough to mean something.
  EXPECT_GT(compared, 15000);
  EXPECT_GT(blocked, 5000);
  EXPECT_GT(rewritten, 5000);
}

// The in-place readers (substitutions(), forwarded()) recycle their entries: each request's
// list is exactly its own, with the host and secret of that request, whatever came before.
TEST(HeadFastPath, RecycledSubstitutionsAndForwardedRequestsAreEachRequestsOwn) {
  FakePins pins;
  pins.pin(api_ip(), "api.example.com").pin(api_ip(), "b.example.com");
  const SecretSet set(make_secrets({SecretSpec("A_KEY", "value-a", {"api.example.com"}, InjectionScopes{}, false),
                                    SecretSpec("B_KEY", "value-b", {"b.example.com"}, InjectionScopes{}, false)}),
                      ViolationAction::kBlockAndLog);
  RequestRewriter rw(set, plain_context(&pins));
  struct Want {
    std::string request;
    std::vector<std::pair<std::string, std::string>> subs;  // secret, host
    bool head;
  };
  const std::vector<Want> wants = {
      {"GET / HTTP/1.1\r\nHost: api.example.com\r\nX: $MSB_A_KEY $MSB_A_KEY\r\n\r\n",
       {{"A_KEY", "api.example.com"}, {"A_KEY", "api.example.com"}}, false},
      {"HEAD / HTTP/1.1\r\nHost: b.example.com\r\nX: $MSB_B_KEY\r\n\r\n", {{"B_KEY", "b.example.com"}}, true},
      {"GET / HTTP/1.1\r\nHost: b.example.com\r\n\r\n", {}, false},
      {"GET / HTTP/1.1\r\nHost: api.example.com\r\nX: $MSB_A_KEY\r\n\r\n", {{"A_KEY", "api.example.com"}}, false},
  };
  for (const Want& w : wants) {
    std::string up, guest;
    ASSERT_EQ(rw.feed(w.request, up, guest), Status::kOk);
    std::vector<std::pair<std::string, std::string>> got;
    for (const Substitution& s : rw.substitutions()) got.emplace_back(s.secret_env, s.host);
    EXPECT_EQ(got, w.subs) << w.request;
    rw.clear_substitutions();
    EXPECT_TRUE(rw.substitutions().empty());
    ASSERT_EQ(rw.forwarded().size(), 1u);
    EXPECT_EQ(rw.forwarded().front().head, w.head);
    rw.clear_forwarded();
    EXPECT_TRUE(rw.take_forwarded().empty());
    EXPECT_TRUE(rw.take_substitutions().empty());
  }
}

}  // namespace
}  // namespace airlock::secrets

namespace airlock::secrets {
namespace {

using namespace testing;

// ---- the head's one scan (the rewrite reuses the violation scan's positions) ----
//
// rewrite_head finds the placeholders' first bytes in the head from the positions the violation
// scan noted, instead of searching the head again. Differential: the rewriter with the reuse and
// the rewriter searching again (detail::reuse_head_scan = false, the code as it was) over hostile
// heads on kept-alive connections must forward the same bytes, owe the guest the same bytes,
// record the same substitutions and block with the same verdict. The secrets' placeholders share
// prefixes and first bytes, begin with a byte that is also an escape ('%', '\'), and overlap
// themselves; the heads hold their forms (raw, case variants, percent, JSON, base64, Basic,
// adjacent, overlapping, cut short) in every field, in the target's path and query.

struct ScanLab {
  FakePins pins;
  std::unique_ptr<SecretSet> set;
  std::vector<std::string> placeholders;
  ScanLab() {
    pins.pin(api_ip(), "api.example.com").pin(api_ip(), "other.example.com");
    const InjectionScopes all{.headers = true, .basic_auth = true, .query = true, .body = false};
    const InjectionScopes headers{.headers = true, .basic_auth = false, .query = false, .body = false};
    const InjectionScopes query_basic{.headers = false, .basic_auth = true, .query = true, .body = false};
    const InjectionScopes body_only{.headers = false, .basic_auth = false, .query = false, .body = true};
    const std::vector<SecretSpec> specs = {
        SecretSpec("KEY_A", "value-a", {"api.example.com"}, all, false),
        SecretSpec("KEY_B", "value-b", {"other.example.com"}, all, false),          // shares "$MSB_KEY_"
        SecretSpec("KEY_AB", "value-ab", {"api.example.com"}, headers, false, false, "$MSB_KEZ"),
        SecretSpec("PCT", "value-pct", {"api.example.com"}, query_basic, false, false, "%Q%"),  // '%' first
        SecretSpec("BSL", "value-bsl", {"other.example.com"}, all, false, false, "\\T\\"),     // '\' first
        SecretSpec("XY", "value-xy", {"api.example.com"}, all, false, false, "xyxy!"),          // overlaps itself
        SecretSpec("BODY", "value-body", {"api.example.com"}, body_only, false, false, "{{BODY}}"),
        SecretSpec("BO", "value-bo", {"other.example.com"}, headers, false, false, "{{BO}}"),
        SecretSpec("CRLF", "value\r\ncrlf", {"api.example.com"}, headers, false, false, "$MSB_CRLF"),
        SecretSpec("ANY", "value-any", {}, all, false, true),
    };
    set = std::make_unique<SecretSet>(make_secrets(specs), ViolationAction::kBlockAndLog);
    for (const SecretBinding& s : set->secrets()) placeholders.push_back(s.placeholder());
    for (const SecretBinding& s : set->secrets()) {
      if (s.any_host() || s.match_host("api.example.com") != nullptr) for_api.push_back(s.placeholder());
      if (s.any_host() || s.match_host("other.example.com") != nullptr) for_other.push_back(s.placeholder());
    }
  }
  std::vector<std::string> for_api, for_other;
};

class ScanHeadGenerator {
 public:
  ScanHeadGenerator(const ScanLab& lab, std::uint32_t seed) : lab_(lab), rng_(seed) {}

  // `allowed`: the placeholders of the secrets allowed for `host`; most forms are theirs, some
  // are any secret's (a violation where it is not eligible).
  std::string request(const std::string& host, const std::vector<std::string>& allowed) {
    allowed_ = &allowed;
    static const std::vector<std::string> methods = {"GET", "POST", "HEAD", "PUT"};
    const std::string method = pick(methods);
    std::string target = "/";
    if (coin(2)) target += piece();
    if (coin(2)) target += "?k=" + piece() + (coin(2) ? "&x=" + piece() : "");
    if (coin(20)) target = "https://" + host + target;
    for (char& c : target) {
      if (c == ' ' || c == '\t' || static_cast<unsigned char>(c) < 0x21 || c == 0x7f) c = '_';
    }
    std::string r = method + " " + target + " HTTP/1.1\r\n";
    if (!coin(30)) r += "Host: " + (coin(30) ? std::string("evil.example.net") : host) + "\r\n";
    const int n = static_cast<int>(rng_() % 8);
    for (int i = 0; i < n; ++i) r += field() + "\r\n";
    std::string body;
    if (method == "POST" || method == "PUT") {
      body = coin(2) ? "" : "body";
      r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
      if (coin(3)) r += "Expect: 100-continue\r\n";
    }
    return r + "\r\n" + body;
  }

 private:
  std::string field() {
    static const std::vector<std::string> names = {
        "Authorization", "authorization", "Proxy-Authorization", "X-Key", "Cookie", "Connection", "Upgrade", "TE",
        "Accept-Encoding", "HTTP2-Settings", "User-Agent", "Accept", "Authorization", "X-Key", "X-$MSB_KEY_A", "X-xyxy!"};
    const std::string name = pick(names);
    std::string value;
    const int parts = 1 + static_cast<int>(rng_() % 4);
    for (int i = 0; i < parts; ++i) value += (coin(3) ? std::string(coin(2) ? " " : "") : "") + piece();
    if (coin(5)) value = "Basic " + base64_encode(coin(2) ? "user:" + piece() : piece());
    if (coin(9)) value = pick(std::vector<std::string>{"keep-alive", "h2c", "trailers", "gzip, br", "TE, Upgrade"});
    // Field values hold no CR, LF, NUL or other control byte (the parser would refuse the head).
    for (char& c : value) {
      const auto b = static_cast<unsigned char>(c);
      if ((b < 0x20 && c != '\t') || b == 0x7f) c = '?';
    }
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.pop_back();
    return name + ": " + value;
  }

  // A form of some placeholder, a part of one, or noise.
  std::string piece() {
    const std::string& p = coin(25) ? pick(lab_.placeholders) : pick(*allowed_);
    switch (rng_() % 14) {
      case 0: case 1: case 2: return p;
      case 3: return p + p;                                     // adjacent
      case 4: return p.substr(0, rng_() % p.size()) + p;        // a cut one, then the whole
      case 5: return p.substr(0, 1 + rng_() % p.size());        // cut short (maybe whole)
      case 6: {                                                  // case variant
        std::string v = p;
        for (char& c : v) c = coin(2) ? static_cast<char>(std::tolower(static_cast<unsigned char>(c))) : c;
        return v;
      }
      case 7: {                                                  // some bytes percent-encoded
        std::string v;
        static constexpr char kHex[] = "0123456789ABCDEF";
        for (const char c : p) {
          if (coin(3)) {
            v += '%';
            v += kHex[static_cast<unsigned char>(c) >> 4];
            v += kHex[static_cast<unsigned char>(c) & 15];
          } else {
            v += c;
          }
        }
        return v;
      }
      case 8: {                                                  // some bytes JSON-escaped
        std::string v;
        char buf[8];
        for (const char c : p) {
          if (coin(3)) {
            std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned char>(c));
            v += buf;
          } else {
            v += c;
          }
        }
        return v;
      }
      case 9: return base64_encode(std::string(rng_() % 3, 'z') + p);  // base64 at an alignment
      case 10: return "xyxyxy!";                                 // self-overlapping
      case 11: return "$" + p;
      default: {
        static const std::string alphabet = "ab$%\\{}!xyQTMSB_KEY=&;:,/ ";
        std::string v;
        const std::size_t len = rng_() % 12;
        for (std::size_t i = 0; i < len; ++i) v += alphabet[rng_() % alphabet.size()];
        return v;
      }
    }
  }
  template <typename T>
  const T& pick(const std::vector<T>& v) {
    return v[rng_() % v.size()];
  }
  bool coin(unsigned one_in) { return rng_() % one_in == 0; }
  const ScanLab& lab_;
  const std::vector<std::string>* allowed_ = nullptr;
  std::mt19937 rng_;
};

struct ReuseFlag {
  explicit ReuseFlag(bool on) : was(detail::reuse_head_scan) { detail::reuse_head_scan = on; }
  ~ReuseFlag() { detail::reuse_head_scan = was; }
  bool was;
};

TEST(HeadScanReuse, SameAsSearchingTheHeadAgainOverHostileHeads) {
  const ScanLab lab;
  ScanHeadGenerator gen(lab, 20261202);
  int compared = 0, blocked = 0, substituted = 0, refused = 0;
  std::vector<int> by_location(8, 0);
  for (int c = 0; c < 6000 && !::testing::Test::HasFailure(); ++c) {
    const int kind = c % 8 == 2 ? 2 : c % 8 == 6 ? 1 : c % 8 > 4 ? 3 : 0;
    const ConnectionContext ctx = kind == 0   ? tls_context(&lab.pins)
                                  : kind == 1 ? tls_context(&lab.pins, "other.example.com")
                                  : kind == 2 ? tls_context(&lab.pins, "api.example.com", evil_ip())
                                              : plain_context(&lab.pins);
    const std::string host = kind == 1 ? "other.example.com" : "api.example.com";
    RequestRewriter reusing(*lab.set, ctx), searching(*lab.set, ctx);
    for (int i = 0; i < 1 + c % 12; ++i) {
      const std::string h = kind == 3 && i % 2 ? "other.example.com" : host;
      const std::string wire = gen.request(h, h == "api.example.com" ? lab.for_api : lab.for_other);
      std::string up_a, guest_a, up_b, guest_b;
      Status a, b;
      {
        ReuseFlag on(true);
        a = reusing.feed(wire, up_a, guest_a);
      }
      {
        ReuseFlag off(false);
        b = searching.feed(wire, up_b, guest_b);
      }
      ++compared;
      SCOPED_TRACE(wire);
      ASSERT_EQ(a, b);
      EXPECT_EQ(up_a, up_b);
      EXPECT_EQ(guest_a, guest_b);
      ASSERT_EQ(reusing.blocked().has_value(), searching.blocked().has_value());
      if (reusing.blocked()) {
        const Block& x = *reusing.blocked();
        const Block& y = *searching.blocked();
        EXPECT_EQ(x.violation, y.violation);
        EXPECT_EQ(x.action, y.action);
        EXPECT_EQ(x.secret_env, y.secret_env);
        EXPECT_EQ(x.host, y.host);
        EXPECT_EQ(x.location, y.location);
        EXPECT_EQ(x.reason, y.reason);
        if (x.violation) ++blocked;
        else ++refused;
        ++by_location[static_cast<std::size_t>(x.location)];
        break;  // the connection ends with a block
      }
      const std::vector<Substitution> sa = reusing.take_substitutions(), sb = searching.take_substitutions();
      ASSERT_EQ(sa.size(), sb.size());
      for (std::size_t k = 0; k < sa.size(); ++k) {
        EXPECT_EQ(sa[k].secret_env, sb[k].secret_env);
        EXPECT_EQ(sa[k].host, sb[k].host);
        EXPECT_EQ(sa[k].location, sb[k].location);
        ++by_location[static_cast<std::size_t>(sa[k].location)];
      }
      if (!sa.empty()) ++substituted;
      EXPECT_EQ(reusing.values_may_flow(), searching.values_may_flow());
      if (::testing::Test::HasFailure()) return;
    }
  }
  std::printf("compared %d requests: %d violations, %d refused, %d with substitutions; by location:", compared, blocked,
              refused, substituted);
  for (const int n : by_location) std::printf(" %d", n);
  std::printf("\n");
  // Both verdicts, substitutions and refusals (a value with CR LF), in the header, the query,
  // Basic credentials and the request line, are reached often enough to mean something.
  EXPECT_GT(compared, 8000);
  EXPECT_GT(blocked, 800);
  EXPECT_GT(substituted, 1500);
  EXPECT_GT(refused, 50);
  EXPECT_GT(by_location[static_cast<std::size_t>(Location::kHeader)], 500);
  EXPECT_GT(by_location[static_cast<std::size_t>(Location::kQuery)], 300);
  EXPECT_GT(by_location[static_cast<std::size_t>(Location::kBasicAuth)], 50);
  EXPECT_GT(by_location[static_cast<std::size_t>(Location::kRequestLine)], 50);
}

}  // namespace
}  // namespace airlock::secrets
