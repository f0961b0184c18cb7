// The HTTP/2 bridge without I/O (issue 15): the bench's h2 scenario in memory. A client session
// (the guest, as h2load -m10) sends batches of 10 GETs with a placeholder in Authorization; the
// bridge gates and substitutes them; a server session (the upstream, as nginx's /small) answers
// each with a 100-byte body; the bridge scrubs the answers back. Ten made-up secrets, one of them
// allowed for the host, as the bench's gateway.toml. The peers' sessions are part of each
// iteration: the bridge alone is the difference from the peers talking directly (under callgrind,
// the fixed-count runs below).
#include <gateway/h2_bridge.hpp>

#include <secrets/engine/engine_test_util.hpp>

#include <benchmark/benchmark.h>

#include <memory>
#include <string>
#include <vector>

namespace {

using namespace airlock;
using namespace airlock::gateway;
using http::h2::Event;
using http::h2::Headers;
using http::h2::Role;
using http::h2::Session;

constexpr int kStreamsPerBatch = 10;
const std::string kBody(100, 's');

std::shared_ptr<const SecretsSnapshot> snapshot() {
  std::vector<secrets::testing::SecretSpec> specs;
  specs.emplace_back("BENCH_KEY_0", "bench-FAKE-value-0-3kq9Vd81mZpQ0aLr", std::vector<std::string>{"api.example.com"});
  for (int i = 1; i < 10; ++i) {
    specs.emplace_back("BENCH_KEY_" + std::to_string(i), "bench-FAKE-value-" + std::to_string(i) + "-Hw5Ee6Rr2Tt8",
                       std::vector<std::string>{"other" + std::to_string(i) + ".example"});
  }
  auto s = std::make_shared<SecretsSnapshot>();
  s->set = std::make_shared<const secrets::SecretSet>(secrets::testing::make_secrets(specs), ViolationAction::kBlockAndLog);
  s->scrub_forms.emplace(s->set->secrets());
  s->generation = 1;
  return s;
}

// One connection: the guest's client session, the bridge, the upstream's server session.
// One connection: the guest's client session, the bridge (or none: the peers talk directly, the
// baseline that the bridge's own cost is the difference from), the upstream's server session.
struct Connection {
  secrets::testing::FakePins pins;
  std::shared_ptr<const SecretsSnapshot> secrets = snapshot();
  std::unique_ptr<H2Bridge> bridge;
  Session guest{Role::kClient, {}};
  Session upstream{Role::kServer, {}};
  Headers request, response;
  std::string g, u, wire;  // bytes owed the guest, the upstream; one party's output
  std::vector<Event> events;
  std::vector<std::chrono::steady_clock::time_point> answered_at;
  std::vector<H2Notice> notices;
  std::size_t answered = 0;

  explicit Connection(bool bridged) {
    pins.pin(secrets::testing::api_ip(), "api.example.com");
    if (bridged) bridge = std::make_unique<H2Bridge>(secrets, secrets::testing::tls_context(&pins));
    const std::string placeholder = secrets->set->secrets().front().placeholder();
    request = {{":method", "GET"},
               {":scheme", "https"},
               {":authority", "api.example.com"},
               {":path", "/small"},
               {"user-agent", "h2load nghttp2/1.52.0"},
               {"authorization", "Bearer " + placeholder}};
    response = {{":status", "200"},
                {"server", "nginx/1.22.1"},
                {"date", "Thu, 03 Dec 2026 08:30:00 GMT"},
                {"content-type", "text/plain"},
                {"content-length", "100"}};
    exchange(0);  // prefaces and SETTINGS both ways
  }

  // `streams` new requests from the guest, then every byte each party owes another is delivered
  // until all are quiet (the upstream answers each request as it ends).
  void exchange(int streams) {
    for (int i = 0; i < streams; ++i) guest.submit_request(request, true);
    deliver(guest);
    for (int round = 0; round < 8; ++round) {
      if (bridge) {
        bridge->take_output(g, u);
        bridge->take_answered(answered_at);
        answered_at.clear();
        bridge->take_notices(notices);
      }
      events.clear();
      if (!u.empty()) upstream.receive(u, events);
      u.clear();
      for (const Event& e : events) {
        if (e.kind == Event::Kind::kHeaders && e.end_stream) {
          upstream.submit_response(e.stream, response, false);
          upstream.submit_data(e.stream, kBody, true);
        }
      }
      events.clear();
      if (!g.empty()) guest.receive(g, events);
      g.clear();
      for (const Event& e : events) {
        if (e.kind != Event::Kind::kData) continue;
        guest.consumed(e.stream, e.data.size());  // as h2load's session gives its window back
        answered += e.end_stream ? 1 : 0;
      }
      const bool up = deliver(upstream);
      const bool down = deliver(guest);
      if (!up && !down) break;
    }
  }

  // What `from` owes, into the bridge (or straight to the other peer). True when there was any.
  bool deliver(Session& from) {
    wire.clear();
    from.pending_output(wire);
    if (wire.empty()) return false;
    const bool from_guest = &from == &guest;
    if (!bridge) {
      (from_guest ? u : g).append(wire);
    } else if (from_guest) {
      bridge->from_guest(wire);
      bridge->flush_requests();
    } else {
      bridge->from_upstream(wire);
      bridge->flush_responses();
    }
    return true;
  }
};

void run(benchmark::State& state, bool bridged) {
  Connection c(bridged);
  for (auto _ : state) c.exchange(kStreamsPerBatch);
  if (c.answered != static_cast<std::size_t>(state.iterations()) * kStreamsPerBatch) {
    state.SkipWithError("a request was not answered");
  }
  state.SetItemsProcessed(state.iterations() * kStreamsPerBatch);
}

void BM_H2BridgeBatchOf10Gets(benchmark::State& state) { run(state, true); }
void BM_H2PeersAloneBatchOf10Gets(benchmark::State& state) { run(state, false); }
BENCHMARK(BM_H2BridgeBatchOf10Gets);
BENCHMARK(BM_H2PeersAloneBatchOf10Gets);
// Fixed counts for callgrind: (I(3000) - I(1000)) / 2000 is one batch without the setup; the
// bridge's own cost is the bridged figure less the peers' alone.
BENCHMARK(BM_H2BridgeBatchOf10Gets)->Iterations(1000);
BENCHMARK(BM_H2BridgeBatchOf10Gets)->Iterations(3000);
BENCHMARK(BM_H2PeersAloneBatchOf10Gets)->Iterations(1000);
BENCHMARK(BM_H2PeersAloneBatchOf10Gets)->Iterations(3000);

}  // namespace

BENCHMARK_MAIN();
