// The HTTP/2 bridge between a real HTTP/2 client (the guest) and a real HTTP/2 server (the
// upstream), both nghttp2 sessions: per-stream gates, never-indexed substitutions, the attacks of
// issue 13 (one stream of several with a mismatched :authority, a disallowed authority, HPACK
// dynamic-table reuse, CONTINUATION, echoes in response headers and DATA). Values are fake.
#include "gateway/h2_bridge.hpp"
#include "gateway/retired_secrets.hpp"

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

// A snapshot as Core::replace_secrets makes one (retired bindings and their names included).
std::shared_ptr<const SecretsSnapshot> snapshot_of(std::shared_ptr<const secrets::SecretSet> set, std::uint64_t generation,
                                                   std::vector<std::string> retired = {}) {
  auto s = std::make_shared<SecretsSnapshot>();
  s->set = std::move(set);
  if (!s->set->secrets().empty()) s->scrub_forms.emplace(s->set->secrets());
  s->generation = generation;
  s->retired = std::move(retired);
  return s;
}

struct Harness {
  explicit Harness(ViolationAction action = ViolationAction::kBlockAndLog, std::string sni = "api.example.com")
      : snapshot(snapshot_of(std::make_shared<secrets::SecretSet>(
                                   make_secrets({{"KEY", kKey, {"api.example.com"}},
                                                 {"BODY", kBody, {"api.example.com"}, body_scope()}}),
                                   action),
                               1)),
        guest(Role::kClient, {}),
        upstream(Role::kServer, {}) {
    pins.pin(secrets::testing::api_ip(), "api.example.com");
    pins.pin(secrets::testing::evil_ip(), "evil.example");
    const bool evil = sni == "evil.example";
    bridge = std::make_unique<H2Bridge>(
        snapshot, secrets::testing::tls_context(&pins, sni, evil ? secrets::testing::evil_ip() : secrets::testing::api_ip()));
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
    if (hold_responses) {
      held.push_back(e.stream);
      return;
    }
    answer(e.stream);
  }

  // Answers the requests held back (hold_responses), in order.
  void release_held() {
    for (std::int32_t id : std::exchange(held, {})) answer(id);
  }

  void answer(std::int32_t stream) {
    Received& r = requests[stream];
    const std::string auth = value_of(r.head, "authorization");
    Headers head = {{":status", "200"}, {"x-echo", auth}};
    if (malformed_response) head.push_back({"x-bad", "trailing space "});
    if (!response_coding.empty()) head.push_back({response_coding_header, response_coding});
    upstream.submit_response(stream, head, false);
    upstream.submit_data(stream, "echo " + auth + " and " + r.body + extra_echo, false);
    // (A field value may not end in whitespace: "ok:" + an empty auth is still well formed.)
    upstream.submit_trailers(stream, {{"grpc-status", "0"}, {"grpc-message", "ok:" + auth}});
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
  std::shared_ptr<const SecretsSnapshot> snapshot;
  Session guest, upstream;
  std::unique_ptr<H2Bridge> bridge;
  std::map<std::int32_t, Received> requests;  // by upstream stream id
  std::vector<Event> guest_events;
  std::vector<H2Notice> notices;
  std::string upstream_wire;
  std::string response_coding;
  std::string response_coding_header = "content-encoding";
  bool malformed_response = false;
  bool hold_responses = false;  // requests are answered only at release_held()
  std::vector<std::int32_t> held;
  std::string extra_echo;  // appended to every response body
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

TEST(H2Bridge, AStreamingRequestIsNotStalledByItsHeldTail) {
  // Client streaming: a message whose last bytes might begin a placeholder form is held while
  // more may follow; once the guest pauses it leaves (no value is in it), and detection still
  // sees what follows.
  Harness h(ViolationAction::kBlockAndLog, "evil.example");
  Headers head = {{":method", "POST"}, {":scheme", "https"}, {":authority", "evil.example"}, {":path", "/stream"}};
  const auto r = h.guest.submit_request(head, false);
  h.guest.submit_data(r.stream, "first message cost: $MSB_", false);
  h.pump();
  ASSERT_EQ(h.requests.size(), 1u);
  const std::string before = h.requests.begin()->second.body;
  EXPECT_EQ(before, "first message cost: ") << "the tail is held while more may come";
  h.bridge->flush_requests();
  h.pump();
  EXPECT_EQ(h.requests.begin()->second.body, "first message cost: $MSB_");
  EXPECT_FALSE(h.seen(r.stream).reset);
  h.guest.submit_data(r.stream, "KEY and the end", true);
  h.pump();
  EXPECT_TRUE(h.seen(r.stream).reset) << "the placeholder completed by the next message is a violation";
}

TEST(H2Bridge, CompressedResponseWhereValuesFlowedIsNotForwarded) {
  Harness h;
  h.response_coding = "gzip";
  const std::int32_t s = h.request("api.example.com", {{"authorization", "Bearer $MSB_KEY"}});
  h.pump();
  EXPECT_TRUE(h.seen(s).reset);
  EXPECT_EQ(h.count(H2Notice::Kind::kResponseBlocked), 1);
}

TEST(H2Bridge, GrpcCompressedResponseWhereValuesFlowedIsNotForwarded) {
  // gRPC compresses messages inside identity DATA (grpc-encoding): unreadable for the scrubber.
  Harness h;
  h.response_coding_header = "grpc-encoding";
  h.response_coding = "gzip";
  const std::int32_t s = h.request("api.example.com", {{"authorization", "Bearer $MSB_KEY"},
                                                       {"grpc-accept-encoding", "gzip"}});
  h.pump();
  ASSERT_EQ(h.requests.size(), 1u);
  EXPECT_EQ(Harness::value_of(h.requests.begin()->second.head, "grpc-accept-encoding"), "identity");
  EXPECT_TRUE(h.seen(s).reset);
  EXPECT_EQ(h.count(H2Notice::Kind::kResponseBlocked), 1);
}

TEST(H2Bridge, MalformedResponseResetsTheGuestStreamNotHangs) {
  // The upstream's client session refuses the response head (a value ending in whitespace,
  // RFC 9113 §8.2.1) and resets the stream as it writes: the guest's stream is reset too, and
  // the others go on.
  Harness h;
  h.malformed_response = true;
  const std::int32_t s = h.request("api.example.com", {{"x-n", "1"}});
  h.pump();
  EXPECT_TRUE(h.seen(s).reset);
  h.malformed_response = false;
  const std::int32_t next = h.request("api.example.com", {{"x-n", "2"}});
  h.pump();
  EXPECT_FALSE(h.seen(next).reset);
  EXPECT_EQ(Harness::value_of(h.seen(next).head, ":status"), "200");
  EXPECT_EQ(h.bridge->open_streams(), 0u) << "closed streams leave no state behind";
}

// Issue 17 on HTTP/2: a reload between two streams of one connection. The stream opened before
// it keeps its value and its response is still masked; the stream opened after it carries the
// new value; a secret the reload removed is a violation there; every response is scrubbed for
// the newest values too; the old values go once no stream needs them.
// Closed streams' states (their gates) serve later streams of the connection, with gates 1-3
// decided once per connection: a later stream aimed at another authority, or with a host field
// that disagrees with its :authority, is still refused, on every reuse.
TEST(H2Bridge, AReusedStreamStateStillGatesALaterStreamsAuthority) {
  Harness h;
  const std::int32_t first = h.request("api.example.com", {{"authorization", "Bearer $MSB_KEY"}});
  h.pump();
  ASSERT_EQ(h.requests.size(), 1u);
  EXPECT_FALSE(h.seen(first).reset);
  EXPECT_EQ(h.bridge->open_streams(), 0u);
  ASSERT_EQ(h.bridge->spare_streams(), 1u) << "the closed stream's state was not kept for reuse";
  std::vector<std::int32_t> refused;
  for (int round = 0; round < 3; ++round) {
    refused.push_back(h.request("evil.example", {{"authorization", "Bearer $MSB_KEY"}}));
    h.pump();
    refused.push_back(h.request("api.example.com", {{"host", "evil.example"}, {"authorization", "Bearer $MSB_KEY"}}));
    h.pump();
    const std::int32_t ok = h.request("api.example.com", {{"authorization", "Bearer $MSB_KEY"}});
    h.pump();
    EXPECT_FALSE(h.seen(ok).reset);
  }
  for (const std::int32_t id : refused) EXPECT_TRUE(h.seen(id).reset) << "stream " << id;
  EXPECT_EQ(h.requests.size(), 4u) << "a refused stream reached the upstream";
  for (const auto& [id, r] : h.requests) {
    EXPECT_TRUE(Harness::value_of(r.head, "authorization") == "Bearer " + kKey);
    EXPECT_EQ(Harness::value_of(r.head, ":authority"), "api.example.com");
  }
  EXPECT_EQ(h.count(H2Notice::Kind::kBlocked), 3);  // the host mismatch is refused by the session
  EXPECT_EQ(h.count(H2Notice::Kind::kSubstitution), 4);
  EXPECT_FALSE(h.bridge->terminated());
}

// A body a stream left undecided (a held possible placeholder start) is not continued by the
// next stream that reuses its state: the guest resets a stream mid-body after "$MSB_BO"; a later
// stream's "DY tail" must not become "$MSB_BODY tail" (a value substituted into it).
TEST(H2Bridge, AReusedStreamStateStartsWithNoHeldBody) {
  Harness h;
  const Headers head = {{":method", "POST"}, {":scheme", "https"}, {":authority", "api.example.com"}, {":path", "/v1"}};
  const auto a = h.guest.submit_request(head, false);
  ASSERT_EQ(a.error, http::h2::H2Error::kNone);
  h.guest.submit_data(a.stream, "x $MSB_BO", false);
  h.pump();
  h.guest.reset(a.stream, ErrorCode::kCancel);
  h.pump();
  EXPECT_EQ(h.bridge->open_streams(), 0u);
  ASSERT_EQ(h.bridge->spare_streams(), 1u);
  const std::int32_t b = h.request("api.example.com", {}, "DY tail");
  h.pump();
  EXPECT_FALSE(h.seen(b).reset);
  ASSERT_EQ(h.requests.size(), 2u);
  EXPECT_EQ(h.requests.rbegin()->second.body, "DY tail");
  EXPECT_EQ(h.upstream_wire.find(kBody), std::string::npos) << "a value went into the later stream";
  EXPECT_EQ(h.count(H2Notice::Kind::kSubstitution), 0);
}

// The request-latency histogram: one observation per answered stream, none for a refused one.
TEST(H2Bridge, EachAnsweredStreamIsReportedOnce) {
  Harness h;
  const std::int32_t a = h.request("api.example.com", {{"authorization", "Bearer $MSB_KEY"}});
  const std::int32_t bad = h.request("evil.example", {{"authorization", "Bearer $MSB_KEY"}});
  const std::int32_t c = h.request("api.example.com", {{"x-n", "3"}});
  h.pump();
  EXPECT_FALSE(h.seen(a).reset);
  EXPECT_TRUE(h.seen(bad).reset);
  EXPECT_FALSE(h.seen(c).reset);
  std::vector<H2Bridge::Clock::time_point> answered;
  h.bridge->take_answered(answered);
  EXPECT_EQ(answered.size(), 2u);
  answered.clear();
  h.bridge->take_answered(answered);
  EXPECT_TRUE(answered.empty()) << "a stream was reported twice";
}

TEST(H2Bridge, AReloadBetweenStreamsGatesTheNewStreamWithTheNewestSecrets) {
  const std::string kNew = "sk-rotated-FAKE-h2";  // (no value a prefix of the other)
  Harness h;
  std::weak_ptr<const SecretsSnapshot> first = h.snapshot;
  h.hold_responses = true;
  const std::int32_t before = h.request("api.example.com", {{"authorization", "Bearer $MSB_KEY"}});
  h.pump();
  ASSERT_EQ(h.requests.size(), 1u);
  const std::int32_t before_up = h.requests.begin()->first;
  EXPECT_TRUE(Harness::value_of(h.requests[before_up].head, "authorization") == "Bearer " + kKey);

  // The reload: KEY rotated, BODY removed (retired, as Core::replace_secrets does it).
  RetiringResult r = retire_removed(*h.snapshot->set, std::make_shared<secrets::SecretSet>(
                                                          make_secrets({{"KEY", kNew, {"api.example.com"}}}),
                                                          ViolationAction::kBlockAndLog));
  ASSERT_EQ(r.retired, std::vector<std::string>{"BODY"});
  h.bridge->use_snapshot(snapshot_of(r.set, 2, r.retired));
  h.snapshot.reset();
  EXPECT_EQ(h.bridge->generation(), 2u);

  const std::int32_t after = h.request("api.example.com", {{"authorization", "Bearer $MSB_KEY"}});
  h.pump();
  ASSERT_EQ(h.requests.size(), 2u);
  const std::int32_t after_up = h.requests.rbegin()->first;
  EXPECT_TRUE(Harness::value_of(h.requests[after_up].head, "authorization") == "Bearer " + kNew)
      << "a stream opened after the reload carries the new value";
  const std::int32_t removed = h.request("api.example.com", {}, "token=$MSB_BODY");
  h.pump();
  EXPECT_TRUE(h.seen(removed).reset) << "a removed secret's placeholder is a violation on a new stream";
  EXPECT_EQ(h.upstream_wire.find("$MSB_BODY"), std::string::npos);
  EXPECT_EQ(h.upstream_wire.find(kBody), std::string::npos);
  ASSERT_EQ(h.count(H2Notice::Kind::kBlocked), 1);
  const auto blocked = std::find_if(h.notices.begin(), h.notices.end(),
                                    [](const H2Notice& n) { return n.kind == H2Notice::Kind::kBlocked; });
  EXPECT_TRUE(blocked->block->violation);
  EXPECT_EQ(blocked->block->secret_env, "BODY");

  // The responses: each echoes its own value, and both echo the other one's too.
  h.extra_echo = " old " + kKey + " new " + kNew;
  EXPECT_FALSE(first.expired()) << "the stream opened before the reload still holds the old values";
  h.release_held();
  h.pump();
  for (const std::int32_t s : {before, after}) {
    const auto v = h.seen(s);
    EXPECT_FALSE(v.reset);
    for (const std::string& value : {kKey, kNew}) {
      EXPECT_EQ(Harness::value_of(v.head, "x-echo").find(value), std::string::npos);
      EXPECT_EQ(v.body.find(value), std::string::npos) << "stream " << s;
      EXPECT_EQ(Harness::value_of(v.trailers, "grpc-message").find(value), std::string::npos);
    }
    EXPECT_NE(v.body.find(std::string(kKey.size(), '*')), std::string::npos);
    EXPECT_NE(v.body.find(std::string(kNew.size(), '*')), std::string::npos);
  }
  EXPECT_EQ(h.bridge->open_streams(), 0u);
  EXPECT_TRUE(first.expired()) << "the old values are let go once no stream needs them";
}

}  // namespace
}  // namespace airlock::gateway
