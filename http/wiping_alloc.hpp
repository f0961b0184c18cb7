#pragma once
// Allocation functions for the C coding libraries (zlib, brotli, zstd), whose state holds the
// bytes they code (a rewritten body with values on its way up, an echo before it is masked on
// its way down): each block keeps its size in front of it and is wiped when freed.
#include <cstddef>

#include <zlib.h>

namespace airlock::http {

void* wiping_alloc(void* opaque, std::size_t size) noexcept;
void wiping_free(void* opaque, void* block) noexcept;

// zlib's shapes of the same.
inline voidpf wiping_zalloc(voidpf opaque, uInt items, uInt size) {
  void* p = wiping_alloc(opaque, static_cast<std::size_t>(items) * size);
  return p == nullptr ? Z_NULL : p;
}
inline void wiping_zfree(voidpf opaque, voidpf block) { wiping_free(opaque, block); }
inline void use_wiping_allocator(z_stream& z) noexcept {
  z.zalloc = wiping_zalloc;
  z.zfree = wiping_zfree;
  z.opaque = Z_NULL;
}

}  // namespace airlock::http
