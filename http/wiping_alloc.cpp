#include <http/wiping_alloc.hpp>

#include <openssl/crypto.h>

#include <cstdlib>
#include <cstring>

namespace airlock::http {
namespace {
constexpr std::size_t kHeader = alignof(std::max_align_t);
}  // namespace

void* wiping_alloc(void*, std::size_t size) noexcept {
  auto* p = static_cast<unsigned char*>(std::malloc(size + kHeader));
  if (p == nullptr) return nullptr;
  std::memcpy(p, &size, sizeof size);
  return p + kHeader;
}

void wiping_free(void*, void* block) noexcept {
  if (block == nullptr) return;
  auto* p = static_cast<unsigned char*>(block) - kHeader;
  std::size_t n = 0;
  std::memcpy(&n, p, sizeof n);
  OPENSSL_cleanse(p, n + kHeader);
  std::free(p);
}

}  // namespace airlock::http
