#pragma once
// A real credential. It lives only in locked, non-dumpable memory, is wiped when destroyed,
// prints as <redacted> however it is formatted, and compares in constant time.
#include <cstddef>
#include <iosfwd>
#include <string>
#include <string_view>

namespace airlock {

class SecretValue {
 public:
  SecretValue() noexcept = default;
  explicit SecretValue(std::string_view bytes);
  // Takes the bytes and wipes the source string, so no plain copy outlives the move.
  static SecretValue take(std::string& source);
  ~SecretValue();

  SecretValue(SecretValue&& other) noexcept;
  SecretValue& operator=(SecretValue&& other) noexcept;
  SecretValue(const SecretValue&) = delete;
  SecretValue& operator=(const SecretValue&) = delete;
  // An explicit copy into fresh locked memory (a copy is a decision, never an accident).
  SecretValue clone() const;

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  // The only way to the bytes. Every call site is a place the value flows: keep them few.
  std::string_view expose() const noexcept { return {data_, size_}; }
  // Constant time in the length of `other` (length mismatch is not hidden).
  bool equals(std::string_view other) const noexcept;
  bool contains_any_of(std::string_view chars) const noexcept;
  // Whether mlock succeeded (it can fail under RLIMIT_MEMLOCK; the value still works, and
  // stays excluded from core dumps).
  bool locked() const noexcept { return locked_; }

 private:
  void release() noexcept;
  char* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;  // bytes mapped (page multiple)
  bool locked_ = false;
};

std::ostream& operator<<(std::ostream& os, const SecretValue&);  // writes "<redacted>"
// For {fmt}: include <airlock/secret_value_fmt.hpp>, which also prints "<redacted>".

// Makes the process non-dumpable (no core dumps, no ptrace attach by non-root, /proc/PID/mem
// closed to others) and sets RLIMIT_CORE to 0. Called once at start by every airlock binary.
void harden_process();

}  // namespace airlock
