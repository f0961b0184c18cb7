#include "gateway/budget.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace airlock::gateway {
namespace {

BudgetLimits small_limits() {
  BudgetLimits l;
  l.memory_bytes = 100;
  l.client_memory_bytes = 60;
  l.connections = 10;
  l.client_connections = 6;
  l.reserve_connections = 3;
  l.light_client_connections = 2;
  return l;
}

TEST(Budget, MemoryIsBoundedPerClientAndInTotal) {
  Budget budget(small_limits());
  Refusal why;
  auto a = budget.admit("192.0.2.1", why);
  auto a2 = budget.admit("192.0.2.1", why);
  auto b = budget.admit("192.0.2.2", why);
  ASSERT_TRUE(a && a2 && b);
  EXPECT_EQ(a->hold(40), Over::kNone);
  EXPECT_EQ(a2->hold(20), Over::kNone);   // the client at 60: at its budget, not over
  EXPECT_EQ(a2->hold(21), Over::kClient);  // one byte more
  EXPECT_EQ(a2->hold(0), Over::kNone);     // freed: back under
  EXPECT_EQ(b->hold(60), Over::kNone);     // total 100
  EXPECT_EQ(a2->hold(1), Over::kGateway);  // total 101
  EXPECT_EQ(budget.held_bytes(), 101u);
  a2.reset();                              // a connection that ends gives back what it held
  EXPECT_EQ(budget.held_bytes(), 100u);
  EXPECT_EQ(a->hold(10), Over::kNone);     // shrinking never fails
  EXPECT_EQ(budget.held_bytes(), 70u);
}

TEST(Budget, ClientConnectionCapAndTheReserveForLightClients) {
  Budget budget(small_limits());
  Refusal why;
  std::vector<std::unique_ptr<Budget::Ticket>> heavy;
  for (int i = 0; i < 7; ++i)
    if (auto t = budget.admit("heavy", why)) heavy.push_back(std::move(t));
  EXPECT_EQ(heavy.size(), 6u);  // its own cap
  EXPECT_EQ(why, Refusal::kClientConnections);
  auto h2 = budget.admit("heavy2", why);
  ASSERT_TRUE(h2);  // the 7th of 10: the last 3 are the reserve
  auto h3 = budget.admit("heavy2", why);
  ASSERT_TRUE(h3);  // in the reserve, still light (it held 1)
  EXPECT_FALSE(budget.admit("heavy2", why));
  EXPECT_EQ(why, Refusal::kReserve);
  auto light = budget.admit("light", why);  // clients with few connections still get in
  auto light2 = budget.admit("light2", why);
  ASSERT_TRUE(light && light2);
  EXPECT_FALSE(budget.admit("another", why));  // all 10 are taken
  EXPECT_EQ(why, Refusal::kConnections);
  heavy.clear();  // connections that end make room, and their client is forgotten
  EXPECT_EQ(budget.connections(), 4u);
  EXPECT_EQ(budget.clients(), 3u);
  EXPECT_TRUE(budget.admit("heavy", why));
}

TEST(Budget, LimitsAreMadeConsistent) {
  BudgetLimits l;
  l.connections = 4;
  l.client_connections = 100;
  l.reserve_connections = 100;
  Budget budget(l);
  EXPECT_EQ(budget.limits().client_connections, 4u);
  EXPECT_EQ(budget.limits().reserve_connections, 3u);
}

}  // namespace
}  // namespace airlock::gateway
