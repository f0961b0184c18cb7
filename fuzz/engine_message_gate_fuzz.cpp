// libFuzzer target for secrets::MessageGate, the protocol-neutral request gate (HTTP/2 streams,
// WebSocket messages).
//
// Input: byte 0 picks the scopes of secret A (bits 0-1) and the connection (bits 2-3); byte 1 a
// split point of the body. The rest is text: a first line "METHOD AUTHORITY TARGET" (fields may
// be empty), then "name: value" lines up to an empty line (the head), then the body; a line
// "--trailers--" in the body starts trailer lines.
// Properties checked:
//  - no crash, output bounded by a small multiple of the input;
//  - the verdict (status, violation, secret, location, reason) does not depend on the split;
//  - no fake value appears in a verdict;
//  - with no block, where A is eligible: no raw `$MSB_A` is left in a scope A enables (header
//    values, the query, an identity body), and every field that holds A's value (when the input
//    did not) is flagged sensitive (never-indexed in HPACK);
//  - with nothing eligible, nothing is substituted and values_may_flow() stays false.
#include <secrets/engine/engine_test_util.hpp>
#include <secrets/engine/message_gate.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace airlock;
using namespace airlock::secrets;
using airlock::secrets::testing::FakePins;
using airlock::secrets::testing::SecretSpec;

constexpr std::string_view kValueA = "va-FAKE";
constexpr std::string_view kValueB = "vb-FAKE";

struct World {
  FakePins pins;
  std::unique_ptr<SecretSet> sets[4];
  World() {
    pins.pin(testing::api_ip(), "api.example.com");
    for (int v = 0; v < 4; ++v) {
      InjectionScopes a;
      a.headers = v != 1;
      a.basic_auth = v != 2;
      a.query = v >= 1;
      a.body = v >= 2;
      std::vector<SecretSpec> specs = {
          {"A", std::string(kValueA), {"api.example.com"}, a},
          {"B", std::string(kValueB), {"other.example.net"}, {}},
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

struct Parsed {
  Request request;
  std::string body;
  std::vector<Field> trailers;
  bool has_trailers = false;
};

std::vector<Field> parse_fields(std::string_view text) {
  std::vector<Field> out;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    const std::size_t colon = line.find(": ");
    if (colon != std::string_view::npos) out.push_back(Field{std::string(line.substr(0, colon)), std::string(line.substr(colon + 2)), false});
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return out;
}

Parsed parse(std::string_view in) {
  Parsed p;
  const std::size_t head_end = in.find("\n\n");
  const std::string_view head = in.substr(0, head_end);
  std::string_view body = head_end == std::string_view::npos ? std::string_view{} : in.substr(head_end + 2);
  const std::size_t first_nl = head.find('\n');
  const std::string_view line = head.substr(0, first_nl);
  const std::size_t s1 = line.find(' ');
  const std::size_t s2 = s1 == std::string_view::npos ? s1 : line.find(' ', s1 + 1);
  p.request.method = std::string(line.substr(0, s1));
  if (s1 != std::string_view::npos) p.request.authority = std::string(line.substr(s1 + 1, s2 == std::string_view::npos ? s2 : s2 - s1 - 1));
  if (s2 != std::string_view::npos) p.request.target = std::string(line.substr(s2 + 1));
  if (first_nl != std::string_view::npos) p.request.headers = parse_fields(head.substr(first_nl + 1));
  const std::size_t t = body.find("\n--trailers--\n");
  if (t != std::string_view::npos) {
    p.trailers = parse_fields(body.substr(t + 14));
    p.has_trailers = true;
    body = body.substr(0, t);
  }
  p.body = std::string(body);
  return p;
}

struct Outcome {
  Status status = Status::kOk;
  std::optional<Block> block;
  Request request;
  std::string out;
  std::size_t substitutions = 0;
  bool flowed = false;
};

Outcome run(const SecretSet& set, const ConnectionContext& ctx, const Parsed& p, std::size_t cut) {
  Outcome o;
  MessageGate gate(set, ctx);
  o.request = p.request;
  const bool end_stream = p.body.empty() && !p.has_trailers;
  o.status = gate.on_headers(o.request, end_stream);
  if (o.status == Status::kOk && !end_stream) {
    const std::string_view body(p.body);
    cut = std::min(cut, body.size());
    o.status = gate.on_data(body.substr(0, cut), false, o.out);
    if (o.status == Status::kOk) {
      if (p.has_trailers) {
        std::vector<Field> trailers = p.trailers;
        o.status = gate.on_data(body.substr(cut), false, o.out);
        if (o.status == Status::kOk) o.status = gate.on_trailers(trailers, o.out);
      } else {
        o.status = gate.on_data(body.substr(cut), true, o.out);
      }
    }
  }
  o.block = gate.blocked();
  o.substitutions = gate.take_substitutions().size();
  o.flowed = gate.values_may_flow();
  return o;
}

bool contains_value(std::string_view s) {
  return s.find(kValueA) != std::string_view::npos || s.find(kValueB) != std::string_view::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  World& w = world();
  const std::uint8_t mode = data[0];
  const std::string_view input(reinterpret_cast<const char*>(data + 2), size - 2);
  const SecretSet& set = *w.sets[mode & 3];
  ConnectionContext ctx;
  bool none_eligible = false;
  switch ((mode >> 2) & 3) {
    case 0: ctx = testing::tls_context(&w.pins); break;
    case 1:
      ctx = testing::tls_context(&w.pins, "evil.example", testing::evil_ip());
      none_eligible = true;
      break;
    case 2:
      ctx = testing::plain_context(&w.pins);  // A needs TLS: nothing eligible
      none_eligible = true;
      break;
    default:
      ctx = testing::tls_context(nullptr);
      none_eligible = true;
      break;
  }
  const Parsed p = parse(input);
  const std::size_t cut = p.body.empty() ? 0 : data[1] * p.body.size() / 255;
  const Outcome whole = run(set, ctx, p, p.body.size());
  const Outcome split = run(set, ctx, p, cut);

  if (whole.status != split.status || whole.block.has_value() != split.block.has_value()) std::abort();
  if (whole.block && (whole.block->violation != split.block->violation || whole.block->secret_env != split.block->secret_env ||
                      whole.block->location != split.block->location || whole.block->reason != split.block->reason)) {
    std::abort();
  }
  for (const Outcome* o : {&whole, &split}) {
    if (o->out.size() > 4 * p.body.size() + 4096) std::abort();
    if (o->block && (contains_value(o->block->reason) || contains_value(o->block->host))) std::abort();
    if (none_eligible && (o->substitutions != 0 || o->flowed)) std::abort();
  }
  if (whole.status == Status::kOk && whole.out != split.out) std::abort();

  if (whole.status == Status::kOk && !none_eligible && whole.flowed) {
    const InjectionScopes& a = set.secrets()[0].scopes();
    const bool typed_value = input.find(kValueA) != std::string_view::npos;
    bool coded = false;
    for (const Field& f : whole.request.headers) {
      if (f.name == "content-encoding") coded = true;
      if (a.headers && f.value.find("$MSB_A") != std::string::npos) std::abort();
      if (!typed_value && f.value.find(kValueA) != std::string::npos && !f.sensitive) std::abort();
    }
    const std::size_t q = whole.request.target.find('?');
    if (a.query && q != std::string::npos && whole.request.target.find("$MSB_A", q) != std::string::npos) std::abort();
    if (!typed_value && whole.request.target.find("va-FAKE") != std::string::npos && !whole.request.target_sensitive) {
      std::abort();
    }
    if (a.body && !coded && whole.out.find("$MSB_A") != std::string::npos) std::abort();
  }
  return 0;
}
