// A reload hands a connection to a rewriter on the new SecretSet at a request boundary (issue 17):
// at_message_boundary() says when nothing of a request is held or in flight, and
// assume_values_may_flow() carries what the old rewriter let reach the upstream.
#include <secrets/engine/engine.hpp>
#include <secrets/engine/engine_test_util.hpp>

#include <gtest/gtest.h>

#include <string>

namespace airlock::secrets {
namespace {

using testing::FakePins;
using testing::make_secrets;

const std::string kHead = "GET / HTTP/1.1\r\nHost: api.example.com\r\n";

struct Fixture {
  FakePins pins;
  SecretSet set{make_secrets({{"KEY", "sk-FAKE-rebind", {"api.example.com"}}}), ViolationAction::kUnset};
  RequestRewriter rw{set, testing::tls_context(&pins)};
  std::string up, guest;
  // Unpinned: the destination was not resolved for api.example.com, so no secret is eligible.
  explicit Fixture(bool pinned = true) {
    if (pinned) pins.pin(testing::api_ip(), "api.example.com");
  }
  Status feed(const std::string& in) { return rw.feed(in, up, guest); }
};

TEST(RewriterBoundary, BetweenRequestsOnly) {
  Fixture f;
  EXPECT_TRUE(f.rw.at_message_boundary());  // nothing yet
  ASSERT_EQ(f.feed("GET / HT"), Status::kOk);
  EXPECT_FALSE(f.rw.at_message_boundary());  // inside a head
  ASSERT_EQ(f.feed("TP/1.1\r\nHost: api.example.com\r\nContent-Length: 4\r\n\r\nab"), Status::kOk);
  EXPECT_FALSE(f.rw.at_message_boundary());  // inside a body
  ASSERT_EQ(f.feed("cd"), Status::kOk);
  EXPECT_TRUE(f.rw.at_message_boundary());
  ASSERT_EQ(f.feed(kHead + "\r\n"), Status::kOk);
  EXPECT_TRUE(f.rw.at_message_boundary());
}

TEST(RewriterBoundary, NotWhileABodyTailIsHeldBack) {
  // A chunked body whose last bytes could begin a placeholder: held between calls.
  Fixture f;
  ASSERT_EQ(f.feed(kHead + "Transfer-Encoding: chunked\r\n\r\n5\r\nab $M\r\n"), Status::kOk);
  EXPECT_FALSE(f.rw.at_message_boundary());
  ASSERT_EQ(f.feed("0\r\n\r\n"), Status::kOk);
  EXPECT_TRUE(f.rw.at_message_boundary());
}

TEST(RewriterBoundary, NotAroundAnUpgradeNorWhenBlocked) {
  Fixture f;
  ASSERT_EQ(f.feed(kHead + "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n"), Status::kOk);
  EXPECT_FALSE(f.rw.at_message_boundary());  // its answer decides what follows
  ASSERT_EQ(f.rw.upgrade_answered(true, f.up, f.guest), Status::kOk);
  EXPECT_FALSE(f.rw.at_message_boundary());  // opaque from here on

  Fixture refused;
  ASSERT_EQ(refused.feed(kHead + "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n"), Status::kOk);
  ASSERT_EQ(refused.rw.upgrade_answered(false, refused.up, refused.guest), Status::kOk);
  EXPECT_TRUE(refused.rw.at_message_boundary());  // HTTP again

  Fixture blocked;
  ASSERT_EQ(blocked.feed("GET / HTTP/1.1\r\nHost: evil.example\r\nX: $MSB_KEY\r\n\r\n"), Status::kBlocked);
  EXPECT_FALSE(blocked.rw.at_message_boundary());
}

TEST(RewriterBoundary, AssumedFlowOffersOnlyIdentityFromTheFirstRequest) {
  // The connection's earlier requests carried a value under another rewriter: its upstream may
  // echo it, so the responses must stay readable by the scrubber (here no secret is eligible).
  Fixture f(false);
  EXPECT_FALSE(f.rw.values_may_flow());
  f.rw.assume_values_may_flow();
  EXPECT_TRUE(f.rw.values_may_flow());
  ASSERT_EQ(f.feed(kHead + "Accept-Encoding: gzip\r\n\r\n"), Status::kOk);
  EXPECT_EQ(f.up, kHead + "Accept-Encoding: identity\r\n\r\n");

  Fixture fresh(false);  // without it, nothing flowed: the request leaves as it came
  ASSERT_EQ(fresh.feed(kHead + "Accept-Encoding: gzip\r\n\r\n"), Status::kOk);
  EXPECT_EQ(fresh.up, kHead + "Accept-Encoding: gzip\r\n\r\n");
}

}  // namespace
}  // namespace airlock::secrets

namespace airlock::secrets {
namespace {

using testing::FakePins;
using testing::make_secrets;
using testing::SecretSpec;

// Taking over at a boundary changes nothing: a stream fed in reads of every size, with the
// rewriter replaced by a fresh one (same set, flow carried) wherever at_message_boundary() says
// so, gives the bytes, replies and verdict of one rewriter fed the whole stream.
struct Outcome {
  std::string up, guest;
  Status status = Status::kOk;
  int takeovers = 0;
};

Outcome run(const SecretSet& set, const ConnectionContext& ctx, const std::string& stream, std::size_t read,
            bool take_over) {
  Outcome o;
  auto rw = std::make_unique<RequestRewriter>(set, ctx);
  for (std::size_t at = 0; at < stream.size() && o.status == Status::kOk; at += read) {
    if (take_over && at > 0 && rw->at_message_boundary()) {
      const bool flowed = rw->values_may_flow();
      rw = std::make_unique<RequestRewriter>(set, ctx);
      if (flowed) rw->assume_values_may_flow();
      ++o.takeovers;
    }
    o.status = rw->feed(std::string_view(stream).substr(at, read), o.up, o.guest);
  }
  if (o.status == Status::kOk) o.status = rw->finish(o.up);
  return o;
}

TEST(RewriterBoundary, TakingOverAtEveryBoundaryChangesNothing) {
  FakePins pins;
  pins.pin(testing::api_ip(), "api.example.com");
  std::vector<SecretSpec> specs = {{"KEY", "sk-FAKE-rebind", {"api.example.com"}},
                                   {"BODY", "body-FAKE-rebind", {"api.example.com"}, InjectionScopes{true, true, true, true}}};
  SecretSet set(make_secrets(specs), ViolationAction::kUnset);
  const ConnectionContext ctx = testing::tls_context(&pins);
  const std::string h = "Host: api.example.com\r\n";
  const std::vector<std::string> streams = {
      // Keep-alive requests: headers, a query, a buffered body to rewrite, a chunked body, 100-continue.
      "GET /a HTTP/1.1\r\n" + h + "X-Key: $MSB_KEY\r\n\r\n" + "GET /b?k=$MSB_KEY HTTP/1.1\r\n" + h + "\r\n" +
          "POST /c HTTP/1.1\r\n" + h + "Content-Length: 20\r\n\r\n{\"t\":\"$MSB_BODY\"}xx" +
          "POST /d HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n9\r\n$MSB_BODY\r\n0\r\n\r\n" +
          "POST /e HTTP/1.1\r\n" + h + "Expect: 100-continue\r\nContent-Length: 9\r\n\r\n$MSB_BODY" +
          "GET /f HTTP/1.1\r\n" + h + "Accept-Encoding: gzip\r\n\r\n",
      // A violation in the third request: blocked the same way.
      "GET /a HTTP/1.1\r\n" + h + "\r\n" + "GET /b HTTP/1.1\r\n" + h + "X: 1\r\n\r\n" +
          "GET /c HTTP/1.1\r\nHost: evil.example\r\nX: $MSB_KEY\r\n\r\n",
      // Malformed framing after a good request.
      "GET /a HTTP/1.1\r\n" + h + "\r\n" + "POST /b HTTP/1.1\r\n" + h + "Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
  };
  for (std::size_t s = 0; s < streams.size(); ++s) {
    int takeovers = 0;
    for (std::size_t read = 1; read <= streams[s].size(); read += (read < 64 ? 1 : 37)) {
      const Outcome one = run(set, ctx, streams[s], read, false);
      const Outcome many = run(set, ctx, streams[s], read, true);
      ASSERT_EQ(many.status, one.status) << s << " " << read;
      ASSERT_EQ(many.up, one.up) << s << " " << read;
      ASSERT_EQ(many.guest, one.guest) << s << " " << read;
      takeovers += many.takeovers;
    }
    EXPECT_GT(takeovers, 0) << s;  // the property was exercised
  }
}

}  // namespace
}  // namespace airlock::secrets
