#include <airlock/secret_value.hpp>

#include "secrets/secret_value_hooks.hpp"

#include <openssl/crypto.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <new>
#include <ostream>

namespace airlock {
namespace {

std::atomic<testing::WipeObserver> g_wipe_observer{nullptr};

std::size_t page_size() noexcept {
  static const std::size_t size = [] {
    const long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? static_cast<std::size_t>(p) : std::size_t{4096};
  }();
  return size;
}

// The raw system call, not the libc wrapper: sanitizer runtimes replace mlock with a no-op
// that reports success, which would make locked() lie under ASan.
bool lock_pages(void* mem, std::size_t size) noexcept { return syscall(SYS_mlock, mem, size) == 0; }

}  // namespace

namespace testing {
void set_wipe_observer(WipeObserver observer) noexcept { g_wipe_observer.store(observer); }
}  // namespace testing

SecretValue::SecretValue(std::string_view bytes) {
  if (bytes.empty()) return;
  const std::size_t page = page_size();
  const std::size_t capacity = (bytes.size() + page - 1) / page * page;
  void* mem = mmap(nullptr, capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) throw std::bad_alloc();
  // Keep it out of core dumps and, when the memlock limit allows, out of swap. A failed mlock
  // (RLIMIT_MEMLOCK) still leaves a working value; locked() reports it, without naming it.
  (void)madvise(mem, capacity, MADV_DONTDUMP);
  locked_ = lock_pages(mem, capacity);
  data_ = static_cast<char*>(mem);
  capacity_ = capacity;
  size_ = bytes.size();
  std::memcpy(data_, bytes.data(), size_);
}

SecretValue SecretValue::take(std::string& source) {
  SecretValue value(source);
  OPENSSL_cleanse(source.data(), source.size());
  source.clear();
  return value;
}

SecretValue::~SecretValue() { release(); }

SecretValue::SecretValue(SecretValue&& other) noexcept
    : data_(other.data_), size_(other.size_), capacity_(other.capacity_), locked_(other.locked_) {
  other.data_ = nullptr;
  other.size_ = 0;
  other.capacity_ = 0;
  other.locked_ = false;
}

SecretValue& SecretValue::operator=(SecretValue&& other) noexcept {
  if (this != &other) {
    release();
    data_ = other.data_;
    size_ = other.size_;
    capacity_ = other.capacity_;
    locked_ = other.locked_;
    other.data_ = nullptr;
    other.size_ = 0;
    other.capacity_ = 0;
    other.locked_ = false;
  }
  return *this;
}

SecretValue SecretValue::clone() const { return SecretValue(expose()); }

bool SecretValue::equals(std::string_view other) const noexcept {
  if (other.size() != size_) return false;
  if (size_ == 0) return true;
  return CRYPTO_memcmp(data_, other.data(), size_) == 0;
}

bool SecretValue::contains_any_of(std::string_view chars) const noexcept {
  // Touches every byte whatever it finds, so the time does not say where a match is.
  unsigned found = 0;
  for (std::size_t i = 0; i < size_; ++i) {
    for (char c : chars) found |= static_cast<unsigned>(data_[i] == c);
  }
  return found != 0;
}

void SecretValue::release() noexcept {
  if (data_ == nullptr) return;
  OPENSSL_cleanse(data_, capacity_);
  if (const auto observer = g_wipe_observer.load()) observer(data_, capacity_);
  if (locked_) (void)syscall(SYS_munlock, data_, capacity_);
  (void)munmap(data_, capacity_);
  data_ = nullptr;
  size_ = 0;
  capacity_ = 0;
  locked_ = false;
}

std::ostream& operator<<(std::ostream& os, const SecretValue&) { return os << "<redacted>"; }

void harden_process() {
  (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  const rlimit no_core{0, 0};
  (void)setrlimit(RLIMIT_CORE, &no_core);
}

}  // namespace airlock
