#include "http/small_fifo.hpp"

#include <gtest/gtest.h>

#include <deque>
#include <vector>

namespace airlock::http {
namespace {

TEST(SmallFifo, KeepsOrderLikeADequeThroughInterleavedPushesAndPops) {
  SmallFifo<int> fifo;
  std::deque<int> model;
  EXPECT_TRUE(fifo.empty());
  int next = 0;
  // Bursts of pushes and pops of varying sizes cross the compaction threshold many times.
  for (int round = 0; round < 200; ++round) {
    const int pushes = (round * 7) % 90;
    const int pops = (round * 11) % 95;
    for (int i = 0; i < pushes; ++i) {
      fifo.push_back(next);
      model.push_back(next++);
    }
    for (int i = 0; i < pops && !model.empty(); ++i) {
      ASSERT_EQ(fifo.front(), model.front());
      fifo.pop_front();
      model.pop_front();
    }
    ASSERT_EQ(fifo.size(), model.size());
    ASSERT_EQ(fifo.empty(), model.empty());
    ASSERT_EQ(std::vector<int>(fifo.begin(), fifo.end()), std::vector<int>(model.begin(), model.end()));
  }
}

TEST(SmallFifo, FrontIsWritable) {
  SmallFifo<int> fifo;
  fifo.push_back(1);
  fifo.push_back(2);
  fifo.front() = 5;
  EXPECT_EQ(fifo.front(), 5);
  fifo.pop_front();
  EXPECT_EQ(fifo.front(), 2);
  fifo.pop_front();
  EXPECT_TRUE(fifo.empty());
}

}  // namespace
}  // namespace airlock::http
