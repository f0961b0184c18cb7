#include "tls/record_buffers.hpp"

#include <openssl/crypto.h>

#include <malloc.h>

#include <cstdlib>

namespace airlock::tls {
namespace {

// Plain data, so that it stays usable while the thread ends (OpenSSL frees its thread state from
// thread-exit handlers, possibly after the Reaper below has run).
struct Pool {
  void* slot[kRecordBufferSlots];
  std::size_t kept;
  bool reaper_armed;
  bool ended;  // the thread is ending: nothing more is kept
};
thread_local Pool pool{};

// Gives the kept blocks back when the thread ends.
struct Reaper {
  ~Reaper() {
    pool.ended = true;
    while (pool.kept > 0) std::free(pool.slot[--pool.kept]);
  }
};

bool pooled_size(std::size_t n) noexcept { return n >= kRecordBufferMin && n <= kRecordBufferBytes; }

// A block malloc made for kRecordBufferBytes (or any block of about that usable size): one that
// can serve every request pooled_size() accepts.
bool keepable(void* p) noexcept {
  const std::size_t usable = malloc_usable_size(p);
  return usable >= kRecordBufferBytes && usable < kRecordBufferBytes + 64;
}

// OpenSSL's own allocator returns no block for 0 bytes; so does this one.
void* pool_malloc(std::size_t n, const char*, int) {
  if (n == 0) return nullptr;
  if (!pooled_size(n)) return std::malloc(n);
  if (pool.kept > 0) return pool.slot[--pool.kept];
  return std::malloc(kRecordBufferBytes);
}

void pool_free(void* p, const char*, int) {
  if (p == nullptr) return;
  if (!pool.ended && pool.kept < kRecordBufferSlots && keepable(p)) {
    if (!pool.reaper_armed) {
      pool.reaper_armed = true;
      static thread_local Reaper reaper;  // registers its destructor for this thread
      (void)reaper;
    }
    pool.slot[pool.kept++] = p;
    return;
  }
  std::free(p);
}

// As OpenSSL's: no block yet is a malloc, 0 bytes frees. A kept block is a malloc block, so
// realloc takes it like any other.
void* pool_realloc(void* p, std::size_t n, const char* file, int line) {
  if (p == nullptr) return pool_malloc(n, file, line);
  if (n == 0) {
    pool_free(p, file, line);
    return nullptr;
  }
  return std::realloc(p, n);
}

const bool installed = CRYPTO_set_mem_functions(pool_malloc, pool_realloc, pool_free) == 1;

}  // namespace

bool record_buffer_pool_installed() noexcept { return installed; }

std::size_t record_buffers_kept() noexcept { return pool.kept; }

}  // namespace airlock::tls
