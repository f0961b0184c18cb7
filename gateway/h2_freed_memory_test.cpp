// Adversarial: the HTTP/2 bridge frees no memory with a substituted value in it. A value goes
// into a request stream's head (HPACK literal) and DATA; the bridge's buffers, the upstream
// session's DATA queue and frame output, and nghttp2's own copies of the header list all held it
// and were freed as they were. This binary's free() scans every block freed while the bridge
// works (the test's own peers, which hold the value on purpose, are not scanned).
#include "gateway/h2_bridge.hpp"

#include <secrets/engine/engine_test_util.hpp>

#include <gtest/gtest.h>
#include <openssl/crypto.h>

#include <malloc.h>

#include <atomic>
#include <cstring>
#include <string>
#include <vector>

namespace {

char g_needle[64];
std::size_t g_needle_size = 0;
bool g_armed = false;
std::atomic<int> g_freed_with_value{0};

}  // namespace

extern "C" void __libc_free(void* p);
extern "C" void free(void* p) {
  if (p != nullptr && g_armed && g_needle_size > 0) {
    const std::size_t n = malloc_usable_size(p);
    if (memmem(p, n, g_needle, g_needle_size) != nullptr) g_freed_with_value.fetch_add(1);
  }
  __libc_free(p);
}

namespace airlock::gateway {
namespace {

using http::h2::Event;
using http::h2::Headers;
using http::h2::Role;
using http::h2::Session;

const std::string kValue = "h2-real-value-Qm3Zx8Kp5Wn7Ty";

// Scans only while it lives: around the bridge's own work.
struct Armed {
  Armed() { g_armed = true; }
  ~Armed() { g_armed = false; }
};

void wipe(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

TEST(H2FreedMemory, ASubstitutedHeadAndBodyLeaveNoValueInFreedMemory) {
  std::memcpy(g_needle, kValue.data(), kValue.size());
  g_needle_size = kValue.size();
  g_freed_with_value = 0;
  InjectionScopes scopes;
  scopes.body = true;
  secrets::testing::FakePins pins;
  pins.pin(secrets::testing::api_ip(), "api.example.com");
  auto snapshot = std::make_shared<SecretsSnapshot>();
  snapshot->set = std::make_shared<secrets::SecretSet>(
      secrets::testing::make_secrets({{"KEY", kValue, {"api.example.com"}, scopes}}), ViolationAction::kBlockAndLog);
  snapshot->scrub_forms.emplace(snapshot->set->secrets());
  snapshot->generation = 1;
  Session guest(Role::kClient, {}), upstream(Role::kServer, {});
  std::string received;  // what the upstream got (the test's copy, never scanned)
  {
    std::unique_ptr<H2Bridge> bridge;
    {
      Armed a;
      bridge = std::make_unique<H2Bridge>(snapshot, secrets::testing::tls_context(&pins));
    }
    std::string body;
    for (int i = 0; i < 400; ++i) body += "{\"k\":\"$MSB_KEY\"}";
    const Headers head = {{":method", "POST"},
                          {":scheme", "https"},
                          {":authority", "api.example.com"},
                          {":path", "/v1"},
                          {"authorization", "Bearer $MSB_KEY"}};
    for (int n = 0; n < 3; ++n) {
      const auto r = guest.submit_request(head, false);
      ASSERT_EQ(r.error, http::h2::H2Error::kNone);
      guest.submit_data(r.stream, body, true);
    }
    for (int round = 0; round < 50; ++round) {
      std::string from_guest, from_upstream, g, u;
      guest.pending_output(from_guest);
      upstream.pending_output(from_upstream);
      {
        Armed a;
        if (!from_guest.empty()) bridge->from_guest(from_guest);
        if (!from_upstream.empty()) {
          bridge->from_upstream(from_upstream);
          bridge->flush_responses();
        }
        bridge->flush_requests();
        bridge->take_output(g, u);
        bridge->take_notices();
      }
      std::vector<Event> ev;
      if (!u.empty()) upstream.receive(u, ev);
      for (Event& e : ev) {
        for (const auto& h : e.headers) received += h.value;
        if (e.kind == Event::Kind::kData) {
          received += e.data;
          upstream.consumed(e.stream, e.data.size());
        }
        if (e.end_stream) {
          upstream.submit_response(e.stream, {{":status", "200"}}, false);
          upstream.submit_data(e.stream, "ok", true);
        }
      }
      ev.clear();
      if (!g.empty()) guest.receive(g, ev);
      const bool idle = g.empty() && u.empty() && from_guest.empty() && from_upstream.empty();
      wipe(u);  // as the gateway does after the write
      if (idle) break;
    }
    Armed a;
    bridge.reset();
  }
  EXPECT_NE(received.find("Bearer " + kValue), std::string::npos);  // the value went upstream
  EXPECT_NE(received.find("{\"k\":\"" + kValue + "\"}"), std::string::npos);
  EXPECT_EQ(g_freed_with_value.load(), 0);
  g_needle_size = 0;
}

}  // namespace
}  // namespace airlock::gateway
