// StreamScanner: cleartext TCP that is not HTTP. Every placeholder form of every secret is a
// violation, whatever the host; clean bytes pass unchanged; verdicts do not depend on splits.
#include <secrets/engine/engine.hpp>
#include <secrets/engine/matcher.hpp>
#include <secrets/engine/engine_test_util.hpp>

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace airlock::secrets {
namespace {

using testing::FakePins;
using testing::make_secrets;

struct ScanResult {
  Status status;
  std::string out;
  std::optional<Block> block;
};

ScanResult scan(const SecretSet& set, const ConnectionContext& ctx, std::string_view in, std::vector<std::size_t> cuts) {
  StreamScanner sc(set, ctx);
  ScanResult r{Status::kOk, {}, {}};
  std::size_t pos = 0;
  cuts.push_back(in.size());
  for (std::size_t cut : cuts) {
    if (cut < pos) continue;
    r.status = sc.feed(in.substr(pos, cut - pos), r.out);
    pos = cut;
    if (r.status == Status::kBlocked) break;
  }
  if (r.status == Status::kOk) r.status = sc.finish(r.out);
  r.block = sc.blocked();
  return r;
}

class ScannerTest : public ::testing::Test {
 protected:
  FakePins pins;
  SecretSet set{make_secrets({{"KEY", "k-FAKE", {"api.example.com"}, {}}, {"OTHER", "o-FAKE", {"other.example"}, {}}}),
                ViolationAction::kBlock};
  ConnectionContext ctx = [this] {
    pins.pin(testing::api_ip(), "api.example.com");
    ConnectionContext c = testing::tls_context(&pins);
    c.transport = Transport::kOpaque;
    c.sni.clear();
    return c;
  }();
};

TEST_F(ScannerTest, CleanStreamPassesUnchangedAtEverySplit) {
  const std::string in = "PING $5 100% \\n \\u00 %2 end$";
  for (std::size_t cut = 0; cut <= in.size(); ++cut) {
    const ScanResult r = scan(set, ctx, in, {cut});
    ASSERT_EQ(r.status, Status::kOk);
    ASSERT_EQ(r.out, in) << cut;
  }
}

TEST_F(ScannerTest, EveryFormIsAViolationAtEverySplit) {
  const std::vector<std::pair<std::string, std::string>> table = {
      {"SET k $MSB_KEY\r\n", "(raw)"},
      {"SET k %24MSB_KEY\r\n", "(percent-encoded)"},
      {"SET k %24%4d%53%42%5F%4B%45%59\r\n", "(percent-encoded)"},
      {"{\"k\":\"\\u0024MSB_OTHER\"}", "(JSON-escaped)"},
      {"x $MSB_OTHER", "(raw)"},
      {"$MSB_KEY", "(raw)"},
      {"AUTH JE1TQl9LRVk=\r\n", "(base64)"},        // $MSB_KEY
      {"AUTH eCRNU0JfS0VZeQ\r\n", "(base64)"},      // x$MSB_KEYy
      {"AUTH eHgkTVNCX0tFWQ==\r\n", "(base64)"},    // xx$MSB_KEY
  };
  for (const auto& [in, form] : table) {
    for (std::size_t a = 0; a <= in.size(); ++a) {
      for (std::size_t b = a; b <= in.size(); ++b) {
        const ScanResult r = scan(set, ctx, in, {a, b});
        ASSERT_EQ(r.status, Status::kBlocked) << in << " " << a << "," << b;
        ASSERT_TRUE(r.block);
        EXPECT_TRUE(r.block->violation);
        EXPECT_EQ(r.block->location, Location::kStream);
        EXPECT_EQ(r.block->action, ViolationAction::kBlock);
        EXPECT_EQ(r.block->host, "203.0.113.10");
        EXPECT_NE(r.block->reason.find(form), std::string::npos) << r.block->reason;
        EXPECT_EQ(r.block->reason.find("FAKE"), std::string::npos);
        // Nothing of the placeholder went out.
        EXPECT_EQ(r.out.find("$MSB_"), std::string::npos);
        if (form == "(base64)") {
          EXPECT_LE(r.out.size(), 8u);  // at most "AUTH " and the edge characters
        }
      }
    }
  }
}

TEST_F(ScannerTest, TheFirstFormIsReportedWhateverTheSplit) {
  // Forms of two secrets, of both kinds, near each other: the one that starts first is the
  // verdict at every split (the fuzzer found the raw-then-base64 case reported differently).
  const std::vector<std::string> streams = {
      base64_encode("$MSB_KEY") + "$MSB_OTHER@ more",
      "x" + base64_encode("xx$MSB_KEY").substr(0, 9) + "%24MSB_OTHER" + base64_encode("xx$MSB_KEY").substr(9),
      "$MSB_OTHE" + base64_encode("$MSB_KEY") + "R!",
      "$MSB_OTHER then " + base64_encode("$MSB_KEY"),  // raw first, base64 later in the same read
  };
  for (const std::string& in : streams) {
    const ScanResult whole = scan(set, ctx, in, {});
    ASSERT_EQ(whole.status, Status::kBlocked) << in;
    for (std::size_t a = 0; a <= in.size(); ++a) {
      for (std::size_t b = a; b <= in.size(); ++b) {
        const ScanResult r = scan(set, ctx, in, {a, b});
        ASSERT_EQ(r.status, Status::kBlocked) << in << " " << a << "," << b;
        ASSERT_EQ(r.block->secret_env, whole.block->secret_env) << in << " " << a << "," << b;
        ASSERT_EQ(r.block->reason, whole.block->reason) << in << " " << a << "," << b;
      }
    }
  }
}

TEST_F(ScannerTest, HoldsBackAPossiblePlaceholderUntilResolved) {
  StreamScanner sc(set, ctx);
  std::string out;
  ASSERT_EQ(sc.feed("abc $MSB", out), Status::kOk);
  EXPECT_EQ(out, "abc ");
  ASSERT_EQ(sc.feed("!", out), Status::kOk);
  EXPECT_EQ(out, "abc $MSB!");
  ASSERT_EQ(sc.feed(" %24MSB_", out), Status::kOk);
  EXPECT_EQ(out, "abc $MSB! ");
  ASSERT_EQ(sc.finish(out), Status::kOk);
  EXPECT_EQ(out, "abc $MSB! %24MSB_");
}

TEST_F(ScannerTest, BlockedStaysBlocked) {
  StreamScanner sc(set, ctx);
  std::string out;
  ASSERT_EQ(sc.feed("ok ", out), Status::kOk);
  ASSERT_EQ(sc.feed("$MSB_KEY", out), Status::kBlocked);
  EXPECT_EQ(sc.feed("more", out), Status::kBlocked);
  EXPECT_EQ(sc.finish(out), Status::kBlocked);
  EXPECT_EQ(out, "ok ");
  EXPECT_EQ(sc.blocked()->secret_env, "KEY");
}

TEST_F(ScannerTest, SniNamesTheHostWhenKnown) {
  ConnectionContext c = ctx;
  c.sni = "db.example";
  const ScanResult r = scan(set, c, "$MSB_OTHER", {});
  ASSERT_TRUE(r.block);
  EXPECT_EQ(r.block->host, "db.example");
  EXPECT_EQ(r.block->secret_env, "OTHER");
}

TEST_F(ScannerTest, LargeCleanStreamInManyReads) {
  std::string in;
  for (int i = 0; i < 5000; ++i) in += "line " + std::to_string(i) + " costs $" + std::to_string(i % 97) + " or 5%\n";
  std::vector<std::size_t> cuts;
  for (std::size_t c = 7; c < in.size(); c += 4093) cuts.push_back(c);
  const ScanResult r = scan(set, ctx, in, cuts);
  ASSERT_EQ(r.status, Status::kOk);
  EXPECT_EQ(r.out, in);
}

}  // namespace
}  // namespace airlock::secrets
