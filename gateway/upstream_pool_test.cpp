#include "gateway/upstream_pool.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

namespace airlock::gateway {
namespace {

using Clock = std::chrono::steady_clock;
using Pool = UpstreamPool<std::unique_ptr<int>>;

UpstreamKey key(std::string destination, std::string sni = "api.example.com") {
  return UpstreamKey{.destination = std::move(destination), .sni = std::move(sni), .alpn_offer = "h2,http/1.1",
                     .protocol = "http/1.1", .trust = nullptr, .owner = "transparent 10.0.0.2"};
}

TEST(UpstreamPool, TakesTheMostRecentlyHeldOfItsKeyOnly) {
  Pool pool;
  std::vector<std::unique_ptr<int>> out;
  const auto t = Clock::now();
  pool.put(key("203.0.113.2:443"), std::make_unique<int>(1), t, out);
  pool.put(key("203.0.113.2:443"), std::make_unique<int>(2), t, out);
  pool.put(key("203.0.113.3:443"), std::make_unique<int>(3), t, out);
  EXPECT_TRUE(out.empty());
  auto got = pool.take(key("203.0.113.2:443"), t, out);
  ASSERT_TRUE(got);
  EXPECT_EQ(**got, 2);  // LIFO
  got = pool.take(key("203.0.113.2:443"), t, out);
  ASSERT_TRUE(got);
  EXPECT_EQ(**got, 1);
  EXPECT_FALSE(pool.take(key("203.0.113.2:443"), t, out));
  EXPECT_EQ(pool.size(), 1u);
}

TEST(UpstreamPool, EveryPartOfTheKeySeparates) {
  Pool pool;
  std::vector<std::unique_ptr<int>> out;
  const auto t = Clock::now();
  const UpstreamKey base = key("203.0.113.2:443");
  pool.put(base, std::make_unique<int>(1), t, out);
  int trust = 0;
  std::vector<UpstreamKey> others(6, base);
  others[0].destination = "203.0.113.2:8443";
  others[1].sni = "other.example.com";
  others[2].alpn_offer = "http/1.1";
  others[3].protocol = "";
  others[4].trust = &trust;
  others[5].owner = "transparent 10.0.0.3";
  for (const UpstreamKey& k : others) EXPECT_FALSE(pool.take(k, t, out)) << k.destination << " " << k.sni;
  EXPECT_TRUE(pool.take(base, t, out));
}

TEST(UpstreamPool, BoundsPerKeyAndInTotalEvictTheOldest) {
  Pool pool(UpstreamPoolLimits{.per_key = 2, .total = 3, .max_idle = std::chrono::seconds(30)});
  std::vector<std::unique_ptr<int>> out;
  const auto t = Clock::now();
  for (int i = 1; i <= 3; ++i) pool.put(key("203.0.113.2:443"), std::make_unique<int>(i), t, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(*out[0], 1);  // the key's oldest
  EXPECT_EQ(pool.count(key("203.0.113.2:443")), 2u);
  out.clear();
  // Many destinations (hostile or not): the loop's total bound holds.
  for (int i = 0; i < 1000; ++i) pool.put(key("198.51.100." + std::to_string(i % 250) + ":443"), std::make_unique<int>(100 + i), t, out);
  EXPECT_EQ(pool.size(), 3u);
  EXPECT_EQ(out.size(), 999u);  // the first of them filled the third place
  EXPECT_EQ(pool.count(key("203.0.113.2:443")), 0u);
}

TEST(UpstreamPool, ExpiresAfterMaxIdle) {
  Pool pool(UpstreamPoolLimits{.per_key = 4, .total = 8, .max_idle = std::chrono::seconds(30)});
  std::vector<std::unique_ptr<int>> out;
  const auto t = Clock::now();
  pool.put(key("203.0.113.2:443"), std::make_unique<int>(1), t, out);
  pool.put(key("203.0.113.2:443"), std::make_unique<int>(2), t + std::chrono::seconds(20), out);
  auto got = pool.take(key("203.0.113.2:443"), t + std::chrono::seconds(31), out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(*out[0], 1);
  ASSERT_TRUE(got);
  EXPECT_EQ(**got, 2);
  out.clear();
  pool.put(key("203.0.113.2:443"), std::make_unique<int>(3), t, out);
  pool.drop_expired(t + std::chrono::seconds(30), out);
  EXPECT_EQ(out.size(), 1u);
  EXPECT_EQ(pool.size(), 0u);
}

TEST(UpstreamPool, RemoveByIdDropsAReadableConnectionOnce) {
  Pool pool;
  std::vector<std::unique_ptr<int>> out;
  const auto t = Clock::now();
  const std::uint64_t a = pool.put(key("203.0.113.2:443"), std::make_unique<int>(1), t, out);
  const std::uint64_t b = pool.put(key("203.0.113.2:443"), std::make_unique<int>(2), t, out);
  ASSERT_NE(a, b);
  auto gone = pool.remove(b);  // it became readable: never handed out
  ASSERT_TRUE(gone);
  EXPECT_EQ(**gone, 2);
  EXPECT_FALSE(pool.remove(b));
  auto got = pool.take(key("203.0.113.2:443"), t, out);
  ASSERT_TRUE(got);
  EXPECT_EQ(**got, 1);
  EXPECT_FALSE(pool.remove(a));  // taken: its watcher's late wake-up finds nothing
}

TEST(UpstreamPool, DisabledHoldsNothing) {
  Pool pool(UpstreamPoolLimits{.per_key = 0, .total = 8, .max_idle = std::chrono::seconds(30)});
  std::vector<std::unique_ptr<int>> out;
  EXPECT_EQ(pool.put(key("203.0.113.2:443"), std::make_unique<int>(1), Clock::now(), out), 0u);
  EXPECT_EQ(out.size(), 1u);
  EXPECT_EQ(pool.size(), 0u);
}

}  // namespace
}  // namespace airlock::gateway
