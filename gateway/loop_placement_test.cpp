#include "gateway/loop_placement.hpp"

#include "gateway/budget.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace airlock::gateway {
namespace {

TEST(LoopPlacement, EqualLoopsTakeTurns) {
  std::vector<std::atomic<std::size_t>> open(2);
  EXPECT_EQ(least_loaded(open, 0), 0u);
  EXPECT_EQ(least_loaded(open, 1), 1u);
  EXPECT_EQ(least_loaded(open, 2), 0u);
  EXPECT_EQ(least_loaded(open, 7), 1u);
}

// A loop that holds more open connections (it got through fewer) gets the next ones until the
// counts are even again, whatever the turn says.
TEST(LoopPlacement, TheLoopWithFewerOpenConnectionsGetsTheNext) {
  std::vector<std::atomic<std::size_t>> open(3);
  open[0] = 5;
  open[1] = 2;
  open[2] = 3;
  for (std::size_t turn = 0; turn < 6; ++turn) EXPECT_EQ(least_loaded(open, turn), 1u) << turn;
  open[1] = 3;  // loops 1 and 2 tie: the turn picks between them, never loop 0
  EXPECT_EQ(least_loaded(open, 1), 1u);
  EXPECT_EQ(least_loaded(open, 2), 2u);
  EXPECT_EQ(least_loaded(open, 0), 1u);
}

TEST(LoopPlacement, OneOrNoLoop) {
  std::vector<std::atomic<std::size_t>> one(1);
  one[0] = 9;
  EXPECT_EQ(least_loaded(one, 4), 0u);
  EXPECT_EQ(least_loaded(std::span<const std::atomic<std::size_t>>(), 4), 0u);
}

// A connection counts on its loop from placement until its ticket goes, whichever way it ends.
TEST(LoopPlacement, ATicketCountsItsConnectionOnItsLoopUntilItIsDestroyed) {
  Budget budget(BudgetLimits{});
  std::vector<std::atomic<std::size_t>> open(2);
  Refusal why = Refusal::kNone;
  auto a = budget.admit("192.0.2.1", why);
  auto b = budget.admit("192.0.2.1", why);
  ASSERT_TRUE(a && b);
  a->occupy(open[1]);
  b->occupy(open[1]);
  EXPECT_EQ(open[1].load(), 2u);
  EXPECT_EQ(least_loaded(open, 1), 0u);
  a.reset();
  EXPECT_EQ(open[1].load(), 1u);
  b.reset();
  EXPECT_EQ(open[1].load(), 0u);
  EXPECT_EQ(open[0].load(), 0u);
  auto c = budget.admit("192.0.2.1", why);  // a ticket never placed counts nowhere
  c.reset();
  EXPECT_EQ(open[0].load() + open[1].load(), 0u);
}

}  // namespace
}  // namespace airlock::gateway
