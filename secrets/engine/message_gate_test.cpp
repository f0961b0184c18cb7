// The protocol-neutral request gate: the same gates as HTTP/1 over a head, body pieces and
// trailers (what an HTTP/2 stream or a WebSocket message stream feeds it). Values are fake.
#include <secrets/engine/message_gate.hpp>

#include <secrets/engine/engine_test_util.hpp>
#include <secrets/engine/matcher.hpp>

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace airlock::secrets {
namespace {

using testing::FakePins;
using testing::make_secrets;
using testing::SecretSpec;

const std::string kKey = "sk-live-FAKE";
const std::string kQk = "q v&1";
const std::string kBk = "body-FAKE";

InjectionScopes scopes(bool headers, bool basic, bool query, bool body) {
  InjectionScopes s;
  s.headers = headers;
  s.basic_auth = basic;
  s.query = query;
  s.body = body;
  return s;
}

struct Fixture {
  Fixture()
      : set(make_secrets({{"KEY", kKey, {"api.example.com"}, scopes(true, true, false, false)},
                          {"QK", kQk, {"api.example.com"}, scopes(false, false, true, false)},
                          {"BK", kBk, {"api.example.com"}, scopes(false, false, false, true)},
                          {"CRLF", "bad\r\nval", {"api.example.com"}, {}}}),
            ViolationAction::kBlockAndLog) {
    pins.pin(testing::api_ip(), "api.example.com");
    pins.pin(testing::evil_ip(), "evil.example");
  }
  ConnectionContext api() const { return testing::tls_context(&pins); }
  ConnectionContext evil() const { return testing::tls_context(&pins, "evil.example", testing::evil_ip()); }
  FakePins pins;
  SecretSet set;
};

Request get(std::string authority, std::vector<Field> headers, std::string target = "/v1/x") {
  Request r;
  r.method = "GET";
  r.authority = std::move(authority);
  r.target = std::move(target);
  r.headers = std::move(headers);
  return r;
}

const Field* find(const std::vector<Field>& fields, std::string_view name) {
  for (const Field& f : fields) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

TEST(MessageGate, HeaderValueSubstitutedAndMarkedSensitive) {
  Fixture fx;
  MessageGate gate(fx.set, fx.api());
  Request r = get("api.example.com", {{"authorization", "Bearer $MSB_KEY"}, {"x-plain", "hello"}});
  ASSERT_EQ(gate.on_headers(r, true), Status::kOk);
  EXPECT_EQ(find(r.headers, "authorization")->value, "Bearer " + kKey);
  EXPECT_TRUE(find(r.headers, "authorization")->sensitive);
  EXPECT_FALSE(find(r.headers, "x-plain")->sensitive);
  const auto subs = gate.take_substitutions();
  ASSERT_EQ(subs.size(), 1u);
  EXPECT_EQ(subs[0].secret_env, "KEY");
  EXPECT_EQ(subs[0].location, Location::kHeader);
  EXPECT_TRUE(gate.values_may_flow());
  // Values may flow: the response must come back in a coding the scrubber reads.
  ASSERT_NE(find(r.headers, "accept-encoding"), nullptr);
  EXPECT_EQ(find(r.headers, "accept-encoding")->value, "identity");
}

TEST(MessageGate, AuthorityNotTheSniIsAViolation) {
  Fixture fx;
  MessageGate gate(fx.set, fx.api());
  Request r = get("evil.example", {{"authorization", "Bearer $MSB_KEY"}});
  ASSERT_EQ(gate.on_headers(r, true), Status::kBlocked);
  ASSERT_TRUE(gate.blocked());
  EXPECT_TRUE(gate.blocked()->violation);
  EXPECT_EQ(gate.blocked()->secret_env, "KEY");
  EXPECT_NE(gate.blocked()->reason.find("authority"), std::string::npos);
  EXPECT_EQ(r.headers[0].value, "Bearer $MSB_KEY");  // untouched
  // Every later event of the request stays blocked.
  std::string out;
  EXPECT_EQ(gate.on_data("x", true, out), Status::kBlocked);
  EXPECT_TRUE(out.empty());
}

TEST(MessageGate, HostFieldDisagreeingWithAuthorityIsAViolation) {
  Fixture fx;
  MessageGate gate(fx.set, fx.api());
  Request r = get("api.example.com", {{"host", "evil.example"}, {"x-key", "$MSB_KEY"}});
  ASSERT_EQ(gate.on_headers(r, true), Status::kBlocked);
  EXPECT_TRUE(gate.blocked()->violation);
}

TEST(MessageGate, HostFieldAloneIsTheAuthority) {
  Fixture fx;
  MessageGate gate(fx.set, fx.api());
  Request r = get("", {{"host", "API.example.com:443"}, {"x-key", "$MSB_KEY"}});
  ASSERT_EQ(gate.on_headers(r, true), Status::kOk);
  EXPECT_EQ(r.headers[1].value, kKey);
}

TEST(MessageGate, NoAuthorityAtAllIsAViolation) {
  Fixture fx;
  MessageGate gate(fx.set, fx.api());
  Request r = get("", {{"x-key", "$MSB_KEY"}});
  EXPECT_EQ(gate.on_headers(r, true), Status::kBlocked);
}

TEST(MessageGate, PathThatIsNotOriginFormIsAViolation) {
  Fixture fx;
  MessageGate gate(fx.set, fx.api());
  Request r = get("api.example.com", {{"x-key", "$MSB_KEY"}}, "https://evil.example/");
  EXPECT_EQ(gate.on_headers(r, true), Status::kBlocked);
}

TEST(MessageGate, DisallowedHostSeesEveryForm) {
  Fixture fx;
  for (const std::string& v : {std::string("$MSB_KEY"), std::string("%24MSB_KEY"), std::string("\\u0024MSB_KEY"),
                               base64_encode("xx$MSB_KEYyy")}) {
    MessageGate gate(fx.set, fx.evil());
    Request r = get("evil.example", {{"x-data", v}});
    EXPECT_EQ(gate.on_headers(r, true), Status::kBlocked) << v;
    EXPECT_TRUE(gate.blocked() && gate.blocked()->violation) << v;
  }
  // In the query, the method and Basic credentials too.
  MessageGate q(fx.set, fx.evil());
  Request rq = get("evil.example", {}, "/?k=$MSB_QK");
  EXPECT_EQ(q.on_headers(rq, true), Status::kBlocked);
  EXPECT_EQ(q.blocked()->location, Location::kQuery);
  MessageGate b(fx.set, fx.evil());
  Request rb = get("evil.example", {{"authorization", "Basic " + base64_encode("user:$MSB_KEY")}});
  EXPECT_EQ(b.on_headers(rb, true), Status::kBlocked);
  EXPECT_EQ(b.blocked()->location, Location::kBasicAuth);
}

TEST(MessageGate, BasicCredentialsSubstituted) {
  Fixture fx;
  MessageGate gate(fx.set, fx.api());
  Request r = get("api.example.com", {{"authorization", "Basic " + base64_encode("user:$MSB_KEY")}});
  ASSERT_EQ(gate.on_headers(r, true), Status::kOk);
  EXPECT_EQ(r.headers[0].value, "Basic " + base64_encode("user:" + kKey));
  EXPECT_TRUE(r.headers[0].sensitive);
}

TEST(MessageGate, QuerySubstitutedPercentEncoded) {
  Fixture fx;
  MessageGate gate(fx.set, fx.api());
  Request r = get("api.example.com", {}, "/search?k=$MSB_QK&x=$MSB_KEY");
  ASSERT_EQ(gate.on_headers(r, true), Status::kOk);
  EXPECT_EQ(r.target, "/search?k=q%20v%261&x=$MSB_KEY");  // KEY has no query scope
  EXPECT_TRUE(r.target_sensitive);
}

TEST(MessageGate, ValueWithCrLfNeverGoesIntoAHeader) {
  Fixture fx;
  MessageGate gate(fx.set, fx.api());
  Request r = get("api.example.com", {{"x-v", "$MSB_CRLF"}});
  ASSERT_EQ(gate.on_headers(r, true), Status::kBlocked);
  EXPECT_FALSE(gate.blocked()->violation);
}

TEST(MessageGate, BodyPlaceholderSplitAcrossPiecesIsSubstitutedAndLengthDropped) {
  Fixture fx;
  MessageGate gate(fx.set, fx.api());
  Request r = get("api.example.com", {{"content-length", "22"}, {"content-type", "application/json"}});
  r.method = "POST";
  ASSERT_EQ(gate.on_headers(r, false), Status::kOk);
  EXPECT_EQ(find(r.headers, "content-length"), nullptr);
  EXPECT_TRUE(gate.length_dropped());
  std::string out;
  const std::string body = "{\"k\":\"$MSB_BK\",\"n\":1}";
  for (std::size_t cut = 0; cut <= body.size(); ++cut) {
    MessageGate g(fx.set, fx.api());
    Request rr = r;
    ASSERT_EQ(g.on_headers(rr, false), Status::kOk);
    std::string o;
    ASSERT_EQ(g.on_data(std::string_view(body).substr(0, cut), false, o), Status::kOk);
    // Nothing of a placeholder's prefix leaves before it is decided.
    EXPECT_EQ(o.find("$MSB_B"), std::string::npos) << cut;
    ASSERT_EQ(g.on_data(std::string_view(body).substr(cut), true, o), Status::kOk);
    EXPECT_EQ(o, "{\"k\":\"" + kBk + "\",\"n\":1}") << cut;
    EXPECT_EQ(g.take_substitutions().size(), 1u);
  }
}

TEST(MessageGate, BodyViolationSplitAcrossPiecesIsFoundBeforeItLeaves) {
  Fixture fx;
  const std::string body = "data=$MSB_KEY&more";  // KEY has no body scope: to evil it is a violation
  for (std::size_t cut = 0; cut <= body.size(); ++cut) {
    MessageGate g(fx.set, fx.evil());
    Request r = get("evil.example", {});
    r.method = "POST";
    ASSERT_EQ(g.on_headers(r, false), Status::kOk);
    std::string o;
    const Status first = g.on_data(std::string_view(body).substr(0, cut), false, o);
    const Status second = first == Status::kOk ? g.on_data(std::string_view(body).substr(cut), true, o) : first;
    EXPECT_EQ(second, Status::kBlocked) << cut;
    EXPECT_EQ(o.find("$MSB_KEY"), std::string::npos) << cut;
    EXPECT_EQ(g.blocked()->location, Location::kBody);
  }
}

TEST(MessageGate, ReleasedTailStillEndsInAViolation) {
  // A streaming body paused after a placeholder's first bytes: they may leave (guest bytes, no
  // value), the rest of the placeholder still blocks the request.
  Fixture fx;
  MessageGate g(fx.set, fx.evil());
  Request r = get("evil.example", {});
  r.method = "POST";
  ASSERT_EQ(g.on_headers(r, false), Status::kOk);
  std::string o;
  ASSERT_EQ(g.on_data("message one; data=$MSB_K", false, o), Status::kOk);
  EXPECT_EQ(o.find("$MSB_K"), std::string::npos);  // held until decided...
  g.release_held(o);
  EXPECT_EQ(o, "message one; data=$MSB_K");  // ...or until the guest pauses
  EXPECT_EQ(g.on_data("EY and more", true, o), Status::kBlocked);
  EXPECT_TRUE(g.blocked()->violation);
}

TEST(MessageGate, ABodyBeingRewrittenKeepsItsCarry) {
  Fixture fx;
  MessageGate g(fx.set, fx.api());
  Request r = get("api.example.com", {});
  r.method = "POST";
  ASSERT_EQ(g.on_headers(r, false), Status::kOk);
  std::string o;
  ASSERT_EQ(g.on_data("v=$MSB_B", false, o), Status::kOk);
  g.release_held(o);
  EXPECT_EQ(o, "v=");
  ASSERT_EQ(g.on_data("K", true, o), Status::kOk);
  EXPECT_EQ(o, "v=" + kBk);
}

TEST(MessageGate, PassthroughBodyLeavesUnchanged) {
  Fixture fx;
  MessageGate g(fx.set, fx.evil());
  Request r = get("evil.example", {{"content-length", "11"}});
  r.method = "POST";
  ASSERT_EQ(g.on_headers(r, false), Status::kOk);
  EXPECT_NE(find(r.headers, "content-length"), nullptr);
  std::string o;
  ASSERT_EQ(g.on_data("hello ", false, o), Status::kOk);
  ASSERT_EQ(g.on_data("world", true, o), Status::kOk);
  EXPECT_EQ(o, "hello world");
  EXPECT_FALSE(g.values_may_flow());
}

TEST(MessageGate, BodyInjectionOverTheCapIsBlocked) {
  Fixture fx;
  MessageGate g(fx.set, fx.api());
  Request r = get("api.example.com", {{"content-length", std::to_string(kDefaultMaxBodyBytes + 1)}});
  r.method = "POST";
  ASSERT_EQ(g.on_headers(r, false), Status::kBlocked);
  EXPECT_FALSE(g.blocked()->violation);
}

TEST(MessageGate, UnknownContentEncodingWithInjectionDueIsBlocked) {
  Fixture fx;
  MessageGate g(fx.set, fx.api());
  Request r = get("api.example.com", {{"content-encoding", "compress"}});
  r.method = "POST";
  EXPECT_EQ(g.on_headers(r, false), Status::kBlocked);
}

TEST(MessageGate, TrailersAreScanned) {
  Fixture fx;
  MessageGate g(fx.set, fx.evil());
  Request r = get("evil.example", {{"te", "trailers"}});
  r.method = "POST";
  ASSERT_EQ(g.on_headers(r, false), Status::kOk);
  std::string o;
  ASSERT_EQ(g.on_data("abc", false, o), Status::kOk);
  std::vector<Field> trailers = {{"grpc-meta", "$MSB_KEY"}};
  EXPECT_EQ(g.on_trailers(trailers, o), Status::kBlocked);
  EXPECT_EQ(g.blocked()->location, Location::kTrailer);
}

TEST(MessageGate, MessageStreamKeepsTheDecision) {
  Fixture fx;
  MessageGate g(fx.set, fx.api());
  Request r = get("api.example.com", {});
  ASSERT_EQ(g.on_headers(r, false), Status::kOk);
  std::string o;
  ASSERT_EQ(g.on_data("first $MSB_BK", true, o), Status::kOk);
  EXPECT_EQ(o, "first " + kBk);
  g.next_message();
  o.clear();
  ASSERT_EQ(g.on_data("second $MSB_B", false, o), Status::kOk);
  ASSERT_EQ(g.on_data("K", true, o), Status::kOk);
  EXPECT_EQ(o, "second " + kBk);
}

// A gate reused for the next request of its connection (an HTTP/2 bridge keeps closed streams'
// gates): the connection-level gates stay cached, but the authority, host and pins are decided
// for each request anew, and nothing of the last request's state carries over.
TEST(MessageGate, NextRequestDecidesTheAuthorityAgain) {
  Fixture fx;
  for (const char* authority : {"evil.example", "api.example.com.evil.example", "evil.example:443", ""}) {
    MessageGate g(fx.set, fx.api());
    for (int i = 0; i < 2; ++i) {  // gates 1-3 cached by the first request, used by the second
      Request ok = get("api.example.com", {{"authorization", "Bearer $MSB_KEY"}});
      ASSERT_EQ(g.on_headers(ok, true), Status::kOk);
      EXPECT_EQ(find(ok.headers, "authorization")->value, "Bearer " + kKey);
      EXPECT_EQ(g.take_substitutions().size(), 1u);
      ASSERT_TRUE(g.next_request());
      EXPECT_FALSE(g.values_may_flow()) << "the last request's verdict carried over";
    }
    Request later = get(authority, {{"authorization", "Bearer $MSB_KEY"}});
    ASSERT_EQ(g.on_headers(later, true), Status::kBlocked) << authority;
    ASSERT_TRUE(g.blocked());
    EXPECT_TRUE(g.blocked()->violation);
    EXPECT_EQ(later.headers[0].value, "Bearer $MSB_KEY");
    EXPECT_TRUE(g.take_substitutions().empty());
    EXPECT_FALSE(g.next_request()) << "a gate that blocked must not serve another request";
  }
  // A host field that disagrees with the authority, on a reused gate.
  MessageGate g(fx.set, fx.api());
  Request ok = get("api.example.com", {{"x-key", "$MSB_KEY"}});
  ASSERT_EQ(g.on_headers(ok, true), Status::kOk);
  ASSERT_TRUE(g.next_request());
  Request host = get("api.example.com", {{"host", "evil.example"}, {"x-key", "$MSB_KEY"}});
  EXPECT_EQ(g.on_headers(host, true), Status::kBlocked);
  EXPECT_EQ(host.headers[1].value, "$MSB_KEY");
}

TEST(MessageGate, NextRequestStartsANewBody) {
  Fixture fx;
  MessageGate g(fx.set, fx.api());
  // A body injection, left with a held carry (a placeholder's possible start) when the stream ends.
  Request post = get("api.example.com", {{"content-length", "30"}});
  post.method = "POST";
  ASSERT_EQ(g.on_headers(post, false), Status::kOk);
  EXPECT_TRUE(g.length_dropped());
  std::string o;
  ASSERT_EQ(g.on_data("x $MSB_B", false, o), Status::kOk);
  EXPECT_EQ(o.find("$MSB_B"), std::string::npos);
  ASSERT_TRUE(g.next_request());
  // The next request: a GET with no body; then one whose body is passed through as it is.
  Request next = get("api.example.com", {{"content-length", "5"}});
  next.method = "POST";
  next.headers.push_back({"x-key", "$MSB_KEY"});
  ASSERT_EQ(g.on_headers(next, true), Status::kOk);
  EXPECT_FALSE(g.length_dropped());
  EXPECT_NE(find(next.headers, "content-length"), nullptr);
  o.clear();
  EXPECT_EQ(g.on_data("K", true, o), Status::kBlocked) << "data after an end_stream head";
}

TEST(MessageGate, NextRequestAfterABodyPassesTheNextBodyUnchanged) {
  Fixture fx;
  MessageGate g(fx.set, fx.evil());
  Request post = get("evil.example", {});
  post.method = "POST";
  ASSERT_EQ(g.on_headers(post, false), Status::kOk);
  std::string o;
  ASSERT_EQ(g.on_data("plain $MSB_", false, o), Status::kOk);  // a carry held back
  ASSERT_TRUE(g.next_request());
  Request again = get("evil.example", {});
  again.method = "POST";
  ASSERT_EQ(g.on_headers(again, false), Status::kOk);
  o.clear();
  ASSERT_EQ(g.on_data("BK is not here", true, o), Status::kOk) << "the last body's carry was kept";
  EXPECT_EQ(o, "BK is not here");
}

TEST(MessageGate, RestrictResponsesEditsCodingFields) {
  Fixture fx;
  MessageGate g(fx.set, fx.evil());
  Request r = get("evil.example", {{"accept-encoding", "gzip, br"}, {"te", "gzip"}, {"accept-encoding", "zstd"},
                                   {"grpc-accept-encoding", "gzip,deflate"}});
  ASSERT_EQ(g.on_headers(r, true, /*restrict_responses=*/true), Status::kOk);
  ASSERT_EQ(r.headers.size(), 2u);
  EXPECT_EQ(r.headers[0].name, "accept-encoding");
  EXPECT_EQ(r.headers[0].value, "identity");
  EXPECT_EQ(r.headers[1].name, "grpc-accept-encoding");
  EXPECT_EQ(r.headers[1].value, "identity");
}

TEST(MessageGate, SameVerdictAsHttp1ForTheSameRequest) {
  // The one core decides for both codecs: the HTTP/1 rewriter and the neutral gate agree on the
  // verdict and the reason for the same request in both of its shapes.
  Fixture fx;
  struct Case {
    const char* authority;
    const char* header;
  } cases[] = {{"api.example.com", "$MSB_KEY"}, {"evil.example", "$MSB_KEY"}, {"api.example.com", "%24MSB_KEY"},
               {"api.example.com:8443", "$MSB_KEY"}, {"API.EXAMPLE.COM.", "$MSB_KEY"}};
  for (const Case& c : cases) {
    MessageGate g(fx.set, fx.api());
    Request r = get(c.authority, {{"x-k", c.header}});
    const Status neutral = g.on_headers(r, true);
    const std::string h1 = std::string("GET /v1/x HTTP/1.1\r\nHost: ") + c.authority + "\r\nx-k: " + c.header + "\r\n\r\n";
    const auto res = testing::run_rewriter(fx.set, fx.api(), h1);
    EXPECT_EQ(neutral, res.status) << c.authority << " " << c.header;
    if (neutral == Status::kBlocked && res.block) {
      EXPECT_EQ(g.blocked()->reason, res.block->reason);
    }
  }
}

}  // namespace
}  // namespace airlock::secrets
