// The pure pieces of a reload on open connections (issue 17): secrets a reload removed stay known
// as violations, the response side scrubs for every snapshot a response may echo, and the
// request latency histogram.
#include "gateway/latency_histogram.hpp"
#include "gateway/response_scrubbers.hpp"
#include "gateway/retired_secrets.hpp"

#include <http/content_coding.hpp>
#include <http/response_decoder.hpp>

#include <secrets/engine/engine_test_util.hpp>

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace airlock::gateway {
namespace {

using secrets::testing::FakePins;

// Obviously fake values.
constexpr const char* kOld = "fake-old-value-51c2e9";
constexpr const char* kNew = "fake-new-value-8d07b4";

std::vector<SecretBinding> bindings(const std::vector<std::pair<std::string, std::string>>& env_values) {
  std::vector<SecretBinding> out;
  for (const auto& [env, value] : env_values)
    out.push_back(SecretBuilder().env(env).value(value).allow_host("api.example.com").build());
  return out;
}

std::shared_ptr<const secrets::SecretSet> set_of(const std::vector<std::pair<std::string, std::string>>& env_values) {
  return std::make_shared<secrets::SecretSet>(bindings(env_values), ViolationAction::kUnset);
}

std::shared_ptr<const SecretsSnapshot> snapshot_of(std::uint64_t generation, const std::string& value) {
  auto s = std::make_shared<SecretsSnapshot>();
  s->set = set_of({{"KEY", value}});
  s->scrub_forms.emplace(s->set->secrets());
  s->generation = generation;
  return s;
}

// ---- retired secrets ----

secrets::testing::RunResult send(const secrets::SecretSet& set, const std::string& header) {
  FakePins pins;
  pins.pin(secrets::testing::api_ip(), "api.example.com");
  return secrets::testing::run_rewriter(set, secrets::testing::tls_context(&pins),
                                        "GET / HTTP/1.1\r\nHost: api.example.com\r\n" + header + "\r\n\r\n");
}

TEST(RetiredSecrets, ARemovedSecretsPlaceholderIsAViolationEverywhere) {
  auto previous = set_of({{"KEY", kOld}, {"GONE", kOld}});
  RetiringResult r = retire_removed(*previous, set_of({{"KEY", kNew}}));
  EXPECT_EQ(r.retired, std::vector<std::string>{"GONE"});
  ASSERT_EQ(r.set->secrets().size(), 2u);
  // Even to the host it was allowed for: nothing may carry it any more.
  secrets::testing::RunResult gone = send(*r.set, "X: $MSB_GONE");
  EXPECT_EQ(gone.status, secrets::Status::kBlocked);
  ASSERT_TRUE(gone.block);
  EXPECT_TRUE(gone.block->violation);
  EXPECT_EQ(gone.block->secret_env, "GONE");
  EXPECT_EQ(gone.upstream.find(kOld), std::string::npos);
  // The secret that stays is substituted with its new value.
  secrets::testing::RunResult kept = send(*r.set, "X: $MSB_KEY");
  EXPECT_EQ(kept.status, secrets::Status::kOk);
  EXPECT_NE(kept.upstream.find(kNew), std::string::npos);
  // The retired binding holds no real value: neither the old one nor anything from the config.
  for (const SecretBinding& s : r.set->secrets()) {
    if (s.env_var() == "GONE") {
      EXPECT_NE(s.value().expose(), kOld);
    }
  }
}

TEST(RetiredSecrets, CarriedAcrossReloadsUntilAddedAgain) {
  auto first = set_of({{"KEY", kOld}, {"GONE", kOld}});
  RetiringResult second = retire_removed(*first, set_of({{"KEY", kNew}}));
  RetiringResult third = retire_removed(*second.set, set_of({{"KEY", kNew}}));
  EXPECT_EQ(third.retired, std::vector<std::string>{"GONE"});
  EXPECT_EQ(send(*third.set, "X: $MSB_GONE").status, secrets::Status::kBlocked);
  // Added again: a secret like any other, substituted.
  RetiringResult back = retire_removed(*third.set, set_of({{"KEY", kNew}, {"GONE", kNew}}));
  EXPECT_TRUE(back.retired.empty());
  EXPECT_EQ(send(*back.set, "X: $MSB_GONE").status, secrets::Status::kOk);
}

TEST(RetiredSecrets, NothingRemovedKeepsTheSetAsGiven) {
  auto next = set_of({{"KEY", kNew}});
  RetiringResult r = retire_removed(*set_of({{"KEY", kOld}}), next);
  EXPECT_EQ(r.set, next);
  EXPECT_TRUE(r.retired.empty());
}

TEST(RetiredSecrets, APlaceholderTakenByANewSecretIsNotRetired) {
  // The new config binds the removed secret's placeholder (or one around it) to another secret.
  std::vector<SecretBinding> old_secrets;
  old_secrets.push_back(SecretBuilder().env("OLD").value(kOld).allow_host("api.example.com").placeholder("TOKEN_X").build());
  secrets::SecretSet previous(std::move(old_secrets), ViolationAction::kUnset);
  std::vector<SecretBinding> new_secrets;
  new_secrets.push_back(
      SecretBuilder().env("NEW").value(kNew).allow_host("api.example.com").placeholder("MY_TOKEN_X_2").build());
  RetiringResult r = retire_removed(previous, std::make_shared<secrets::SecretSet>(std::move(new_secrets), ViolationAction::kUnset));
  EXPECT_TRUE(r.retired.empty());
  EXPECT_EQ(send(*r.set, "X: MY_TOKEN_X_2").status, secrets::Status::kOk);
}

// ---- the response side across a reload ----

std::string through(ResponseScrubbers& s, const std::vector<std::string>& chunks) {
  std::string out;
  for (const std::string& c : chunks) s.feed(c, out);
  s.flush(out);
  return out;
}

TEST(ResponseScrubbers, OneSnapshotIsOneScrubber) {
  ResponseScrubbers s;
  EXPECT_TRUE(s.empty());
  s.keep(snapshot_of(1, kOld));
  s.keep(snapshot_of(1, kOld));  // the same generation: kept once
  EXPECT_EQ(s.size(), 1u);
  EXPECT_EQ(through(s, {std::string("a ") + kOld + " b"}), "a " + std::string(21, '*') + " b");
}

TEST(ResponseScrubbers, BothValuesAreMaskedWhileBothAreKept) {
  ResponseScrubbers s;
  s.keep(snapshot_of(1, kOld));
  s.keep(snapshot_of(2, kNew));
  EXPECT_EQ(s.newest(), 2u);
  const std::string in = std::string("{\"old\":\"") + kOld + "\",\"new\":\"" + kNew + "\"}";
  // Split at every offset: a value cut between reads is masked all the same.
  for (std::size_t cut = 0; cut <= in.size(); ++cut) {
    const std::string out = through(s, {in.substr(0, cut), in.substr(cut)});
    ASSERT_EQ(out.size(), in.size());
    EXPECT_EQ(out.find(kOld), std::string::npos) << cut;
    EXPECT_EQ(out.find(kNew), std::string::npos) << cut;
    EXPECT_NE(out.find("{\"old\":\""), std::string::npos);
  }
  EXPECT_GT(s.masked_bytes(), 0u);
}

TEST(ResponseScrubbers, ReleasedOnlyWhenNothingIsHeldBack) {
  ResponseScrubbers s;
  auto old_snapshot = snapshot_of(1, kOld);
  std::weak_ptr<const SecretsSnapshot> watch = old_snapshot;
  s.keep(old_snapshot);
  s.keep(snapshot_of(2, kNew));
  old_snapshot.reset();
  std::string out;
  s.feed(std::string("x ") + std::string(kOld).substr(0, 8), out);  // the start of the old value, held
  ASSERT_GT(s.pending(), 0u);
  s.release_unneeded([](std::uint64_t g) { return g == 2; });
  EXPECT_EQ(s.size(), 2u);  // waits: the held bytes may be the old value
  s.feed(std::string(kOld).substr(8) + " y", out);
  s.flush(out);
  EXPECT_EQ(out, "x " + std::string(21, '*') + " y");
  const std::uint64_t masked = s.masked_bytes();
  s.release_unneeded([](std::uint64_t g) { return g == 2; });
  EXPECT_EQ(s.size(), 1u);
  EXPECT_TRUE(watch.expired());  // the old values are gone (wiped with their snapshot)
  EXPECT_EQ(s.masked_bytes(), masked);  // what was masked still counts
}

TEST(ResponseScrubbers, ASnapshotWithoutSecretsAddsNoScrubber) {
  ResponseScrubbers s;
  auto empty = std::make_shared<SecretsSnapshot>();
  empty->set = set_of({});
  empty->generation = 3;
  s.keep(empty);
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(s.newest(), 3u);
}

// A reload's snapshot of {KEY: value} (or of `set`), built as Core::replace_secrets builds it.
std::shared_ptr<const SecretsSnapshot> reload_to(const std::shared_ptr<const SecretsSnapshot>& previous,
                                                 std::shared_ptr<const secrets::SecretSet> set) {
  auto s = std::make_shared<SecretsSnapshot>();
  s->set = std::move(set);
  build_scrub_forms(*s, previous.get());
  s->generation = previous ? previous->generation + 1 : 1;
  return s;
}
std::shared_ptr<const SecretsSnapshot> reload_to(const std::shared_ptr<const SecretsSnapshot>& previous, const std::string& value) {
  return reload_to(previous, set_of({{"KEY", value}}));
}

// The chain of a connection whose request went out under `older` and that has seen `newer`
// (refresh_scrubbers' order and needs: both are needed while the old response is answered).
void keep_both(ResponseScrubbers& s, const std::shared_ptr<const SecretsSnapshot>& first,
               const std::shared_ptr<const SecretsSnapshot>& second) {
  s.keep(first);
  s.keep(second);
  s.release_unneeded([&](std::uint64_t g) { return g == first->generation || g == second->generation; });
}

// `in` whole, cut at every offset, and byte by byte: neither value nor any byte run of the longer
// one past the shorter shows.
void expect_masked(ResponseScrubbers& s, const std::string& in, const std::string& shorter, const std::string& longer) {
  const std::string tail = longer.substr(shorter.size());
  std::vector<std::vector<std::string>> feeds = {{in}};
  for (std::size_t cut = 1; cut < in.size(); ++cut) feeds.push_back({in.substr(0, cut), in.substr(cut)});
  std::vector<std::string> bytes;
  for (char c : in) bytes.emplace_back(1, c);
  feeds.push_back(bytes);
  for (std::size_t i = 0; i < feeds.size(); ++i) {
    const std::string out = through(s, feeds[i]);
    ASSERT_EQ(out.size(), in.size()) << i;
    EXPECT_EQ(out.find(shorter), std::string::npos) << "feed " << i;
    EXPECT_EQ(out.find(longer), std::string::npos) << "feed " << i;
    EXPECT_EQ(out.find(tail), std::string::npos) << "the longer value's tail shows, feed " << i;
    EXPECT_NE(out.find("<a "), std::string::npos);
  }
}

// Obviously fake values, one extending the other (a rotation that appends to the old value).
constexpr const char* kShort = "fake-rot-value-3a9f";
constexpr const char* kLong = "fake-rot-value-3a9f-ext-7c21e0";

TEST(ResponseScrubbers, ANewValueThatExtendsTheOldOneIsMaskedWhole) {
  const auto old_snapshot = reload_to(nullptr, kShort);
  const auto new_snapshot = reload_to(old_snapshot, kLong);
  const std::string in = std::string("<a ") + kLong + " b " + kShort + " c " + kLong + ">";
  for (bool newest_first : {false, true}) {
    ResponseScrubbers s;
    if (newest_first) keep_both(s, new_snapshot, old_snapshot);
    else keep_both(s, old_snapshot, new_snapshot);
    EXPECT_EQ(s.size(), 1u);  // the newest snapshot's forms cover the old value: one scrubber
    expect_masked(s, in, kShort, kLong);
  }
}

TEST(ResponseScrubbers, ANewValueThatIsAPrefixOfTheOldOneIsMaskedWhole) {
  const auto old_snapshot = reload_to(nullptr, kLong);
  const auto new_snapshot = reload_to(old_snapshot, kShort);
  const std::string in = std::string("<a ") + kLong + " b " + kShort + " c " + kLong + ">";
  for (bool newest_first : {false, true}) {
    ResponseScrubbers s;
    if (newest_first) keep_both(s, new_snapshot, old_snapshot);
    else keep_both(s, old_snapshot, new_snapshot);
    EXPECT_EQ(s.size(), 1u);
    expect_masked(s, in, kShort, kLong);
  }
}

// A secret a reload removed is retired with a random value; its old value is still masked in the
// responses of that one generation, by the newest snapshot's scrubber alone.
TEST(ResponseScrubbers, ARemovedSecretsOldValueIsMaskedByTheNewestScrubber) {
  const auto old_snapshot = reload_to(nullptr, kShort);
  RetiringResult r = retire_removed(*old_snapshot->set, set_of({{"OTHER", kNew}}));
  ASSERT_EQ(r.retired, std::vector<std::string>{"KEY"});
  const auto new_snapshot = reload_to(old_snapshot, r.set);
  ResponseScrubbers s;
  keep_both(s, old_snapshot, new_snapshot);
  EXPECT_EQ(s.size(), 1u);
  const std::string in = std::string("<a ") + kShort + " b " + kNew + ">";
  for (std::size_t cut = 0; cut <= in.size(); ++cut) {
    const std::string out = through(s, {in.substr(0, cut), in.substr(cut)});
    EXPECT_EQ(out.find(kShort), std::string::npos) << cut;
    EXPECT_EQ(out.find(kNew), std::string::npos) << cut;
  }
  // The next reload lets the removed value go: its snapshot covers only the one before it.
  const auto third = reload_to(new_snapshot, set_of({{"OTHER", kNew}}));
  ResponseScrubbers later;
  later.keep(third);
  EXPECT_NE(through(later, {in}).find(kShort), std::string::npos) << "the test cannot fail";
}

// Three live generations: the newest covers the one before it, not the oldest, which keeps its
// own scrubber in the chain.
TEST(ResponseScrubbers, TheOldestOfThreeGenerationsKeepsItsScrubber) {
  const auto g1 = reload_to(nullptr, kOld);
  const auto g2 = reload_to(g1, kNew);
  const auto g3 = reload_to(g2, "fake-third-value-e4a1");
  ResponseScrubbers s;
  s.keep(g1);
  s.keep(g2);
  s.keep(g3);
  s.release_unneeded([](std::uint64_t g) { return g == 1 || g == 3; });
  EXPECT_EQ(s.size(), 2u);
  const std::string in = std::string("<a ") + kOld + " " + kNew + " fake-third-value-e4a1>";
  const std::string out = through(s, {in});
  EXPECT_EQ(out.find(kOld), std::string::npos);
  EXPECT_EQ(out.find(kNew), std::string::npos);
  EXPECT_EQ(out.find("fake-third-value-e4a1"), std::string::npos);
}

// Every HTTP/1 response path scrubs through the chain it borrows (merge of reload2 with the
// response decoder): a head, a body de-chunked with a value cut by a chunk line, its trailers,
// and a gzip body the gateway decodes. One scrubber over the newest snapshot's forms (what the
// decoder had on its own) lets the old value through; the chain of both masks it.
std::string decoded_responses(http::ResponseStream& s, std::size_t step) {
  const std::string old_value = kOld, new_value = kNew;
  std::string gz;
  EXPECT_EQ(http::encode_all({http::Coding::kGzip}, "gz " + old_value + " " + new_value + " end", gz), http::CodingError::kNone);
  const std::string in = "HTTP/1.1 200 OK\r\nX-Echo: " + old_value + "\r\nTransfer-Encoding: chunked\r\n\r\n" +
                         "8\r\n" + old_value.substr(0, 8) + "\r\n" + "d\r\n" + old_value.substr(8) + "\r\n" +
                         "0\r\nX-Trailer: " + new_value + "\r\n\r\n" +
                         "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: " + std::to_string(gz.size()) +
                         "\r\n\r\n" + gz;
  s.undo_codings();
  s.expect({});
  s.expect({});
  std::string out;
  for (std::size_t at = 0; at < in.size(); at += step) {
    std::string_view piece = std::string_view(in).substr(at, step);
    while (!piece.empty()) {
      std::size_t used = 0;
      EXPECT_NE(s.feed(piece, used, out), http::ResponseStream::Event::kError) << s.error();
      piece.remove_prefix(used);
    }
    s.flush(out);
  }
  EXPECT_EQ(s.finish(out), http::DecodeError::kNone);
  return out;
}

TEST(ResponseScrubbers, AResponseStreamScrubsHeadsDechunkedAndDecodedBodiesForEverySnapshot) {
  for (std::size_t step : {1u, 5u, 4096u}) {
    ResponseScrubbers chain;
    chain.keep(snapshot_of(1, kOld));
    chain.keep(snapshot_of(2, kNew));
    http::ResponseStream s(static_cast<http::Scrubber*>(&chain));
    const std::string out = decoded_responses(s, step);
    EXPECT_EQ(out.find(kOld), std::string::npos) << step;
    EXPECT_EQ(out.find(kNew), std::string::npos) << step;
    EXPECT_EQ(out.find("Content-Encoding"), std::string::npos) << step;  // decoded, not passed compressed
    EXPECT_NE(out.find("X-Trailer: "), std::string::npos);
    EXPECT_GT(s.masked_bytes(), 0u);

    const auto newest = snapshot_of(2, kNew);
    http::ResponseStream one(&*newest->scrub_forms);
    EXPECT_NE(decoded_responses(one, step).find(kOld), std::string::npos) << "the test cannot fail";
  }
}

// ---- request latency ----

TEST(LatencyHistogram, BucketsAreCumulativeAndInMicroseconds) {
  LatencyHistogram h;
  using std::chrono::microseconds;
  h.observe(microseconds(50));     // <= 100
  h.observe(microseconds(100));    // <= 100 (the bound is inclusive)
  h.observe(microseconds(101));    // <= 250
  h.observe(std::chrono::seconds(2));  // <= 2.5 s
  h.observe(std::chrono::minutes(5));  // +Inf only
  h.observe(microseconds(-7));     // a clock that went back: 0
  const LatencyHistogram::Snapshot s = h.snapshot();
  EXPECT_EQ(s.count, 6u);
  EXPECT_EQ(s.cumulative[0], 3u);  // le=100
  EXPECT_EQ(s.cumulative[1], 4u);  // le=250
  EXPECT_EQ(s.cumulative[12], 4u);  // le=1 s
  EXPECT_EQ(s.cumulative[13], 5u);  // le=2.5 s
  EXPECT_EQ(s.cumulative.back(), 5u);  // le=60 s: the 5 minutes are past every bound
  EXPECT_EQ(s.sum_us, 50u + 100 + 101 + 2'000'000 + 300'000'000);
  for (std::size_t i = 1; i < s.cumulative.size(); ++i) EXPECT_GE(s.cumulative[i], s.cumulative[i - 1]);
}

TEST(LatencyHistogram, ObservedFromManyThreads) {
  LatencyHistogram h;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 10'000; ++i) h.observe(std::chrono::microseconds(i % 3000));
    });
  for (auto& t : threads) t.join();
  const auto s = h.snapshot();
  EXPECT_EQ(s.count, 40'000u);
  EXPECT_EQ(s.cumulative.back(), 40'000u);
}

}  // namespace
}  // namespace airlock::gateway
