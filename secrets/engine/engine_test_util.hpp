#pragma once
// Shared by the engine's tests, fuzz targets and benchmark: fake pins, fake secrets, drivers.
// Values here are obviously fake.
#include <secrets/engine/engine.hpp>

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace airlock::secrets::testing {

// Gate 2 from a list of (ip, pattern text) pins.
class FakePins final : public PinQuery {
 public:
  FakePins& pin(const IpAddress& ip, std::string pattern) {
    pins_.emplace_back(ip, std::move(pattern));
    return *this;
  }
  bool pinned(const IpAddress& ip, const HostPattern& pattern) const override {
    ++queries;
    return std::any_of(pins_.begin(), pins_.end(),
                       [&](const auto& p) { return p.first == ip && p.second == pattern.text(); });
  }
  mutable int queries = 0;

 private:
  std::vector<std::pair<IpAddress, std::string>> pins_;
};

inline IpAddress api_ip() { return IpAddress::v4(203, 0, 113, 10); }
inline IpAddress evil_ip() { return IpAddress::v4(198, 51, 100, 66); }

// Injection into bodies only (the scope a body substitution test gives its secret).
inline InjectionScopes body_scope() {
  InjectionScopes s;
  s.body = true;
  return s;
}

struct SecretSpec {
  SecretSpec(std::string env_, std::string value_, std::vector<std::string> hosts_, InjectionScopes scopes_ = {},
             bool require_tls_ = true, bool any_host_ = false, std::string placeholder_ = {})
      : env(std::move(env_)),
        value(std::move(value_)),
        hosts(std::move(hosts_)),
        scopes(scopes_),
        require_tls(require_tls_),
        any_host(any_host_),
        placeholder(std::move(placeholder_)) {}
  std::string env;
  std::string value;
  std::vector<std::string> hosts;  // `*.` entries are patterns
  InjectionScopes scopes{};
  bool require_tls = true;
  bool any_host = false;
  std::string placeholder;  // empty: default
};

inline SecretBinding make_secret(const SecretSpec& spec) {
  SecretBuilder b;
  b.env(spec.env).value(spec.value);
  for (const std::string& h : spec.hosts) {
    if (h.rfind("*.", 0) == 0) b.allow_host_pattern(h);
    else b.allow_host(h);
  }
  if (spec.any_host) b.allow_any_host_dangerous(true);
  if (!spec.placeholder.empty()) b.placeholder(spec.placeholder);
  b.require_tls_identity(spec.require_tls);
  b.inject_headers(spec.scopes.headers).inject_basic_auth(spec.scopes.basic_auth);
  b.inject_query(spec.scopes.query).inject_body(spec.scopes.body);
  return b.build();
}

inline std::vector<SecretBinding> make_secrets(const std::vector<SecretSpec>& specs) {
  std::vector<SecretBinding> out;
  for (const SecretSpec& s : specs) out.push_back(make_secret(s));
  return out;
}

inline ConnectionContext tls_context(const PinQuery* pins, std::string sni = "api.example.com",
                                     IpAddress dest = api_ip()) {
  ConnectionContext c;
  c.transport = Transport::kTlsVerified;
  c.sni = std::move(sni);
  c.destination = dest;
  c.port = 443;
  c.pins = pins;
  return c;
}

inline ConnectionContext plain_context(const PinQuery* pins, IpAddress dest = api_ip()) {
  ConnectionContext c;
  c.transport = Transport::kPlainHttp;
  c.destination = dest;
  c.port = 80;
  c.pins = pins;
  return c;
}

struct RunResult {
  Status status = Status::kOk;
  std::string upstream;
  std::string guest;
  std::optional<Block> block;
  std::vector<Substitution> subs;
};

// Feeds `input` cut at `cuts` (sorted offsets), then finish() unless blocked. With
// `upgrade_answer`, an upgrade request is answered (switched or not) as soon as it is pending.
inline RunResult run_rewriter(const SecretSet& set, const ConnectionContext& ctx, std::string_view input,
                              const std::vector<std::size_t>& cuts = {}, bool call_finish = true,
                              std::optional<bool> upgrade_answer = std::nullopt) {
  RequestRewriter rw(set, ctx);
  RunResult r;
  std::size_t pos = 0;
  std::vector<std::size_t> all = cuts;
  all.push_back(input.size());
  for (std::size_t cut : all) {
    cut = std::min(cut, input.size());
    if (cut < pos) continue;
    r.status = rw.feed(input.substr(pos, cut - pos), r.upstream, r.guest);
    pos = cut;
    while (upgrade_answer && r.status == Status::kOk && rw.awaiting_upgrade()) {
      r.status = rw.upgrade_answered(*upgrade_answer, r.upstream, r.guest);
      if (*upgrade_answer) break;  // opaque from here: nothing is awaited any more
    }
    if (r.status == Status::kBlocked) break;
  }
  if (r.status == Status::kOk && call_finish) r.status = rw.finish(r.upstream);
  r.block = rw.blocked();
  r.subs = rw.take_substitutions();
  return r;
}

}  // namespace airlock::secrets::testing
