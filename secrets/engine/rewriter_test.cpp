// Table-driven tests of RequestRewriter: every gate of §3 failing alone, every scope on and off,
// every placeholder form of §4, the §5 shapes, pipelining, re-chunking, 100-continue, upgrades.
// Each case asserts the exact upstream bytes and the exact verdict, whole and split at every
// byte. Values are fake.
#include <secrets/engine/engine.hpp>
#include <secrets/engine/engine_test_util.hpp>
#include <secrets/engine/matcher.hpp>
#include <http/request_parser.hpp>

#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace airlock::secrets {
namespace {

using testing::FakePins;
using testing::make_secrets;
using testing::run_rewriter;
using testing::SecretSpec;

const std::string kKey = "sk-live-FAKE";
const std::string kQk = "q v&1";
const std::string kBk = "body-FAKE";
const std::string kOther = "other-FAKE";
const std::string kPlainV = "plain-FAKE";
const std::string kCrlf = "bad\r\nval";
const std::string kNul = std::string("nul\0val", 7);
const std::vector<std::string> kAllValues = {kKey, kQk, kBk, kOther, kPlainV, kCrlf, kNul, "wild-FAKE", "any-FAKE"};

InjectionScopes scopes(bool headers, bool basic, bool query, bool body) {
  InjectionScopes s;
  s.headers = headers;
  s.basic_auth = basic;
  s.query = query;
  s.body = body;
  return s;
}

std::vector<SecretSpec> std_secrets() {
  return {
      {"KEY", kKey, {"api.example.com"}, scopes(true, true, false, false)},
      {"QK", kQk, {"api.example.com"}, scopes(false, false, true, false)},
      {"BK", kBk, {"api.example.com"}, scopes(false, false, false, true)},
      {"OTHER", kOther, {"other.example.net"}, {}},
  };
}

enum class Setup {
  kTls,              // SNI api.example.com, destination pinned for api.example.com
  kTlsEvil,          // SNI evil.example, destination pinned for evil.example
  kTlsNoPins,        // nothing pinned
  kTlsNullPins,      // no pin query at all
  kTlsPinOtherIp,    // api.example.com pinned, but for another IP
  kTlsPinOtherPattern,  // destination pinned for *.other.org only
  kTlsWildcard,      // destination pinned for *.example.com
  kTlsApex,          // SNI example.com, pinned for example.com and *.example.com
  kTlsAny,           // SNI whatever.example.org, pinned for it
  kPlain,            // plain HTTP, destination pinned for api.example.com and evil.example
  kPlainV6,          // plain HTTP to 2001:db8::1, pinned for [2001:db8::1]
};

struct Case {
  std::string name;
  std::string input;
  std::string upstream;
  std::string guest;
  bool blocked = false;
  bool violation = false;
  std::string env;
  Location location = Location::kHeader;
  std::string reason_has;
  std::vector<SecretSpec> secrets = std_secrets();
  Setup setup = Setup::kTls;
  std::size_t max_body = kDefaultMaxBodyBytes;
  bool split_exact = true;  // false: re-chunked output depends on where reads end
  std::size_t identity_from = 0;  // heads before this one were sent before any secret was eligible
  bool identity = true;           // false: no secret is eligible on the connection at all

  Case on(Setup s) const {
    Case c = *this;
    c.setup = s;
    return c;
  }
  Case with(std::vector<SecretSpec> s) const {
    Case c = *this;
    c.secrets = std::move(s);
    return c;
  }
  Case cap(std::size_t bytes) const {
    Case c = *this;
    c.max_body = bytes;
    return c;
  }
  Case to_guest(std::string g) const {
    Case c = *this;
    c.guest = std::move(g);
    return c;
  }
  Case not_split_exact() const {
    Case c = *this;
    c.split_exact = false;
    return c;
  }
  Case no_identity() const {
    Case c = *this;
    c.identity = false;
    return c;
  }
  Case identity_after(std::size_t heads) const {
    Case c = *this;
    c.identity_from = heads;
    return c;
  }
  Case forwarded_before(std::string up) const {  // a blocked case whose earlier requests went through
    Case c = *this;
    c.upstream = std::move(up);
    return c;
  }
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

// Once a secret is eligible on a connection, every request head leaves with one
// `Accept-Encoding: identity` (issue 12 item 3). The table's expected upstream bytes are written
// without it; this adds it to each head that has no Accept-Encoding (found with the real
// parser), from the `from`-th head on.
std::string with_identity(const std::string& upstream, std::size_t from = 0) {
  struct Sink : http::RequestSink {
    std::string out;
    std::size_t heads = 0, from = 0;
    void on_head(http::RequestHead& head) override {
      if (heads++ < from || !head.values("accept-encoding").empty()) {
        out += head.raw;
        return;
      }
      out += head.raw.substr(0, head.raw.size() - 2) + "Accept-Encoding: identity\r\n\r\n";
    }
    void on_body(std::string_view d) override { out += d; }
    void on_framing(http::FramingKind, std::string_view raw) override { out += raw; }
    void on_message_end() override {}
  } sink;
  sink.from = from;
  http::RequestParser parser;
  std::size_t n = parser.parse(upstream, sink);
  while (n < upstream.size() && parser.awaiting_upgrade()) {  // test data: the upgrade is refused
    parser.resolve_upgrade(true);
    sink.out += upstream.substr(n);
    n = upstream.size();
  }
  return n == upstream.size() ? sink.out : upstream;
}

Case ok(std::string name, std::string input, std::string upstream) {
  Case c;
  c.name = std::move(name);
  c.input = std::move(input);
  c.upstream = std::move(upstream);
  return c;
}
Case same(std::string name, std::string input) {
  std::string up = input;
  return ok(std::move(name), std::move(input), std::move(up));
}
Case viol(std::string name, std::string input, std::string env, Location loc, std::string reason_has) {
  Case c;
  c.name = std::move(name);
  c.input = std::move(input);
  c.blocked = true;
  c.violation = true;
  c.env = std::move(env);
  c.location = loc;
  c.reason_has = std::move(reason_has);
  return c;
}
Case shape(std::string name, std::string input, std::string env, Location loc, std::string reason_has) {
  Case c = viol(std::move(name), std::move(input), std::move(env), loc, std::move(reason_has));
  c.violation = false;
  return c;
}

const std::string kH = "Host: api.example.com\r\n";
std::string get(const std::string& fields, const std::string& target = "/") {
  return "GET " + target + " HTTP/1.1\r\n" + kH + fields + "\r\n";
}
std::string post(const std::string& fields, const std::string& body) {
  return "POST /v1 HTTP/1.1\r\n" + kH + fields + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}
std::string chunked(const std::string& fields, const std::string& chunks) {
  return "POST /v1 HTTP/1.1\r\n" + kH + fields + "Transfer-Encoding: chunked\r\n\r\n" + chunks;
}
const std::string kBearer = get("Authorization: Bearer $MSB_KEY\r\n");
const std::string kBearerOut = get("Authorization: Bearer " + kKey + "\r\n");

std::vector<SecretSpec> plain_secrets() {
  return {{"KEYP", kPlainV, {"api.example.com"}, scopes(true, true, true, false), false},
          {"OTHER", kOther, {"other.example.net"}, {}}};
}
std::vector<SecretSpec> other_secrets() {
  return {{"KEY", kKey, {"api.example.com"}, {}}, {"OTHER", kOther, {"other.example.net"}, {}}};
}
std::vector<SecretSpec> crlf_secrets() {
  return {{"CRLF", kCrlf, {"api.example.com"}, scopes(true, true, true, false)},
          {"NUL", kNul, {"api.example.com"}, scopes(true, false, false, false)}};
}

// The base64 of `prefix` then `placeholder` then `suffix`: the placeholder at alignment
// prefix.size() % 3. With `url`, in the base64url alphabet and without padding.
std::string b64(const std::string& prefix, const std::string& placeholder, const std::string& suffix = "yy",
                bool url = false) {
  std::string t = base64_encode(prefix + placeholder + suffix);
  if (url) {
    while (!t.empty() && t.back() == '=') t.pop_back();
    for (char& ch : t) ch = ch == '+' ? '-' : ch == '/' ? '_' : ch;
  }
  return t;
}
// A secret whose placeholder's base64 holds '+' and '/' (so base64url differs from base64).
std::vector<SecretSpec> tilde_secrets() {
  return {{"KEY", kKey, {"api.example.com"}, scopes(true, true, false, false)},
          {"BK", kBk, {"api.example.com"}, scopes(false, false, false, true)},
          {"TILDE", "tilde-FAKE", {"other.example.net"}, {}, true, false, "PH~~~?~~~?"}};
}
// Chunked body cut every `every` bytes into chunks.
std::string chunks_of(const std::string& body, std::size_t every) {
  std::string out;
  for (std::size_t i = 0; i < body.size(); i += every) {
    const std::string piece = body.substr(i, every);
    char hex[16];
    std::snprintf(hex, sizeof hex, "%zx", piece.size());
    out += std::string(hex) + "\r\n" + piece + "\r\n";
  }
  return out + "0\r\n\r\n";
}

std::vector<Case> cases() {
  const std::string wsHead =
      "GET /ws HTTP/1.1\r\n" + kH + "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
  return {
      // ---- substitution, each scope on ----
      ok("bearer_header", kBearer, kBearerOut),
      ok("header_value_twice", get("X-Key: a$MSB_KEY;b$MSB_KEY\r\n"), get("X-Key: a" + kKey + ";b" + kKey + "\r\n")),
      ok("header_value_whole", get("X-Api-Key: $MSB_KEY\r\n"), get("X-Api-Key: " + kKey + "\r\n")),
      ok("header_spacing_kept", get("X-K:   $MSB_KEY  \r\n"), get("X-K:   " + kKey + "  \r\n")),
      ok("basic_auth", get("Authorization: Basic dXNlcjokTVNCX0tFWQ==\r\n"),
         get("Authorization: Basic dXNlcjpzay1saXZlLUZBS0U=\r\n")),
      ok("basic_auth_no_padding", get("Authorization: Basic dXNlcjokTVNCX0tFWQ\r\n"),
         get("Authorization: Basic dXNlcjpzay1saXZlLUZBS0U=\r\n")),
      ok("basic_auth_scheme_case", get("authorization: bAsIc   dXNlcjokTVNCX0tFWQ==\r\n"),
         get("authorization: bAsIc   dXNlcjpzay1saXZlLUZBS0U=\r\n")),
      ok("query", get("", "/v1/x?key=$MSB_QK&a=1"), get("", "/v1/x?key=q%20v%261&a=1")),
      ok("query_start", get("", "/?$MSB_QK"), get("", "/?q%20v%261")),
      ok("body_content_length", post("", R"({"k":"$MSB_BK"})"),
         "POST /v1 HTTP/1.1\r\n" + kH + "Content-Length: 17\r\n\r\n{\"k\":\"body-FAKE\"}"),
      ok("body_content_length_odd_spacing",
         "POST /v1 HTTP/1.1\r\n" + kH + "content-length:7\r\n\r\n$MSB_BK",
         "POST /v1 HTTP/1.1\r\n" + kH + "content-length:9\r\n\r\nbody-FAKE"),
      ok("body_twice", post("", "$MSB_BK$MSB_BK"), "POST /v1 HTTP/1.1\r\n" + kH + "Content-Length: 18\r\n\r\n" + kBk + kBk),
      // The new Content-Length has more digits than the old one: the head is rewritten whole.
      ok("body_content_length_gains_a_digit", post("", "$MSB_BKx"),
         "POST /v1 HTTP/1.1\r\n" + kH + "Content-Length: 10\r\n\r\n" + kBk + "x"),
      // Two buffered bodies in one read: the second is emitted after the first's bytes.
      ok("body_two_requests_pipelined", post("", "$MSB_BK") + post("", "$MSB_BKx") + post("", "a$MSB_BK"),
         "POST /v1 HTTP/1.1\r\n" + kH + "Content-Length: 9\r\n\r\n" + kBk + "POST /v1 HTTP/1.1\r\n" + kH +
             "Content-Length: 10\r\n\r\n" + kBk + "xPOST /v1 HTTP/1.1\r\n" + kH + "Content-Length: 10\r\n\r\na" + kBk),
      ok("body_identity_encoding", post("Content-Encoding: identity\r\n", "$MSB_BK"),
         "POST /v1 HTTP/1.1\r\n" + kH + "Content-Encoding: identity\r\nContent-Length: 9\r\n\r\n" + kBk),
      ok("body_due_no_placeholder", post("", "hello"), post("", "hello")),
      ok("body_chunked_rechunked", chunked("", "7\r\n$MSB_BK\r\n0\r\n\r\n"),
         chunked("", "9\r\nbody-FAKE\r\n0\r\n\r\n"))
          .not_split_exact(),
      ok("body_chunked_split_placeholder", chunked("", "3\r\nab$\r\n6\r\nMSB_BK\r\n0\r\n\r\n"),
         chunked("", "2\r\nab\r\n9\r\nbody-FAKE\r\n0\r\n\r\n"))
          .not_split_exact(),
      ok("body_chunked_trailers_kept", chunked("", "2\r\nhi\r\n0\r\nX-T: 1\r\n\r\n"),
         chunked("", "2\r\nhi\r\n0\r\nX-T: 1\r\n\r\n"))
          .not_split_exact(),
      ok("body_chunked_extension_dropped", chunked("", "4;ext=1\r\nabcd\r\n0\r\n\r\n"),
         chunked("", "4\r\nabcd\r\n0\r\n\r\n"))
          .not_split_exact(),
      ok("header_and_query_together", get("X-K: $MSB_KEY\r\n", "/?q=$MSB_QK"),
         get("X-K: " + kKey + "\r\n", "/?q=q%20v%261")),

      // ---- scopes off / outside a scope: forwarded unchanged, no violation ----
      same("headers_off_bearer_kept", get("Authorization: Bearer $MSB_QK\r\n")),
      same("basic_off_kept", get("Authorization: Basic dXNlcjokTVNCX0tFWQ==\r\n"))
          .with({{"KEY", kKey, {"api.example.com"}, scopes(true, false, false, false)}}),
      same("headers_off_basic_on_raw_kept", get("X-K: $MSB_KEY\r\n"))
          .with({{"KEY", kKey, {"api.example.com"}, scopes(false, true, false, false)}}),
      same("query_off_kept", get("", "/?k=$MSB_KEY")),
      same("path_not_a_scope", get("", "/$MSB_QK/x?y=1")),
      same("header_name_never", get("X-$MSB_KEY: v\r\n")),
      same("body_off_kept", post("", "$MSB_KEY")),
      same("eligible_percent_form_kept", get("X-K: %24MSB_KEY\r\n")),
      same("eligible_json_form_in_body_kept", post("", R"({"k":"\u0024MSB_BK"})")),
      same("no_placeholder", get("Accept: */*\r\nUser-Agent: t/1\r\n")),
      // A host that may receive a value gets only identity responses (the scrubber must read them).
      ok("accept_encoding_identity_where_eligible", get("Accept-Encoding: gzip, br\r\nX: $MSB_KEY\r\n"),
         get("Accept-Encoding: identity\r\nX: " + kKey + "\r\n")),
      ok("accept_encoding_identity_without_placeholder", get("accept-encoding:gzip\r\n"),
         get("accept-encoding:identity\r\n")),
      same("accept_encoding_kept_where_nothing_is_eligible",
           "GET / HTTP/1.1\r\nHost: evil.example\r\nAccept-Encoding: gzip\r\n\r\n")
          .on(Setup::kTlsEvil),
      same("dollar_text", get("X-Price: $5 and $MSB and %24 and \\u00\r\n")),

      // ---- gates, each failing alone ----
      viol("gate1_sni_not_allowed", "GET / HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer $MSB_KEY\r\n\r\n",
           "KEY", Location::kHeader, "allow list")
          .on(Setup::kTlsEvil),
      ok("gate1_wildcard", kBearer, get("Authorization: Bearer wild-FAKE\r\n"))
          .with({{"KEY", "wild-FAKE", {"*.example.com"}, {}}})
          .on(Setup::kTlsWildcard),
      viol("gate1_wildcard_not_apex", "GET / HTTP/1.1\r\nHost: example.com\r\nX: $MSB_KEY\r\n\r\n", "KEY",
           Location::kHeader, "allow list")
          .with({{"KEY", "wild-FAKE", {"*.example.com"}, {}}})
          .on(Setup::kTlsApex),
      viol("gate2_not_pinned", kBearer, "KEY", Location::kHeader, "not resolved").on(Setup::kTlsNoPins),
      viol("gate2_null_pins", kBearer, "KEY", Location::kHeader, "not resolved").on(Setup::kTlsNullPins),
      viol("gate2_pinned_other_ip", kBearer, "KEY", Location::kHeader, "not resolved").on(Setup::kTlsPinOtherIp),
      viol("gate2_pinned_other_pattern", kBearer, "KEY", Location::kHeader, "not resolved")
          .with({{"KEY", kKey, {"api.example.com", "*.other.org"}, {}}})
          .on(Setup::kTlsPinOtherPattern),
      ok("gate2_pinned_second_matching_pattern", kBearer, kBearerOut)
          .with({{"KEY", kKey, {"*.example.com", "api.example.com"}, {}}})
          .on(Setup::kTls),
      viol("gate3_plain_requires_tls", kBearer, "KEY", Location::kHeader, "TLS").on(Setup::kPlain),
      ok("gate3_plain_allowed", get("X-K: $MSB_KEYP\r\n"), get("X-K: " + kPlainV + "\r\n"))
          .with(plain_secrets())
          .on(Setup::kPlain),
      viol("gate4_host_mismatch", "GET / HTTP/1.1\r\nHost: other.example.com\r\nX: $MSB_KEY\r\n\r\n", "KEY",
           Location::kHeader, "authority"),
      viol("gate4_no_host_http11", "GET / HTTP/1.1\r\nX: $MSB_KEY\r\n\r\n", "KEY", Location::kHeader, "authority"),
      viol("gate4_no_host_http10", "GET / HTTP/1.0\r\nX: $MSB_KEY\r\n\r\n", "KEY", Location::kHeader, "authority"),
      ok("gate4_host_with_port", "GET / HTTP/1.1\r\nHost: api.example.com:443\r\nX: $MSB_KEY\r\n\r\n",
         "GET / HTTP/1.1\r\nHost: api.example.com:443\r\nX: " + kKey + "\r\n\r\n"),
      ok("gate4_host_case_and_dot", "GET / HTTP/1.1\r\nHost: API.Example.COM.\r\nX: $MSB_KEY\r\n\r\n",
         "GET / HTTP/1.1\r\nHost: API.Example.COM.\r\nX: " + kKey + "\r\n\r\n"),
      shape("gate4_host_bad_port", "GET / HTTP/1.1\r\nHost: api.example.com:44x\r\nX: $MSB_KEY\r\n\r\n", "",
            Location::kRequestLine, "bad_host"),
      ok("gate4_absolute_form_agrees", get("X: $MSB_KEY\r\n", "https://api.example.com:443/x"),
         get("X: " + kKey + "\r\n", "https://api.example.com:443/x")),
      viol("gate4_absolute_form_disagrees", get("X: $MSB_KEY\r\n", "https://evil.example/x"), "KEY", Location::kHeader,
           "authority"),
      viol("gate4_absolute_form_userinfo", get("X: $MSB_KEY\r\n", "http://api.example.com@evil.example/"), "KEY",
           Location::kHeader, "authority"),
      shape("gate4_two_hosts_malformed", "GET / HTTP/1.1\r\nHost: api.example.com\r\nHost: api.example.com\r\n\r\n", "",
            Location::kRequestLine, "multiple_host"),
      ok("gate_any_host", "GET / HTTP/1.1\r\nHost: whatever.example.org\r\nX: $MSB_ANY\r\n\r\n",
         "GET / HTTP/1.1\r\nHost: whatever.example.org\r\nX: any-FAKE\r\n\r\n")
          .with({{"ANY", "any-FAKE", {}, {}, true, true}})
          .on(Setup::kTlsAny),
      viol("gate_any_host_not_pinned", "GET / HTTP/1.1\r\nHost: whatever.example.org\r\nX: $MSB_ANY\r\n\r\n", "ANY",
           Location::kHeader, "not resolved")
          .with({{"ANY", "any-FAKE", {}, {}, true, true}})
          .on(Setup::kTlsNoPins),
      ok("gate_plain_ipv6_host", "GET / HTTP/1.1\r\nHost: [2001:DB8::1]:8080\r\nX: $MSB_V6\r\n\r\n",
         "GET / HTTP/1.1\r\nHost: [2001:DB8::1]:8080\r\nX: plain-FAKE\r\n\r\n")
          .with({{"V6", kPlainV, {"2001:db8::1"}, {}, false}})
          .on(Setup::kPlainV6),

      // ---- violations: every form, every location ----
      viol("raw_header", get("X-T: $MSB_OTHER\r\n"), "OTHER", Location::kHeader, "placeholder (raw) in the header"),
      viol("raw_header_name", get("X-$MSB_OTHER: 1\r\n"), "OTHER", Location::kHeader, "(raw)"),
      viol("raw_path", get("", "/a/$MSB_OTHER"), "OTHER", Location::kRequestLine, "(raw)"),
      viol("raw_method", "$MSB_OTHER / HTTP/1.1\r\n" + kH + "\r\n", "OTHER", Location::kRequestLine, "(raw)"),
      viol("raw_query", get("", "/a?x=$MSB_OTHER"), "OTHER", Location::kQuery, "(raw)"),
      viol("percent_upper", get("", "/a?x=%24%4D%53%42%5F%4F%54%48%45%52"), "OTHER", Location::kQuery,
           "(percent-encoded)"),
      viol("percent_lower", get("", "/a?x=%24%4d%53%42%5f%4f%54%48%45%52"), "OTHER", Location::kQuery,
           "(percent-encoded)"),
      viol("percent_partial_first", get("", "/a?x=%24MSB_OTHER"), "OTHER", Location::kQuery, "(percent-encoded)"),
      viol("percent_partial_middle", get("X: $MSB%5fOTHER\r\n"), "OTHER", Location::kHeader, "(percent-encoded)"),
      viol("percent_in_path", get("", "/%24MSB_OTHER"), "OTHER", Location::kRequestLine, "(percent-encoded)"),
      viol("json_in_header", get("X: \\u0024MSB_OTHER\r\n"), "OTHER", Location::kHeader, "(JSON-escaped)"),
      viol("json_full_body", post("", R"("\u0024\u004d\u0053\u0042\u005f\u004f\u0054\u0048\u0045\u0052")"), "OTHER",
           Location::kBody, "(JSON-escaped)"),
      viol("json_upper_hex_body", post("", R"({"a":"\u0024\u004DSB_OTHER"})"), "OTHER", Location::kBody,
           "(JSON-escaped)"),
      viol("json_short_escape", post("", R"($MSB\u005fOTHER)"), "OTHER", Location::kBody, "(JSON-escaped)"),
      viol("percent_and_json", post("", R"(%24\u004dSB_OTHER)"), "OTHER", Location::kBody,
           "(percent- and JSON-escaped)"),
      viol("basic_base64", get("Authorization: Basic dTokTVNCX09USEVS\r\n"), "OTHER", Location::kBasicAuth,
           "(base64 in Basic auth)"),
      viol("basic_base64_url_percent_inside", get("Authorization: Basic dTolMjRNU0JfT1RIRVI=\r\n"), "OTHER",
           Location::kBasicAuth, "(base64 in Basic auth)"),
      viol("proxy_basic_base64", get("Proxy-Authorization: Basic dTokTVNCX09USEVS\r\n"), "OTHER", Location::kBasicAuth,
           "(base64 in Basic auth)"),
      viol("base64_anywhere_align0", get("X-D: JE1TQl9PVEhFUnl5\r\n"), "OTHER", Location::kHeader, "(base64)"),
      viol("base64_anywhere_align1", get("X-D: eCRNU0JfT1RIRVJ5eQ==\r\n"), "OTHER", Location::kHeader, "(base64)"),
      viol("base64_anywhere_align2", get("X-D: eHgkTVNCX09USEVSeXk=\r\n"), "OTHER", Location::kHeader, "(base64)"),
      viol("base64_in_query", get("", "/?t=eHgkTVNCX09USEVSeXk"), "OTHER", Location::kQuery, "(base64)"),
      viol("base64_bearer", get("Authorization: Bearer JE1TQl9PVEhFUnl5\r\n"), "OTHER", Location::kHeader, "(base64)"),
      viol("raw_body", post("", "x=$MSB_OTHER"), "OTHER", Location::kBody, "(raw)"),
      viol("percent_body", post("", "x=%24MSB_OTHER"), "OTHER", Location::kBody, "(percent-encoded)"),
      viol("raw_body_split_across_chunks", chunked("", "3\r\n$MS\r\n7\r\nB_OTHER\r\n0\r\n\r\n"), "OTHER",
           Location::kBody, "(raw)"),
      viol("percent_split_across_chunks", chunked("", "2\r\n%2\r\n5\r\n4MSB_\r\n5\r\nOTHER\r\n0\r\n\r\n"), "OTHER",
           Location::kBody, "(percent-encoded)"),
      viol("raw_body_passthrough", post("", "x=$MSB_OTHER"), "OTHER", Location::kBody, "(raw)").with(other_secrets()),
      viol("json_body_passthrough", post("", "x=\\u0024MSB_OTHER"), "OTHER", Location::kBody, "(JSON-escaped)")
          .with(other_secrets()),
      viol("raw_split_across_chunks_passthrough", chunked("", "3\r\n$MS\r\n7\r\nB_OTHER\r\n0\r\n\r\n"), "OTHER",
           Location::kBody, "(raw)")
          .with(other_secrets()),
      viol("json_split_across_chunks_passthrough", chunked("", "3\r\n\\u0\r\n3\r\n024\r\n9\r\nMSB_OTHER\r\n0\r\n\r\n"),
           "OTHER", Location::kBody, "(JSON-escaped)")
          .with(other_secrets()),
      viol("chunk_extension_passthrough", chunked("", "3;a=$MSB_OTHER\r\nabc\r\n0\r\n\r\n"), "OTHER", Location::kBody,
           "(raw)")
          .with(other_secrets()),
      viol("trailer_passthrough", chunked("", "3\r\nabc\r\n0\r\nX-T: %24MSB_OTHER\r\n\r\n"), "OTHER",
           Location::kTrailer, "(percent-encoded)")
          .with(other_secrets()),
      // Bodies and trailers are searched for the head's base64 forms too (issue 12 item 7): each
      // alignment, base64url, streamed (passthrough), re-chunked and buffered bodies, split
      // across reads (every split point below) and across chunks.
      viol("base64_body_align0", post("", "d=" + b64("", "$MSB_OTHER")), "OTHER", Location::kBody, "(base64)")
          .with(other_secrets()),
      viol("base64_body_align1", post("", "d=" + b64("x", "$MSB_OTHER")), "OTHER", Location::kBody, "(base64)")
          .with(other_secrets()),
      viol("base64_body_align2", post("", "d=" + b64("xx", "$MSB_OTHER")), "OTHER", Location::kBody, "(base64)")
          .with(other_secrets()),
      viol("base64_body_json", post("", "{\"t\":\"" + b64("u:", "$MSB_OTHER", "") + "\"}"), "OTHER", Location::kBody,
           "(base64)")
          .with(other_secrets()),
      viol("base64url_body", post("", "t=" + b64("", "PH~~~?~~~?", "", true)), "TILDE", Location::kBody, "(base64)")
          .with(tilde_secrets()),
      viol("base64url_body_align1", post("", "t=" + b64("a", "PH~~~?~~~?", "b", true)), "TILDE", Location::kBody,
           "(base64)")
          .with(tilde_secrets()),
      viol("base64_body_standard_alphabet_with_slash", post("", "t=" + b64("", "PH~~~?~~~?", "")), "TILDE",
           Location::kBody, "(base64)")
          .with(tilde_secrets()),
      viol("base64_split_across_chunks_passthrough", chunked("", chunks_of("d=" + b64("x", "$MSB_OTHER"), 3)), "OTHER",
           Location::kBody, "(base64)")
          .with(other_secrets()),
      viol("base64_trailer", chunked("", "3\r\nabc\r\n0\r\nX-T: " + b64("xx", "$MSB_OTHER") + "\r\n\r\n"), "OTHER",
           Location::kTrailer, "(base64)")
          .with(other_secrets()),
      viol("base64_chunk_extension", chunked("", "3;e=" + b64("", "$MSB_OTHER") + "\r\nabc\r\n0\r\n\r\n"), "OTHER",
           Location::kBody, "(base64)")
          .with(other_secrets()),
      viol("base64_in_buffered_body", post("", "$MSB_BK " + b64("x", "$MSB_OTHER")), "OTHER", Location::kBody,
           "(base64)"),
      viol("base64_in_rechunked_body", chunked("", chunks_of("$MSB_BK " + b64("xx", "$MSB_OTHER"), 4)), "OTHER",
           Location::kBody, "(base64)"),
      viol("base64url_in_buffered_body", post("", "$MSB_BK " + b64("", "PH~~~?~~~?", "", true)), "TILDE",
           Location::kBody, "(base64)")
          .with(tilde_secrets()),
      viol("base64_after_upgrade", "GET /ws HTTP/1.1\r\n" + kH + "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n" +
                                       "frame " + b64("x", "$MSB_KEY"),
           "KEY", Location::kStream, "(base64)")
          .forwarded_before("GET /ws HTTP/1.1\r\n" + kH + "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
      // The eligible secret's own base64 is not a violation (it is not substituted either).
      same("base64_of_eligible_in_body_kept", post("", "d=" + b64("x", "$MSB_KEY"))),
      same("base64_prefix_only_in_body", post("", "d=" + b64("", "$MSB_OTHER").substr(0, 8) + "!!")).with(other_secrets()),
      same("chunked_passthrough_clean", chunked("", "3;x=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\n")).with(other_secrets()),
      same("body_passthrough_clean", post("", "a=1&b=%20%2F&c=\\n$5")).with(other_secrets()),
      viol("chunk_extension", chunked("", "3;a=$MSB_OTHER\r\nabc\r\n0\r\n\r\n"), "OTHER", Location::kBody, "(raw)"),
      viol("trailer", chunked("", "3\r\nabc\r\n0\r\nX-T: $MSB_OTHER\r\n\r\n"), "OTHER", Location::kTrailer, "(raw)"),
      viol("body_of_rechunked_request", chunked("", "7\r\n$MSB_BK\r\n8\r\n$MSB_OTH\r\n3\r\nER!\r\n0\r\n\r\n"), "OTHER",
           Location::kBody, "(raw)"),
      viol("buffered_body_other", post("", "$MSB_BK and $MSB_OTHER"), "OTHER", Location::kBody, "(raw)"),
      viol("eligible_and_other_together", get("X-K: $MSB_KEY\r\nX-O: $MSB_OTHER\r\n"), "OTHER", Location::kHeader,
           "(raw)"),
      viol("reason_names_host", get("X: $MSB_OTHER\r\n"), "OTHER", Location::kHeader,
           "not allowed for host \"api.example.com\": the host is not in its allow list"),

      // ---- §5 shapes ----
      // Compressed bodies are decoded and rewritten (coded_body_test.cpp); ones that do not decode
      // are blocked, as are codings that are not decoded at all.
      shape("gzip_body_due", post("Content-Encoding: gzip\r\n", "xxxx"), "BK", Location::kBody,
            "the gzip-encoded body cannot be decoded"),
      shape("gzip_chunked_body_due", chunked("Content-Encoding: identity, br\r\n", "1\r\nx\r\n0\r\n\r\n"), "BK",
            Location::kBody, "cannot be decoded"),
      shape("compress_body_due", post("Content-Encoding: compress\r\n", "xxxx"), "BK", Location::kHeader,
            "a Content-Encoding airlock does not decode"),
      same("gzip_no_body_due", post("Content-Encoding: gzip\r\n", "xxxx"))
          .with({{"KEY", kKey, {"api.example.com"}, {}}}),
      same("gzip_without_body", get("Content-Encoding: gzip\r\n")),
      shape("body_over_cap", post("", std::string(33, 'a')), "BK", Location::kBody, "exceeds the body size cap of 32")
          .cap(32),
      ok("body_at_cap", post("", "$MSB_BK" + std::string(25, 'a')),
         "POST /v1 HTTP/1.1\r\n" + kH + "Content-Length: 34\r\n\r\n" + kBk + std::string(25, 'a'))
          .cap(32),
      shape("value_crlf_in_header", get("X: $MSB_CRLF\r\n"), "CRLF", Location::kHeader, "CR, LF or NUL")
          .with(crlf_secrets()),
      shape("value_nul_in_header", get("X: $MSB_NUL\r\n"), "NUL", Location::kHeader, "CR, LF or NUL")
          .with(crlf_secrets()),
      ok("value_crlf_in_basic", get("Authorization: Basic dXNlcjokTVNCX0NSTEY=\r\n"),
         get("Authorization: Basic dXNlcjpiYWQNCnZhbA==\r\n"))
          .with(crlf_secrets()),
      ok("value_crlf_in_query", get("", "/?k=$MSB_CRLF"), get("", "/?k=bad%0D%0Aval")).with(crlf_secrets()),
      shape("parse_cl_and_te", "POST / HTTP/1.1\r\n" + kH + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", "",
            Location::kRequestLine, "malformed request: content_length_with_transfer_encoding"),
      shape("parse_conflicting_cl", "POST / HTTP/1.1\r\n" + kH + "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabc", "",
            Location::kRequestLine, "conflicting_content_length"),
      shape("parse_obs_fold", "GET / HTTP/1.1\r\n" + kH + "X: a\r\n b\r\n\r\n", "", Location::kRequestLine,
            "obsolete_line_folding"),
      shape("parse_te_gzip", "POST / HTTP/1.1\r\n" + kH + "Transfer-Encoding: gzip\r\n\r\n", "", Location::kRequestLine,
            "unsupported_transfer_coding"),
      shape("parse_bad_chunk_size", chunked("", "zz\r\n"), "", Location::kBody, "bad_chunk_size"),
      shape("parse_bare_lf", "GET / HTTP/1.1\n\n", "", Location::kRequestLine, "bare_lf"),
      shape("parse_error_after_good_request", kBearer + "BAD REQUEST\r\n\r\n", "", Location::kRequestLine,
            "bad_request_line")
          .forwarded_before(kBearerOut),

      // ---- pipelining and keep-alive with mixed verdicts ----
      ok("pipelined_two_ok", kBearer + get("X: $MSB_KEY\r\n"), kBearerOut + get("X: " + kKey + "\r\n")),
      viol("pipelined_ok_then_violation", kBearer + get("X: $MSB_OTHER\r\n"), "OTHER", Location::kHeader, "(raw)")
          .forwarded_before(kBearerOut),
      viol("pipelined_violation_then_ok", get("X: $MSB_OTHER\r\n") + kBearer, "OTHER", Location::kHeader, "(raw)"),
      viol("pipelined_body_then_violation", post("", "$MSB_BK") + get("X: %24MSB_OTHER\r\n"), "OTHER", Location::kHeader,
           "(percent-encoded)")
          .forwarded_before("POST /v1 HTTP/1.1\r\n" + kH + "Content-Length: 9\r\n\r\n" + kBk),
      ok("pipelined_crlf_between", kBearer + "\r\n" + kBearer, kBearerOut + "\r\n" + kBearerOut),
      viol("plain_second_host_differs",
           "GET / HTTP/1.1\r\nHost: api.example.com\r\nX: $MSB_KEYP\r\n\r\n"
           "GET / HTTP/1.1\r\nHost: evil.example\r\nX: $MSB_KEYP\r\n\r\n",
           "KEYP", Location::kHeader, "allow list")
          .with(plain_secrets())
          .on(Setup::kPlain)
          .forwarded_before("GET / HTTP/1.1\r\nHost: api.example.com\r\nX: " + kPlainV + "\r\n\r\n"),
      same("placeholder_split_between_requests_is_not_one", post("", "$MS") + "B_OTHER / HTTP/1.1\r\n" + kH + "\r\n"),

      // ---- 100-continue ----
      ok("expect_continue_buffered", post("Expect: 100-continue\r\n", "$MSB_BK"),
         "POST /v1 HTTP/1.1\r\n" + kH + "Content-Length: 9\r\n\r\n" + kBk)
          .to_guest("HTTP/1.1 100 Continue\r\n\r\n"),
      same("expect_continue_no_body_due", post("Expect: 100-continue\r\n", "$MSB_KEY")).with(other_secrets()),
      ok("expect_continue_chunked", chunked("Expect: 100-continue\r\n", "7\r\n$MSB_BK\r\n0\r\n\r\n"),
         chunked("Expect: 100-continue\r\n", "9\r\nbody-FAKE\r\n0\r\n\r\n"))
          .not_split_exact(),

      // ---- upgrades: the rest is opaque, every placeholder a violation ----
      // Until the answer to the upgrade request is known the bytes after it are held; the stream
      // ends here without one, so they are dropped (Upgrade tests below give answers).
      ok("upgrade_then_clean_opaque_held", wsHead + std::string("\x81\x05hello", 7), wsHead),
      viol("upgrade_then_placeholder", wsHead + "frame $MSB_KEY", "KEY", Location::kStream, "opaque stream")
          .forwarded_before(wsHead),
      viol("connect_then_placeholder", "CONNECT api.example.com:443 HTTP/1.1\r\n" + kH + "\r\n%24MSB_KEY", "KEY",
           Location::kStream, "(percent-encoded)")
          .forwarded_before("CONNECT api.example.com:443 HTTP/1.1\r\n" + kH + "\r\n"),
  };
}

struct Env {
  FakePins pins;
  ConnectionContext ctx;
  std::unique_ptr<SecretSet> set;
};

std::unique_ptr<Env> make_env(const Case& c) {
  auto env = std::make_unique<Env>();
  const IpAddress v6 = *IpAddress::parse("2001:db8::1");
  switch (c.setup) {
    case Setup::kTls:
      env->pins.pin(testing::api_ip(), "api.example.com");
      env->ctx = testing::tls_context(&env->pins);
      break;
    case Setup::kTlsEvil:
      env->pins.pin(testing::evil_ip(), "evil.example");
      env->ctx = testing::tls_context(&env->pins, "evil.example", testing::evil_ip());
      break;
    case Setup::kTlsNoPins:
      env->ctx = testing::tls_context(&env->pins, c.name.find("any_host") != std::string::npos ? "whatever.example.org"
                                                                                                  : "api.example.com");
      break;
    case Setup::kTlsNullPins:
      env->ctx = testing::tls_context(nullptr);
      break;
    case Setup::kTlsPinOtherIp:
      env->pins.pin(testing::evil_ip(), "api.example.com");
      env->ctx = testing::tls_context(&env->pins);
      break;
    case Setup::kTlsPinOtherPattern:
      env->pins.pin(testing::api_ip(), "*.other.org");
      env->ctx = testing::tls_context(&env->pins);
      break;
    case Setup::kTlsWildcard:
      env->pins.pin(testing::api_ip(), "*.example.com");
      env->ctx = testing::tls_context(&env->pins);
      break;
    case Setup::kTlsApex:
      env->pins.pin(testing::api_ip(), "example.com").pin(testing::api_ip(), "*.example.com");
      env->ctx = testing::tls_context(&env->pins, "example.com");
      break;
    case Setup::kTlsAny:
      env->pins.pin(testing::api_ip(), "whatever.example.org");
      env->ctx = testing::tls_context(&env->pins, "whatever.example.org");
      break;
    case Setup::kPlain:
      env->pins.pin(testing::api_ip(), "api.example.com").pin(testing::api_ip(), "evil.example");
      env->ctx = testing::plain_context(&env->pins);
      break;
    case Setup::kPlainV6:
      env->pins.pin(v6, "[2001:db8::1]");
      env->ctx = testing::plain_context(&env->pins, v6);
      break;
  }
  EngineOptions opts;
  opts.max_body_bytes = c.max_body;
  env->set = std::make_unique<SecretSet>(make_secrets(c.secrets), ViolationAction::kUnset, opts);
  return env;
}

void expect_no_value(const testing::RunResult& r, const std::string& where) {
  for (const std::string& v : kAllValues) {
    if (r.block) {
      EXPECT_EQ(r.block->reason.find(v), std::string::npos) << where;
      EXPECT_EQ(r.block->secret_env.find(v), std::string::npos) << where;
      EXPECT_EQ(r.block->host.find(v), std::string::npos) << where;
    }
    EXPECT_EQ(r.guest.find(v), std::string::npos) << where;
    for (const Substitution& s : r.subs) {
      EXPECT_EQ(s.secret_env.find(v), std::string::npos) << where;
      EXPECT_EQ(s.host.find(v), std::string::npos) << where;
    }
  }
}

std::string expected_upstream(const Case& c) {
  return c.identity ? with_identity(c.upstream, c.identity_from) : c.upstream;
}

void expect_case(const Case& c, const testing::RunResult& r, const std::string& where) {
  if (c.blocked) {
    ASSERT_EQ(r.status, Status::kBlocked) << where;
    ASSERT_TRUE(r.block.has_value()) << where;
    EXPECT_EQ(r.block->violation, c.violation) << where;
    EXPECT_EQ(r.block->secret_env, c.env) << where;
    EXPECT_EQ(r.block->location, c.location) << where << " got " << to_string(r.block->location);
    EXPECT_NE(r.block->reason.find(c.reason_has), std::string::npos) << where << ": " << r.block->reason;
    EXPECT_EQ(r.block->action, ViolationAction::kBlockAndLog) << where;
  } else {
    ASSERT_EQ(r.status, Status::kOk) << where << ": " << (r.block ? r.block->reason : "");
    EXPECT_FALSE(r.block.has_value()) << where;
    EXPECT_EQ(r.upstream, expected_upstream(c)) << where;
  }
  EXPECT_EQ(r.guest, c.guest) << where;
  expect_no_value(r, where);
}

// Decodes a chunked body (test helper; input well formed).
std::string dechunk(std::string_view s) {
  std::string out;
  while (true) {
    const std::size_t eol = s.find("\r\n");
    const std::size_t size = std::stoul(std::string(s.substr(0, eol)), nullptr, 16);
    s.remove_prefix(eol + 2);
    if (size == 0) break;
    out.append(s.substr(0, size));
    s.remove_prefix(size + 2);
  }
  return out;
}

// Re-chunked output follows the reads: compare the head and the de-chunked body instead.
void expect_same_message(const Case& c, const testing::RunResult& r, const std::string& where) {
  ASSERT_EQ(r.status, Status::kOk) << where;
  const std::string up = expected_upstream(c);
  const std::size_t head_len = up.find("\r\n\r\n") + 4;
  ASSERT_EQ(r.upstream.substr(0, head_len), up.substr(0, head_len)) << where;
  EXPECT_EQ(dechunk(std::string_view(r.upstream).substr(head_len)), dechunk(std::string_view(up).substr(head_len)))
      << where;
  EXPECT_TRUE(r.upstream.ends_with(up.substr(up.rfind("\r\n0\r\n")))) << where;  // last chunk, trailers
  EXPECT_EQ(r.guest, c.guest) << where;
  expect_no_value(r, where);
}

class RewriterCase : public ::testing::TestWithParam<Case> {};

TEST_P(RewriterCase, WholeInput) {
  const Case& c = GetParam();
  auto env = make_env(c);
  const testing::RunResult r = run_rewriter(*env->set, env->ctx, c.input);
  expect_case(c, r, "whole");
  // Blocked: only earlier complete requests were forwarded.
  if (c.blocked) {
    EXPECT_EQ(r.upstream, expected_upstream(c));
  }
}

TEST_P(RewriterCase, EverySplitPoint) {
  const Case& c = GetParam();
  auto env = make_env(c);
  for (std::size_t cut = 0; cut <= c.input.size(); ++cut) {
    const testing::RunResult r = run_rewriter(*env->set, env->ctx, c.input, {cut});
    const std::string where = "cut at " + std::to_string(cut);
    if (c.split_exact || c.blocked) {
      expect_case(c, r, where);
    } else {
      expect_same_message(c, r, where);
    }
    if (::testing::Test::HasFailure()) return;
  }
}

TEST_P(RewriterCase, OneByteAtATime) {
  const Case& c = GetParam();
  auto env = make_env(c);
  std::vector<std::size_t> cuts;
  for (std::size_t i = 1; i < c.input.size(); ++i) cuts.push_back(i);
  const testing::RunResult r = run_rewriter(*env->set, env->ctx, c.input, cuts);
  if (c.split_exact || c.blocked) {
    expect_case(c, r, "byte by byte");
  } else {
    expect_same_message(c, r, "byte by byte");
  }
}

INSTANTIATE_TEST_SUITE_P(Table, RewriterCase, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

// ---- behaviours outside the table ----

TEST(Rewriter, RechunkSplitsGiveTheSameBody) {
  FakePins pins;
  pins.pin(testing::api_ip(), "api.example.com");
  SecretSet set(make_secrets(std_secrets()), ViolationAction::kUnset);
  const std::string input = chunked("", "3\r\nab$\r\n6\r\nMSB_BK\r\n4\r\n$MSB\r\n5\r\n_BK!!\r\n0\r\n\r\n");
  const std::string head = with_identity(input.substr(0, input.find("\r\n\r\n") + 4));
  const std::size_t head_len = head.size();
  for (std::size_t a = 0; a <= input.size(); ++a) {
    for (std::size_t b = a; b <= input.size(); b += 3) {
      const auto r = run_rewriter(set, testing::tls_context(&pins), input, {a, b});
      ASSERT_EQ(r.status, Status::kOk);
      ASSERT_EQ(r.upstream.substr(0, head_len), head);
      ASSERT_EQ(dechunk(std::string_view(r.upstream).substr(head_len)), "ab" + kBk + kBk + "!!") << a << "," << b;
      ASSERT_EQ(r.subs.size(), 2u);
    }
  }
}

TEST(Rewriter, HoldsBackOnlyAPossiblePlaceholderTail) {
  FakePins pins;
  pins.pin(testing::api_ip(), "api.example.com");
  SecretSet set(make_secrets(std_secrets()), ViolationAction::kUnset);
  RequestRewriter rw(set, testing::tls_context(&pins, "evil.example"));
  const std::string head = "POST / HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 30\r\n\r\n";
  std::string up, guest;
  ASSERT_EQ(rw.feed(head + "hello $MS", up, guest), Status::kOk);
  EXPECT_EQ(up, head + "hello ");
  ASSERT_EQ(rw.feed("X and", up, guest), Status::kOk);
  EXPECT_EQ(up, head + "hello $MSX and");
  ASSERT_EQ(rw.feed(" more %2", up, guest), Status::kOk);
  EXPECT_EQ(up, head + "hello $MSX and more ");
  ASSERT_EQ(rw.finish(up), Status::kOk);  // the stream ended: `%2` is no placeholder
  EXPECT_EQ(up, head + "hello $MSX and more %2");
}

TEST(Rewriter, HeldTailIsFlushedAtMessageEnd) {
  // A body ending in what could start a placeholder is complete: nothing may wait for more.
  FakePins pins;
  SecretSet set(make_secrets(std_secrets()), ViolationAction::kUnset);
  RequestRewriter rw(set, testing::tls_context(&pins));
  const std::string req = post("", "cost: $");
  std::string up, guest;
  ASSERT_EQ(rw.feed(req, up, guest), Status::kOk);
  EXPECT_EQ(up, req);
}

TEST(Rewriter, BlockedStaysBlocked) {
  FakePins pins;
  pins.pin(testing::api_ip(), "api.example.com");
  SecretSet set(make_secrets(std_secrets()), ViolationAction::kUnset);
  RequestRewriter rw(set, testing::tls_context(&pins));
  std::string up, guest;
  ASSERT_EQ(rw.feed(get("X: $MSB_OTHER\r\n"), up, guest), Status::kBlocked);
  EXPECT_EQ(rw.feed(kBearer, up, guest), Status::kBlocked);
  EXPECT_EQ(rw.finish(up), Status::kBlocked);
  EXPECT_EQ(up, "");
  ASSERT_TRUE(rw.blocked());
  EXPECT_EQ(rw.blocked()->secret_env, "OTHER");
}

TEST(Rewriter, SubstitutionsAreRecordedForTheAudit) {
  FakePins pins;
  pins.pin(testing::api_ip(), "api.example.com");
  SecretSet set(make_secrets(std_secrets()), ViolationAction::kUnset);
  RequestRewriter rw(set, testing::tls_context(&pins));
  std::string up, guest;
  const std::string req = "POST /v1?q=$MSB_QK HTTP/1.1\r\n" + kH +
                          "Authorization: Basic dXNlcjokTVNCX0tFWQ==\r\nX: $MSB_KEY\r\nContent-Length: 7\r\n\r\n$MSB_BK";
  ASSERT_EQ(rw.feed(req, up, guest), Status::kOk);
  const auto subs = rw.take_substitutions();
  ASSERT_EQ(subs.size(), 4u);
  EXPECT_EQ(subs[0].secret_env, "QK");
  EXPECT_EQ(subs[0].location, Location::kQuery);
  EXPECT_EQ(subs[1].secret_env, "KEY");
  EXPECT_EQ(subs[1].location, Location::kBasicAuth);
  EXPECT_EQ(subs[2].secret_env, "KEY");
  EXPECT_EQ(subs[2].location, Location::kHeader);
  EXPECT_EQ(subs[3].secret_env, "BK");
  EXPECT_EQ(subs[3].location, Location::kBody);
  for (const auto& s : subs) EXPECT_EQ(s.host, "api.example.com");
  EXPECT_TRUE(rw.take_substitutions().empty());
}

TEST(Rewriter, ActionIsResolvedFromTheSet) {
  FakePins pins;
  std::vector<SecretSpec> specs = std_secrets();
  auto secrets = make_secrets(specs);
  SecretSet set(std::move(secrets), ViolationAction::kBlockAndTerminate);
  const auto r = run_rewriter(set, testing::tls_context(&pins), get("X: $MSB_OTHER\r\n"));
  ASSERT_TRUE(r.block);
  EXPECT_EQ(r.block->action, ViolationAction::kBlockAndTerminate);
}

TEST(Rewriter, PinsAreAskedPerRequest) {
  FakePins pins;
  pins.pin(testing::api_ip(), "api.example.com");
  SecretSet set(make_secrets(std_secrets()), ViolationAction::kUnset);
  RequestRewriter rw(set, testing::tls_context(&pins));
  std::string up, guest;
  ASSERT_EQ(rw.feed(kBearer + kBearer, up, guest), Status::kOk);
  EXPECT_EQ(up, with_identity(kBearerOut + kBearerOut));
  EXPECT_EQ(pins.queries, 6);  // 3 secrets allowed for the SNI, 2 requests
}

TEST(Rewriter, IncompleteBufferedBodyIsNotForwarded) {
  FakePins pins;
  pins.pin(testing::api_ip(), "api.example.com");
  SecretSet set(make_secrets(std_secrets()), ViolationAction::kUnset);
  RequestRewriter rw(set, testing::tls_context(&pins));
  std::string up, guest;
  const std::string req = post("", "$MSB_BK and more");
  ASSERT_EQ(rw.feed(req.substr(0, req.size() - 3), up, guest), Status::kOk);
  EXPECT_EQ(up, "");
  EXPECT_EQ(rw.finish(up), Status::kOk);
  EXPECT_EQ(up, "");
}

TEST(Rewriter, IncompleteBufferedBodyWithViolationBlocksAtFinish) {
  FakePins pins;
  pins.pin(testing::api_ip(), "api.example.com");
  SecretSet set(make_secrets(std_secrets()), ViolationAction::kUnset);
  RequestRewriter rw(set, testing::tls_context(&pins));
  std::string up, guest;
  const std::string req = post("", "$MSB_BK and $MSB_OTHER and more");
  ASSERT_EQ(rw.feed(req.substr(0, req.size() - 3), up, guest), Status::kOk);
  EXPECT_EQ(rw.finish(up), Status::kBlocked);
  EXPECT_EQ(up, "");
  ASSERT_TRUE(rw.blocked());
  EXPECT_EQ(rw.blocked()->secret_env, "OTHER");
}

TEST(Rewriter, ValueAppearsOnlyWhereDue) {
  // The value reaches the upstream bytes exactly once per placeholder due, and nowhere else.
  FakePins pins;
  pins.pin(testing::api_ip(), "api.example.com");
  SecretSet set(make_secrets(std_secrets()), ViolationAction::kUnset);
  const auto r = run_rewriter(set, testing::tls_context(&pins), kBearer + get("X: %24MSB_KEY\r\n"));
  ASSERT_EQ(r.status, Status::kOk);
  std::size_t count = 0;
  for (std::size_t at = r.upstream.find(kKey); at != std::string::npos; at = r.upstream.find(kKey, at + 1)) ++count;
  EXPECT_EQ(count, 1u);
}


// ---- issue 12 items 3 and 4: what the response may be, and upgrades ----

struct Conn {
  FakePins pins;
  std::unique_ptr<SecretSet> set;
  std::unique_ptr<RequestRewriter> rw;
  std::string up, guest;
  explicit Conn(const std::string& sni = "api.example.com") {
    pins.pin(testing::api_ip(), "api.example.com");
    set = std::make_unique<SecretSet>(make_secrets(std_secrets()), ViolationAction::kUnset);
    rw = std::make_unique<RequestRewriter>(*set, testing::tls_context(&pins, sni));
  }
  Status feed(const std::string& in) { return rw->feed(in, up, guest); }
  Status answer(bool switched) { return rw->upgrade_answered(switched, up, guest); }
};

const std::string kWs = "GET /ws HTTP/1.1\r\n" + kH + "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
const std::string kWsOut = with_identity(kWs);

TEST(RewriterUpgrade, RefusedUpgradeGoesOnRewritingAndGating) {
  // Before issue 12 the stream turned opaque at the end of the upgrade request, refused or not:
  // a later request was neither rewritten (no Accept-Encoding: identity) nor gated as HTTP.
  Conn c;
  ASSERT_EQ(c.feed(kWs + kBearer + get("Accept-Encoding: gzip\r\n")), Status::kOk);
  EXPECT_EQ(c.up, kWsOut);  // the rest waits for the answer
  EXPECT_TRUE(c.rw->awaiting_upgrade());
  ASSERT_EQ(c.answer(false), Status::kOk);  // e.g. 426 or 200 without switching
  EXPECT_FALSE(c.rw->awaiting_upgrade());
  EXPECT_EQ(c.up, kWsOut + with_identity(kBearerOut) + get("Accept-Encoding: identity\r\n"));
  // And gated: a placeholder of a secret not allowed here is a violation in its header.
  ASSERT_EQ(c.feed(get("X: $MSB_OTHER\r\n")), Status::kBlocked);
  EXPECT_EQ(c.rw->blocked()->location, Location::kHeader);
}

TEST(RewriterUpgrade, AcceptedUpgradeMakesTheHeldBytesOpaque) {
  Conn c;
  ASSERT_EQ(c.feed(kWs + "frame one"), Status::kOk);
  EXPECT_EQ(c.up, kWsOut);
  ASSERT_EQ(c.answer(true), Status::kOk);  // 101
  EXPECT_EQ(c.up, kWsOut + "frame one");
  ASSERT_EQ(c.feed(" two"), Status::kOk);
  ASSERT_EQ(c.rw->finish(c.up), Status::kOk);
  EXPECT_EQ(c.up, kWsOut + "frame one two");
  // A placeholder in the new protocol is never substituted: a violation, wherever it is.
  Conn d;
  ASSERT_EQ(d.feed(kWs + "x $MSB_KEY"), Status::kOk);
  ASSERT_EQ(d.answer(true), Status::kBlocked);
  EXPECT_EQ(d.rw->blocked()->location, Location::kStream);
  EXPECT_EQ(d.up, kWsOut);
}

TEST(RewriterUpgrade, PipelinedRequestsAfterAnUpgradeWaitForTheAnswer) {
  Conn c;
  ASSERT_EQ(c.feed(kWs), Status::kOk);
  ASSERT_EQ(c.feed(kBearer), Status::kOk);
  ASSERT_EQ(c.feed(kBearer), Status::kOk);
  EXPECT_EQ(c.up, kWsOut);
  EXPECT_TRUE(c.rw->take_substitutions().empty());
  ASSERT_EQ(c.answer(false), Status::kOk);
  EXPECT_EQ(c.up, kWsOut + with_identity(kBearerOut + kBearerOut));
  EXPECT_EQ(c.rw->take_substitutions().size(), 2u);
}

TEST(RewriterUpgrade, BodyAndUpgradeWaitsAfterTheBody) {
  Conn c;
  const std::string req = "POST /ws HTTP/1.1\r\n" + kH +
                          "Upgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 4\r\n\r\nbody";
  ASSERT_EQ(c.feed(req + "\x01more"), Status::kOk);
  EXPECT_EQ(c.up, with_identity(req));
  ASSERT_EQ(c.answer(false), Status::kBlocked);  // what follows is not a request
  EXPECT_NE(c.rw->blocked()->reason.find("malformed request"), std::string::npos);
}

TEST(RewriterUpgrade, HeldBytesAreBounded) {
  Conn c;
  ASSERT_EQ(c.feed(kWs), Status::kOk);
  ASSERT_EQ(c.feed(std::string(RequestRewriter::kMaxHeldAfterUpgrade, 'a')), Status::kOk);
  ASSERT_EQ(c.feed("b"), Status::kBlocked);
  EXPECT_NE(c.rw->blocked()->reason.find("before its response"), std::string::npos);
}

TEST(RewriterUpgrade, FinishWithoutAnswerDropsHeldBytesButDetects) {
  Conn c;
  ASSERT_EQ(c.feed(kWs + get("X: %24MSB_KEY\r\n")), Status::kOk);
  ASSERT_EQ(c.rw->finish(c.up), Status::kBlocked);
  EXPECT_EQ(c.up, kWsOut);
}

TEST(RewriterUpgrade, H2cIsStrippedWhereValuesMayFlow) {
  // A value must never travel inside a protocol the gateway cannot read.
  Conn c;
  const std::string req = get("Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                              "Authorization: Bearer $MSB_KEY\r\n");
  ASSERT_EQ(c.feed(req + kBearer), Status::kOk);
  EXPECT_FALSE(c.rw->awaiting_upgrade());  // nothing left to switch to: the next request goes on
  EXPECT_EQ(c.up, with_identity(kBearerOut + kBearerOut));
  const auto fw = c.rw->take_forwarded();
  ASSERT_EQ(fw.size(), 2u);
  EXPECT_FALSE(fw[0].upgrade);
}

TEST(RewriterUpgrade, H2cAmongOthersLeavesTheOthers) {
  Conn c;
  ASSERT_EQ(c.feed(get("Upgrade: h2c, websocket\r\nConnection: keep-alive, Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AA\r\n")),
            Status::kOk);
  EXPECT_EQ(c.up, get("Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nAccept-Encoding: identity\r\n"));
  EXPECT_TRUE(c.rw->awaiting_upgrade());
  const auto fw = c.rw->take_forwarded();
  ASSERT_EQ(fw.size(), 1u);
  EXPECT_TRUE(fw[0].upgrade);
}

TEST(RewriterUpgrade, EditedFieldsAreStillSubstituted) {
  // Found by the fuzzer: the Upgrade value left after removing h2c kept a raw placeholder.
  Conn c;
  ASSERT_EQ(c.feed(get("Upgrade: h2c, $MSB_KEY\r\nConnection: Upgrade\r\n")), Status::kOk);
  EXPECT_EQ(c.up, get("Upgrade: " + kKey + "\r\nConnection: Upgrade\r\nAccept-Encoding: identity\r\n"));
}

TEST(RewriterUpgrade, H2cKeptWhereNoValueMayFlow) {
  Conn c("evil.example");
  const std::string req = "GET / HTTP/1.1\r\nHost: evil.example\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n";
  ASSERT_EQ(c.feed(req), Status::kOk);
  EXPECT_EQ(c.up, req);
  EXPECT_FALSE(c.rw->values_may_flow());
  EXPECT_TRUE(c.rw->awaiting_upgrade());
}

TEST(RewriterResponseCodings, TransferCodingsOtherThanChunkedAreNotOffered) {
  struct Row {
    std::string in, out;
  };
  const std::vector<Row> rows = {
      {"TE: gzip, trailers\r\nConnection: TE\r\n", "TE: trailers\r\nConnection: TE\r\n"},
      {"TE: gzip\r\nConnection: TE, keep-alive\r\n", "Connection: keep-alive\r\n"},
      {"Connection: te\r\nTE: deflate;q=0.5\r\n", ""},
      {"TE: trailers\r\n", "TE: trailers\r\n"},
  };
  for (const Row& row : rows) {
    Conn c;
    ASSERT_EQ(c.feed(get(row.in)), Status::kOk);
    EXPECT_EQ(c.up, get(row.out + "Accept-Encoding: identity\r\n")) << row.in;
  }
}

TEST(RewriterResponseCodings, OneIdentityAcceptEncodingAlways) {
  Conn c;
  ASSERT_EQ(c.feed(get("Accept-Encoding: gzip\r\nX: 1\r\naccept-encoding: br\r\n")), Status::kOk);
  EXPECT_EQ(c.up, get("Accept-Encoding: identity\r\nX: 1\r\n"));
  Conn d;  // none sent: one is added (a server may compress freely when there is none)
  ASSERT_EQ(d.feed(get("")), Status::kOk);
  EXPECT_EQ(d.up, get("Accept-Encoding: identity\r\n"));
}

TEST(RewriterResponseCodings, StickyOnceAValueMayHaveFlowed) {
  Conn c;
  EXPECT_FALSE(c.rw->values_may_flow());
  ASSERT_EQ(c.feed(kBearer), Status::kOk);
  EXPECT_TRUE(c.rw->values_may_flow());
  // A later request no secret is eligible for (authority mismatch) still asks for identity: the
  // same upstream may echo what it received before.
  const std::string other = "GET / HTTP/1.1\r\nHost: other.example.com\r\nAccept-Encoding: gzip\r\n\r\n";
  ASSERT_EQ(c.feed(other), Status::kOk);
  EXPECT_EQ(c.up, with_identity(kBearerOut) + "GET / HTTP/1.1\r\nHost: other.example.com\r\nAccept-Encoding: identity\r\n\r\n");
  // Where nothing is eligible, the guest's offers are untouched.
  Conn e("evil.example");
  const std::string req = "GET / HTTP/1.1\r\nHost: evil.example\r\nAccept-Encoding: gzip\r\nTE: gzip\r\n\r\n";
  ASSERT_EQ(e.feed(req), Status::kOk);
  EXPECT_EQ(e.up, req);
}

TEST(RewriterResponseCodings, ForwardedRequestsSayHowToReadTheirResponses) {
  Conn c;
  ASSERT_EQ(c.feed("HEAD / HTTP/1.1\r\n" + kH + "\r\n" + kBearer + "CONNECT api.example.com:443 HTTP/1.1\r\n" + kH + "\r\n"),
            Status::kOk);
  const auto fw = c.rw->take_forwarded();
  ASSERT_EQ(fw.size(), 3u);
  EXPECT_TRUE(fw[0].head);
  EXPECT_FALSE(fw[1].head || fw[1].connect || fw[1].upgrade);
  EXPECT_TRUE(fw[2].connect);
  EXPECT_FALSE(fw[2].upgrade);
  EXPECT_TRUE(c.rw->take_forwarded().empty());
}

}  // namespace
}  // namespace airlock::secrets
