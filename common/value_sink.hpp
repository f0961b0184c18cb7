#pragma once
// A std::string that may hold a real secret value, written through ValueSink: its memory never
// goes back to the allocator with the value in it. std::string's own growth copies the bytes to
// a larger buffer and frees the old one as it is, so a request rewritten into a buffer that then
// grows (a request pipelined ahead of a buffered body, a head that outgrows its buffer after a
// substituted field) left a copy of the value in freed heap memory. Through the sink, a growth
// moves the bytes to a buffer at least twice as large and wipes the old one (its whole capacity:
// bytes past the size may have held a value too) before it is freed. The owner still wipes the
// bytes when it is done with them (after the write), as before; growth is the part the sink owns.
//
// Non-owning and made implicitly from the string, so a function that writes values takes a
// ValueSink and its callers pass their std::string as before. Header-only (explicit_bzero from
// glibc): every module that carries rewritten bytes (secrets, http, gateway) can use it.
#include <algorithm>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

#include <string.h>

namespace airlock {

// Moves `s` to a buffer of at least `capacity` bytes (unless it has one), wiping the old buffer
// before it is freed.
inline void reserve_wiped(std::string& s, std::size_t capacity) {
  if (capacity <= s.capacity()) return;
  std::string bigger;
  bigger.reserve(std::max(capacity, 2 * s.capacity()));
  bigger.append(s);
  explicit_bzero(s.data(), s.capacity());
  s.swap(bigger);  // `bigger` now owns the old (wiped) buffer and frees it
}

class ValueSink {
 public:
  ValueSink(std::string& s) noexcept : s_(&s) {}  // implicit: callers pass their string

  void append(std::string_view bytes) {
    if (bytes.size() > s_->capacity() - s_->size()) grow_keeping(bytes, s_->size() + bytes.size());
    s_->append(bytes);
  }
  void append(const char* bytes, std::size_t n) { append(std::string_view(bytes, n)); }
  void push_back(char c) {
    room_for(1);
    s_->push_back(c);
  }
  void assign(std::string_view bytes) {
    if (bytes.size() > s_->capacity()) reserve_wiped(*s_, bytes.size());
    s_->assign(bytes);
  }
  // Replaces [pos, pos + n) by `bytes` (a longer replacement may grow the buffer).
  void replace(std::size_t pos, std::size_t n, std::string_view bytes) {
    if (bytes.size() > n && bytes.size() - n > s_->capacity() - s_->size()) {
      grow_keeping(bytes, s_->size() + bytes.size() - n);
    }
    s_->replace(pos, n, bytes);
  }
  void resize(std::size_t n) {
    if (n > s_->capacity()) reserve_wiped(*s_, n);
    s_->resize(n);
  }
  void reserve(std::size_t n) { reserve_wiped(*s_, n); }
  // Room for `n` more bytes, for a writer that appends to str() itself.
  void room_for(std::size_t n) {
    if (n > s_->capacity() - s_->size()) reserve_wiped(*s_, s_->size() + n);
  }
  void clear() noexcept { s_->clear(); }
  void swap(std::string& other) noexcept { s_->swap(other); }
  void swap(ValueSink other) noexcept { s_->swap(*other.s_); }

  std::size_t size() const noexcept { return s_->size(); }
  std::size_t capacity() const noexcept { return s_->capacity(); }
  bool empty() const noexcept { return s_->empty(); }
  char* data() noexcept { return s_->data(); }
  const char* data() const noexcept { return s_->data(); }
  operator std::string_view() const noexcept { return *s_; }
  // The string itself, for reading (or for a writer that called room_for first).
  std::string& str() noexcept { return *s_; }
  const std::string& str() const noexcept { return *s_; }

 private:
  // Grows to `capacity`; `bytes` may lie in the string itself (then it follows the move).
  void grow_keeping(std::string_view& bytes, std::size_t capacity) {
    const char* begin = s_->data();
    const bool inside = !std::less<const char*>()(bytes.data(), begin) &&
                        std::less<const char*>()(bytes.data(), begin + s_->size());
    const std::size_t offset = inside ? static_cast<std::size_t>(bytes.data() - begin) : 0;
    reserve_wiped(*s_, capacity);
    if (inside) bytes = std::string_view(s_->data() + offset, bytes.size());
  }

  std::string* s_;
};

}  // namespace airlock
