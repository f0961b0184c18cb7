#pragma once
// OpenSSL's record buffers, kept per thread between records.
//
// The gateway's TLS sessions run with SSL_MODE_RELEASE_BUFFERS, so that an idle connection holds
// no record buffer: OpenSSL allocates a ~16.5 KiB read or write buffer for every record and frees
// it once the record is through (four of each per HTTP/1 keep-alive exchange through the
// gateway). glibc serves blocks of that size from its bins, not its per-thread cache: ~2,000
// instructions per exchange in malloc and free. Installed as OpenSSL's allocator, this keeps up
// to kRecordBufferSlots freed blocks of that size class per thread and hands them out again; every
// other allocation goes straight to malloc/realloc/free. Each block is a block of the C heap
// (kept blocks are ordinary malloc blocks of at least kRecordBufferBytes usable bytes), so
// whatever OpenSSL does with one (realloc, free on another thread) stays valid.
//
// Memory: at most kRecordBufferSlots * kRecordBufferBytes (68 KiB) per thread that freed such a
// block, given back when the thread ends; connections hold nothing more than before.
// A kept block holds what the record left in it, as a block freed to malloc does (ciphertext for
// a written record, which TLS encrypts in place; a read record's plaintext, as before).
#include <cstddef>

namespace airlock::tls {

inline constexpr std::size_t kRecordBufferMin = 16 * 1024;    // smaller requests: plain malloc
inline constexpr std::size_t kRecordBufferBytes = 17 * 1024;  // what a kept block holds at least
inline constexpr std::size_t kRecordBufferSlots = 4;

// Whether OpenSSL allocates through the pool in this process. It is installed by a static
// initializer of this library (OpenSSL accepts an allocator only before its first allocation); a
// process whose first OpenSSL allocation came earlier keeps OpenSSL's own allocator.
bool record_buffer_pool_installed() noexcept;

// For tests: the blocks kept by the calling thread right now.
std::size_t record_buffers_kept() noexcept;

}  // namespace airlock::tls
