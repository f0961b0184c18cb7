// The HTTP/2 bridge between a real HTTP/2 client (the guest) and a real HTTP/2 server (the
// upstream), both nghttp2 sessions: per-stream gates, never-indexed substitutions, the attacks of
// issue 13 (one stream of several with a mismatched :authority, a disallowed authority, HPACK
// dynamic-table reuse, CONTINUATION, echoes in response headers and DATA). Values are fake.
#include "gateway/h2_bridge.hpp"

#include <secrets/engine/engine_test_util.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

namespace airlock::gateway {
namespace {

using http::h2::ErrorCode;
using http::h2::Event;
using http::h2::Header;
using http::h2::Headers;
using http::h2::Role;
using http::h2::Session;
using secrets::testing::FakePins;
using secrets::testing::make_secrets;

const std::string kKey = "sk-live-FAKE-h2";
const std::string kBody = "body-FAKE-h2";

InjectionScopes body_scope() {
  InjectionScopes s;
  s.headers = false;
  s.basic_auth = false;
  s.body = true;
  return s;
}

struct Harness {
  explicit Harness(ViolationAction action = ViolationAction::kBlockAndLog, std::string sni = "api.example.com")
      : set(make_secrets({{"KEY", kKey, {"api.example.com"}}, {"BODY", kBody, {"api.example.com"}, body_scope()}}),
            action),
        forms(set.secrets()),
        guest(Role::kClient, {}),
        upstream(Role::kServer, {}) {
    pins.pin(secrets::testing::api_ip(), "api.example.com");
    pins.pin(secrets::testing::evil_ip(), "evil.example");
    const bool evil = sni == "evil.example";
    bridge = std::make_unique<H2Bridge>(
        set, secrets::testing::tls_context(&pins, sni, evil ? secrets::testing::evil_ip() : secrets::testing::api_ip()),
        &forms);
  }

  // Moves bytes until nobody has anything to say.
  void pump() {
    for (int round = 0; round < 50; ++round) {
      std::string g, u, to_bridge_from_guest, to_bridge_from_upstream;
      guest.pending_output(to_bridge_from_guest);
      if (!to_bridge_from_guest.empty()) bridge->from_guest(to_bridge_from_guest);
      upstream.pending_output(to_bridge_from_upstream);
      if (!to_bridge_from_upstream.empty()) {
        bridge->from_upstream(to_bridge_from_upstream);
        bridge->flush_responses();
      }
      bridge->take_output(g, u);
      for (H2Notice& n : bridge->take_notices()) notices.push_back(std::move(n));
      if (!u.empty()) {
        upstream_wire += u;
        std::vector<Event> ev;
        upstream.receive(u, ev);
        for (Event& e : ev) on_upstream(e);
      }
      if (!g.empty()) {
        std::vector<Event> ev;
        guest.receive(g, ev);
        for (Event& e : ev) guest_events.push_back(std::move(e));
      }
      if (g.empty() && u.empty() && to_bridge_from_guest.empty() && to_bridge_from_upstream.empty()) return;
    }
    ADD_FAILURE() << "the bridge did not settle";
  }

  // The upstream: records each request and answers it (echo: the Authorization back in a
  // header and in DATA; grpc: trailers).
  void on_upstream(Event& e) {
    if (e.kind == Event::Kind::kHeaders) requests[e.stream].head = e.headers;
    if (e.kind == Event::Kind::kData) {
      requests[e.stream].body += e.data;
      upstream.consumed(e.stream, e.data.size());
    }
    if (e.kind == Event::Kind::kTrailers) requests[e.stream].trailers = e.headers;
    if (!e.end_stream) return;
    Received& r = requests[e.stream];
    r.complete = true;
    const std::string auth = value_of(r.head, "authorization");
    Headers head = {{":status", "200"}, {"x-echo", auth}};
    if (!response_coding.empty()) head.push_back({"content-encoding", response_coding});
    upstream.submit_response(e.stream, head, false);
    upstream.submit_data(e.stream, "echo " + auth + " and " + r.body, false);
    upstream.submit_trailers(e.stream, {{"grpc-status", "0"}, {"grpc-message", "ok " + auth}});
  }

  static std::string value_of(const Headers& h, std::string_view name) {
    for (const Header& x : h) {
      if (x.name == name) return x.value;
    }
    return {};
  }
  static const Header* find(const Headers& h, std::string_view name) {
    for (const Header& x : h) {
      if (x.name == name) return &x;
    }
    return nullptr;
  }

  std::int32_t request(std::string authority, Headers extra, std::string body = {}) {
    Headers h = {{":method", body.empty() ? "GET" : "POST"}, {":scheme", "https"}, {":authority", authority}, {":path", "/v1"}};
    for (Header& x : extra) h.push_back(std::move(x));
    const auto r = guest.submit_request(h, body.empty());
    EXPECT_EQ(r.error, http::h2::H2Error::kNone);
    if (!body.empty()) guest.submit_data(r.stream, body, true);
    return r.stream;
  }

  // What the guest got on `stream`: its response head, body, trailers, reset code.
  struct GuestView {
    Headers head, trailers;
    std::string body;
    bool reset = false;
    std::uint32_t code = 0;
  };
  GuestView seen(std::int32_t stream) const {
    GuestView v;
    for (const Event& e : guest_events) {
      if (e.stream != stream) continue;
      if (e.kind == Event::Kind::kHeaders) v.head = e.headers;
      if (e.kind == Event::Kind::kData) v.body += e.data;
      if (e.kind == Event::Kind::kTrailers) v.trailers = e.headers;
      if (e.kind == Event::Kind::kReset) {
        v.reset = true;
        v.code = e.code;
      }
    }
    return v;
  }
  int count(H2Notice::Kind kind) const {
    return static_cast<int>(std::count_if(notices.begin(), notices.end(), [&](const H2Notice& n) { return n.kind == kind; }));
  }

  struct Received {
    Headers head, trailers;
    std::string body;
    bool complete = false;
  };
  FakePins pins;
  secrets::SecretSet set;
  http::ScrubForms forms;
  Session guest, upstream;
  std::unique_ptr<H2Bridge> bridge;
  std::map<std::int32_t, Received> requests;  // by upstream stream id
  std::vector<Event> guest_events;
  std::vector<H2Notice> notices;
  std::string upstream_wire;
  std::string response_coding;
};

TEST(H2Bridge, HeaderSubstitutedNeverIndexedAndEchoesScrubbed) {
  Harness h;
  const std::int32_t s = h.request("api.example.com", {{"authorization", "Bearer $MSB_KEY"}});
  h.pump();
  ASSERT_EQ(h.requests.size(), 1u);
  const Harness::Received& r = h.requests.begin()->second;
  const Header* auth = Harness::find(r.head, "authorization");
  ASSERT_NE(auth, nullptr);
  EXPECT_TRUE(auth->value == "Bearer " + kKey);
  EXPECT_TRUE(auth->never_index) << "a substituted value must travel as a never-indexed literal";
  EXPECT_EQ(Harness::value_of(r.head, "accept-encoding"), "identity");
  EXPECT_EQ(h.count(H2Notice::Kind::kSubstitution), 1);
  const auto v = h.seen(s);
  EXPECT_FALSE(v.reset);
  EXPECT_EQ(Harness::value_of(v.head, ":status"), "200");
  // The echoes (response header, DATA, gRPC trailer) reach the guest masked.
  EXPECT_EQ(Harness::value_of(v.head, "x-echo"), "Bearer " + std::string(kKey.size(), '*'));
  EXPECT_EQ(v.body.find(kKey), std::string::npos);
  EXPECT_NE(v.body.find(std::string(kKey.size(), '*')), std::string::npos);
  EXPECT_EQ(Harness::value_of(v.trailers, "grpc-status"), "0");
  EXPECT_EQ(Harness::value_of(v.trailers, "grpc-message").find(kKey), std::string::npos);
  EXPECT_EQ(h.count(H2Notice::Kind::kScrubbed), 1);
}

TEST(H2Bridge, OneStreamOfSeveralWithAMismatchedAuthorityIsResetAlone) {
  Harness h;
  const std::int32_t a = h.request("api.example.com", {{"authorization", "Bearer $MSB_KEY"}});
  const std::int32_t bad = h.request("evil.example", {{"authorization", "Bearer $MSB_KEY"}});
  const std::int32_t c = h.request("api.example.com", {{"x-n", "3"}});
  h.pump();
  EXPECT_EQ(h.requests.size(), 2u);  // the mismatched stream never reached the upstream
  EXPECT_TRUE(h.seen(bad).reset);
  EXPECT_EQ(h.seen(bad).code, static_cast<std::uint32_t>(ErrorCode::kCancel));
  EXPECT_FALSE(h.seen(a).reset);
  EXPECT_FALSE(h.seen(c).reset);
  EXPECT_EQ(Harness::value_of(h.seen(c).head, ":status"), "200");
  ASSERT_EQ(h.count(H2Notice::Kind::kBlocked), 1);
  for (const H2Notice& n : h.notices) {
    if (n.kind != H2Notice::Kind::kBlocked) continue;
    EXPECT_EQ(n.stream, bad);
    EXPECT_TRUE(n.block->violation);
    EXPECT_EQ(n.block->secret_env, "KEY");
  }
  EXPECT_FALSE(h.bridge->terminated());
}

TEST(H2Bridge, HpackReuseOfASubstitutedHeaderIsGatedPerStream) {
  // The guest's encoder indexes `authorization: Bearer $MSB_KEY` on the first stream and sends
  // only its table index on the next: the bridge decodes it and gates that stream on its own.
  Harness h;
  const std::int32_t first = h.request("api.example.com", {{"authorization", "Bearer $MSB_KEY"}});
  h.pump();
  const std::size_t wire_before = h.upstream_wire.size();
  const std::int32_t reuse = h.request("evil.example", {{"authorization", "Bearer $MSB_KEY"}});
  const std::int32_t again = h.request("api.example.com", {{"authorization", "Bearer $MSB_KEY"}});
  h.pump();
  EXPECT_FALSE(h.seen(first).reset);
  EXPECT_TRUE(h.seen(reuse).reset);
  EXPECT_FALSE(h.seen(again).reset);
  ASSERT_EQ(h.requests.size(), 2u);
  for (const auto& [id, r] : h.requests) {
    const Header* auth = Harness::find(r.head, "authorization");
    ASSERT_NE(auth, nullptr);
    EXPECT_TRUE(auth->never_index);
    EXPECT_TRUE(auth->value == "Bearer " + kKey);
  }
  // never_index is set by the decoder only for the never-indexed literal representation: the
  // upstream's table never held the value, for either stream.
  EXPECT_GT(h.upstream_wire.size(), wire_before);
}

TEST(H2Bridge, HeaderBlockSplitOverContinuationIsGatedWhole) {
  Harness h;
  // 40 KiB of headers: more than one 16 KiB frame, so HEADERS + CONTINUATION.
  Headers pad;
  for (int i = 0; i < 10; ++i) pad.push_back({"x-pad-" + std::to_string(i), std::string(4000, 'a' + i)});
  Headers allowed = pad, denied = pad;
  allowed.push_back({"authorization", "Bearer $MSB_KEY"});
  denied.push_back({"authorization", "Bearer $MSB_KEY"});
  const std::int32_t ok = h.request("api.example.com", allowed);
  const std::int32_t bad = h.request("evil.example", denied);
  h.pump();
  EXPECT_FALSE(h.seen(ok).reset);
  EXPECT_TRUE(h.seen(bad).reset);
  ASSERT_EQ(h.requests.size(), 1u);
  EXPECT_TRUE(Harness::value_of(h.requests.begin()->second.head, "authorization") == "Bearer " + kKey);
}

TEST(H2Bridge, DisallowedHostSeesThePlaceholderAsAViolation) {
  Harness h(ViolationAction::kBlockAndLog, "evil.example");
  const std::int32_t s = h.request("evil.example", {{"x-token", "$MSB_KEY"}});
  const std::int32_t clean = h.request("evil.example", {{"x-token", "nothing"}});
  h.pump();
  EXPECT_TRUE(h.seen(s).reset);
  EXPECT_FALSE(h.seen(clean).reset);
  EXPECT_EQ(h.count(H2Notice::Kind::kBlocked), 1);
  EXPECT_EQ(h.upstream_wire.find("$MSB_KEY"), std::string::npos);
}

TEST(H2Bridge, BlockAndTerminateEndsTheConnection) {
  Harness h(ViolationAction::kBlockAndTerminate, "evil.example");
  h.request("evil.example", {{"x-token", "$MSB_KEY"}});
  h.pump();
  EXPECT_TRUE(h.bridge->terminated());
}

TEST(H2Bridge, BodyPlaceholderSplitAcrossDataFramesIsSubstituted) {
  Harness h;
  Headers head = {{":method", "POST"}, {":scheme", "https"}, {":authority", "api.example.com"}, {":path", "/v1"},
                  {"content-length", "29"}};
  const auto r = h.guest.submit_request(head, false);
  h.guest.submit_data(r.stream, "{\"k\":\"$MSB_BO", false);
  h.pump();
  h.guest.submit_data(r.stream, "DY\",\"pad\":12345}", true);
  h.pump();
  ASSERT_EQ(h.requests.size(), 1u);
  const Harness::Received& got = h.requests.begin()->second;
  EXPECT_TRUE(got.complete);
  EXPECT_TRUE(got.body == "{\"k\":\"" + kBody + "\",\"pad\":12345}");
  EXPECT_EQ(Harness::find(got.head, "content-length"), nullptr) << "the rewritten length differs: dropped";
  EXPECT_EQ(h.upstream_wire.find("$MSB_BO"), std::string::npos);
}

TEST(H2Bridge, BodyViolationSplitAcrossDataFramesResetsTheStream) {
  Harness h(ViolationAction::kBlockAndLog, "evil.example");
  Headers head = {{":method", "POST"}, {":scheme", "https"}, {":authority", "evil.example"}, {":path", "/v1"}};
  const auto r = h.guest.submit_request(head, false);
  h.guest.submit_data(r.stream, "data=$MSB_K", false);
  h.pump();
  h.guest.submit_data(r.stream, "EY&x=1", true);
  h.pump();
  EXPECT_TRUE(h.seen(r.stream).reset);
  EXPECT_EQ(h.upstream_wire.find("$MSB_K"), std::string::npos) << "no part of the placeholder left";
}

TEST(H2Bridge, CompressedResponseWhereValuesFlowedIsNotForwarded) {
  Harness h;
  h.response_coding = "gzip";
  const std::int32_t s = h.request("api.example.com", {{"authorization", "Bearer $MSB_KEY"}});
  h.pump();
  EXPECT_TRUE(h.seen(s).reset);
  EXPECT_EQ(h.count(H2Notice::Kind::kResponseBlocked), 1);
}

}  // namespace
}  // namespace airlock::gateway
