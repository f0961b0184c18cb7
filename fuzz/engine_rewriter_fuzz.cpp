// libFuzzer target for secrets::RequestRewriter.
//
// Input: byte 0 picks the connection (transport, SNI, pins), the scopes of secret A and how
// upgrade requests are answered (bits 4-5: not, refused, switched);
// bytes 1–2 pick two split points; the rest is what the guest sends.
// Properties checked:
//  - no crash, no unbounded growth (output bounded by a small multiple of the input);
//  - the verdict (status, violation, secret, location) does not depend on the splits;
//  - with no eligible secret and no block, the output is exactly the input bytes the parser
//    delivered (forwarded byte for byte);
//  - with eligible secrets and no block, the output parses, and no raw placeholder of secret A
//    remains in a scope A enables in a request to A's host;
//  - no fake value appears in a verdict;
//  - the head's rewrite reusing its violation scan's positions (the default) and searching the
//    head again (detail::reuse_head_scan false) forward, owe, record and block the same.
#include <http/request_parser.hpp>
#include <secrets/engine/engine.hpp>
#include <secrets/engine/engine_test_util.hpp>
#include <secrets/engine/request_gates.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace {

using namespace airlock;
using namespace airlock::secrets;
using airlock::secrets::testing::FakePins;
using airlock::secrets::testing::SecretSpec;

constexpr std::string_view kValueA = "va-FAKE";
constexpr std::string_view kValueB = "vb-FAKE";
constexpr std::string_view kValueC = "vc FAKE";

struct World {
  FakePins pins;
  std::unique_ptr<SecretSet> sets[4];  // by scope variant of A
  World() {
    pins.pin(testing::api_ip(), "api.example.com").pin(testing::api_ip(), "*.example.com");
    for (int v = 0; v < 4; ++v) {
      InjectionScopes a;
      a.headers = v != 1;
      a.basic_auth = v != 2;
      a.query = v >= 1;
      a.body = v >= 2;
      InjectionScopes c;
      c.query = true;
      c.body = true;
      std::vector<SecretSpec> specs = {
          {"A", std::string(kValueA), {"api.example.com"}, a},
          {"B", std::string(kValueB), {"other.example.net"}, {}},
          {"C", std::string(kValueC), {"*.example.com"}, c, false},
      };
      EngineOptions opts;
      opts.max_body_bytes = 4096;
      sets[v] = std::make_unique<SecretSet>(testing::make_secrets(specs), ViolationAction::kUnset, opts);
    }
  }
};

World& world() {
  static World w;
  return w;
}

// Counts the bytes the parser delivers to its sink (heads only once complete).
struct CountingSink final : http::RequestSink {
  std::size_t delivered = 0;
  void on_head(http::RequestHead& head) override { delivered += head.raw.size(); }
  void on_body(std::string_view data) override { delivered += data.size(); }
  void on_framing(http::FramingKind, std::string_view raw) override { delivered += raw.size(); }
  void on_message_end() override {}
};

// Checks the rewritten output: it parses, and in requests to api.example.com no raw `$MSB_A`
// is left in a scope A enables.
struct CheckingSink final : http::RequestSink {
  const InjectionScopes* scopes = nullptr;
  bool to_a = false;
  std::string body;
  void on_head(http::RequestHead& head) override {
    to_a = false;
    body.clear();
    const auto hosts = head.values("host");
    const std::string_view target = head.view(head.target);
    to_a = hosts.size() == 1 && hosts[0] == "api.example.com" && !target.empty() && target[0] == '/' &&
           !head.upgrade;
    if (!to_a) return;
    bool has_encoding = false;
    for (const http::HeaderField& f : head.fields) {
      const std::string_view name = head.view(f.name);
      if (name.size() == 16 && (name[0] == 'c' || name[0] == 'C') && name.substr(1) == "ontent-Encoding") has_encoding = true;
      if (scopes->headers && head.view(f.value).find("$MSB_A") != std::string_view::npos) std::abort();
    }
    if (has_encoding) to_a = false;
    const std::size_t q = target.find('?');
    if (scopes->query && q != std::string_view::npos && target.substr(q).find("$MSB_A") != std::string_view::npos) {
      std::abort();
    }
  }
  void on_body(std::string_view data) override {
    if (to_a && body.size() < (1u << 16)) body.append(data);
  }
  void on_framing(http::FramingKind, std::string_view) override {}
  void on_message_end() override {
    if (to_a && scopes->body && body.find("$MSB_A") != std::string::npos) std::abort();
    body.clear();
  }
};

bool same_verdict(const testing::RunResult& a, const testing::RunResult& b) {
  if (a.status != b.status) return false;
  if (a.block.has_value() != b.block.has_value()) return false;
  if (!a.block) return true;
  return a.block->violation == b.block->violation && a.block->secret_env == b.block->secret_env &&
         a.block->location == b.block->location && a.block->reason == b.block->reason;
}

bool contains_value(std::string_view s) {
  return s.find(kValueA) != std::string_view::npos || s.find(kValueB) != std::string_view::npos ||
         s.find(kValueC) != std::string_view::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  World& w = world();
  const std::uint8_t mode = data[0];
  const std::string_view input(reinterpret_cast<const char*>(data + 3), size - 3);
  const std::size_t cut1 = input.empty() ? 0 : data[1] * input.size() / 255;
  const std::size_t cut2 = input.empty() ? 0 : std::max<std::size_t>(cut1, data[2] * input.size() / 255);

  const int variant = mode & 3;
  const SecretSet& set = *w.sets[variant];
  ConnectionContext ctx;
  bool none_eligible = false;
  switch ((mode >> 2) & 3) {
    case 0:  // TLS to api.example.com, pinned: A (and C) may be eligible
      ctx = testing::tls_context(&w.pins);
      break;
    case 1:  // TLS to an unknown host: nothing is eligible
      ctx = testing::tls_context(&w.pins, "evil.example", testing::evil_ip());
      none_eligible = true;
      break;
    case 2:  // plain HTTP: only C (require_tls false) may be eligible
      ctx = testing::plain_context(&w.pins);
      break;
    default:  // TLS, no pins at all
      ctx = testing::tls_context(nullptr);
      none_eligible = true;
      break;
  }

  // Upgrade requests: left unanswered, refused, or switched (issue 12 item 4).
  const int answer_mode = (mode >> 4) & 3;
  const std::optional<bool> answer = answer_mode == 1 ? std::optional<bool>(false)
                                     : answer_mode == 2 ? std::optional<bool>(true)
                                                        : std::nullopt;
  const testing::RunResult whole = testing::run_rewriter(set, ctx, input, {}, true, answer);
  const testing::RunResult split = testing::run_rewriter(set, ctx, input, {cut1, cut2}, true, answer);
  if (!same_verdict(whole, split)) std::abort();
  {
    airlock::secrets::detail::reuse_head_scan = false;
    const testing::RunResult searched = testing::run_rewriter(set, ctx, input, {}, true, answer);
    airlock::secrets::detail::reuse_head_scan = true;
    if (!same_verdict(whole, searched) || searched.upstream != whole.upstream || searched.guest != whole.guest) std::abort();
    if (searched.subs.size() != whole.subs.size()) std::abort();
    for (std::size_t k = 0; k < whole.subs.size(); ++k) {
      if (searched.subs[k].secret_env != whole.subs[k].secret_env || searched.subs[k].host != whole.subs[k].host ||
          searched.subs[k].location != whole.subs[k].location)
        std::abort();
    }
  }

  for (const testing::RunResult* r : {&whole, &split}) {
    if (r->upstream.size() > 4 * input.size() + 4096) std::abort();
    if (r->guest.size() > 26 * (input.size() / 20 + 1)) std::abort();
    if (r->block && (contains_value(r->block->reason) || contains_value(r->block->host))) std::abort();
    if (contains_value(r->guest)) std::abort();
  }

  if (whole.status == Status::kOk && none_eligible) {
    // Forwarded byte for byte: exactly what the parser delivered (plus an opaque tail).
    http::RequestParser parser(set.options().http);
    CountingSink sink;
    std::size_t consumed = parser.parse(input, sink);
    while (answer && parser.awaiting_upgrade()) {  // answered as the rewriter's were
      parser.resolve_upgrade(*answer);
      if (*answer) break;
      const std::size_t n = parser.parse(input.substr(consumed), sink);
      if (n == 0) break;
      consumed += n;
    }
    std::size_t expected = sink.delivered;
    if (parser.upgraded()) expected += input.size() - consumed;
    if (whole.upstream != input.substr(0, expected)) std::abort();
    if (split.upstream != whole.upstream) std::abort();
  }

  if (whole.status == Status::kOk && !none_eligible) {
    http::RequestParser parser(set.options().http);
    CheckingSink sink;
    InjectionScopes a = set.secrets()[0].scopes();
    if (ctx.transport == Transport::kPlainHttp) a = InjectionScopes{false, false, false, false};  // A needs TLS
    sink.scopes = &a;
    for (const testing::RunResult* r : {&whole, &split}) {
      http::RequestParser p(set.options().http);
      std::size_t at = p.parse(r->upstream, sink);
      while (answer && !*answer && p.awaiting_upgrade() && at < r->upstream.size()) {
        p.resolve_upgrade(false);
        at += p.parse(std::string_view(r->upstream).substr(at), sink);
      }
      if (p.error() != http::ParseError::kNone) std::abort();
    }
  }
  return 0;
}
