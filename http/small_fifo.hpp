#pragma once
// A first-in first-out queue that allocates nothing until its first element. std::deque
// allocates its map and a 512-byte node as soon as it is constructed; a connection holds two
// such queues (requests whose responses are due) for its whole life, mostly empty.
#include <cstddef>
#include <vector>

namespace airlock::http {

template <class T>
class SmallFifo {
 public:
  bool empty() const noexcept { return head_ == items_.size(); }
  std::size_t size() const noexcept { return items_.size() - head_; }
  T& front() { return items_[head_]; }
  const T& front() const { return items_[head_]; }
  void push_back(const T& item) { items_.push_back(item); }
  void pop_front() {
    if (++head_ == items_.size()) {
      items_.clear();
      head_ = 0;
    } else if (head_ >= kCompactAfter && 2 * head_ >= items_.size()) {
      // Many pipelined entries: drop the consumed prefix (amortized O(1) per pop).
      items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }
  auto begin() const { return items_.begin() + static_cast<std::ptrdiff_t>(head_); }
  auto end() const { return items_.end(); }

 private:
  static constexpr std::size_t kCompactAfter = 32;
  std::vector<T> items_;
  std::size_t head_ = 0;
};

}  // namespace airlock::http
