#include "tls/record_buffers.hpp"

#include "tls/certificate_authority.hpp"
#include "tls/contexts.hpp"
#include "tls/test_support.hpp"

#include <gtest/gtest.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include <malloc.h>

#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace airlock::tls {
namespace {

// Empties the calling thread's pool (a test starts from nothing kept).
void drain() {
  std::vector<void*> taken;
  while (record_buffers_kept() > 0) taken.push_back(OPENSSL_malloc(kRecordBufferMin));
  for (void* p : taken) std::free(p);  // around the pool: not kept again
}

TEST(RecordBuffers, TheProcessAllocatesThroughThePool) { EXPECT_TRUE(record_buffer_pool_installed()); }

TEST(RecordBuffers, AFreedRecordSizedBlockIsHandedOutAgainAndEveryOtherSizeIsNot) {
  drain();
  void* a = OPENSSL_malloc(16716);  // OpenSSL 3.0's read buffer for 16 KiB records
  ASSERT_NE(a, nullptr);
  EXPECT_GE(malloc_usable_size(a), kRecordBufferBytes);
  std::memset(a, 0x5a, 16716);  // the whole request is usable
  OPENSSL_free(a);
  EXPECT_EQ(record_buffers_kept(), 1u);
  void* b = OPENSSL_malloc(16476);  // a write buffer's size: the same class
  EXPECT_EQ(b, a);
  EXPECT_EQ(record_buffers_kept(), 0u);
  OPENSSL_free(b);
  // Outside the class: plain malloc blocks, never kept.
  for (std::size_t n : {std::size_t{1}, std::size_t{1024}, kRecordBufferMin - 1, kRecordBufferBytes + 1024, std::size_t{64 * 1024}}) {
    void* p = OPENSSL_malloc(n);
    ASSERT_NE(p, nullptr) << n;
    std::memset(p, 1, n);
    OPENSSL_free(p);
    EXPECT_EQ(record_buffers_kept(), 1u) << n;
  }
  EXPECT_EQ(OPENSSL_malloc(0), nullptr);  // as OpenSSL's own allocator
  drain();
}

TEST(RecordBuffers, ThePoolKeepsAtMostItsSlots) {
  drain();
  std::vector<void*> blocks;
  for (std::size_t i = 0; i < 3 * kRecordBufferSlots; ++i) blocks.push_back(OPENSSL_malloc(kRecordBufferMin));
  std::set<void*> distinct(blocks.begin(), blocks.end());
  EXPECT_EQ(distinct.size(), blocks.size());
  for (void* p : blocks) OPENSSL_free(p);
  EXPECT_EQ(record_buffers_kept(), kRecordBufferSlots);
  drain();
}

TEST(RecordBuffers, ReallocAndClearFreeTakeAKeptBlockLikeAnyOther) {
  drain();
  auto* p = static_cast<char*>(OPENSSL_malloc(kRecordBufferMin));
  std::memset(p, 'x', kRecordBufferMin);
  OPENSSL_free(p);
  auto* q = static_cast<char*>(OPENSSL_malloc(kRecordBufferMin));
  ASSERT_EQ(q, p);
  std::memcpy(q, "kept", 4);
  q = static_cast<char*>(OPENSSL_realloc(q, 100 * 1024));  // grows past the class
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(std::memcmp(q, "kept", 4), 0);
  q = static_cast<char*>(OPENSSL_realloc(q, 16));
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(std::memcmp(q, "kept", 4), 0);
  EXPECT_EQ(OPENSSL_realloc(q, 0), nullptr);  // frees, as OpenSSL's does
  auto* r = static_cast<char*>(OPENSSL_realloc(nullptr, kRecordBufferMin));
  ASSERT_NE(r, nullptr);
  OPENSSL_clear_free(r, kRecordBufferMin);  // wiped, then kept
  EXPECT_EQ(record_buffers_kept(), 1u);
  auto* s = static_cast<unsigned char*>(OPENSSL_malloc(kRecordBufferMin));
  ASSERT_EQ(static_cast<void*>(s), static_cast<void*>(r));
  bool zero = true;
  for (std::size_t i = 0; i < kRecordBufferMin; ++i) zero = zero && s[i] == 0;
  EXPECT_TRUE(zero) << "a block given back wiped comes back wiped";
  OPENSSL_free(s);
  drain();
}

// A block freed on one thread may be handed out on another: blocks are plain C-heap blocks.
TEST(RecordBuffers, EachThreadHasItsOwnPoolAndABlockMayCrossThreads) {
  drain();
  void* made_here = OPENSSL_malloc(kRecordBufferMin);
  std::size_t kept_there = 99;
  std::thread([&] {
    EXPECT_EQ(record_buffers_kept(), 0u);
    OPENSSL_free(made_here);  // kept by that thread's pool
    kept_there = record_buffers_kept();
  }).join();
  EXPECT_EQ(kept_there, 1u);
  EXPECT_EQ(record_buffers_kept(), 0u);
}

// OpenSSL frees its thread state from thread-exit handlers, which may run after the pool gave its
// blocks back: a block freed then goes to free(), not to a pool nobody will empty.
TEST(RecordBuffers, ABlockFreedAfterTheThreadsPoolEndedIsNotKept) {
  std::size_t kept_at_end = 99;
  std::thread([&] {
    struct Late {
      std::size_t* out;
      ~Late() {
        OPENSSL_free(OPENSSL_malloc(kRecordBufferMin));
        *out = record_buffers_kept();
      }
    };
    thread_local Late late{&kept_at_end};  // constructed before the pool's reaper: destroyed after it
    (void)late;
    for (int i = 0; i < 3; ++i) OPENSSL_free(OPENSSL_malloc(kRecordBufferMin));
    EXPECT_EQ(record_buffers_kept(), 1u);
  }).join();
  EXPECT_EQ(kept_at_end, 0u);
}

// The pool under real records: a TLS 1.3 session with SSL_MODE_RELEASE_BUFFERS (as the gateway
// runs them) reads and writes through it, the same blocks cycling, and the bytes arrive intact.
TEST(RecordBuffers, RecordsOfASessionThatReleasesItsBuffersCycleThroughThePool) {
  drain();
  LeafMinter minter(CertificateAuthority::generate());
  SslCtxPtr server_ctx = make_guest_context();
  auto leaf = minter.leaf_for("api.example.com");
  SslPtr server = new_guest_session(server_ctx.get(), leaf.get(), minter.leaf_key());
  SslCtxPtr client_ctx(SSL_CTX_new(TLS_client_method()));
  SslPtr client(SSL_new(client_ctx.get()));
  SSL_set_connect_state(client.get());
  ASSERT_TRUE(testing::handshake(client.get(), server.get()));
  SSL_set_mode(client.get(), SSL_MODE_RELEASE_BUFFERS);
  SSL_set_mode(server.get(), SSL_MODE_RELEASE_BUFFERS);
  SSL_free_buffers(client.get());
  SSL_free_buffers(server.get());
  std::size_t kept_after_first = 0;
  for (int round = 0; round < 50; ++round) {
    const std::string request = "GET /" + std::to_string(round) + " HTTP/1.1\r\nHost: api.example.com\r\n\r\n";
    ASSERT_EQ(SSL_write(client.get(), request.data(), static_cast<int>(request.size())), static_cast<int>(request.size()));
    char buf[512];
    const int n = SSL_read(server.get(), buf, sizeof buf);
    ASSERT_EQ(std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0), request);
    const std::string response(300, static_cast<char>('a' + round % 26));
    ASSERT_EQ(SSL_write(server.get(), response.data(), static_cast<int>(response.size())), 300);
    ASSERT_EQ(SSL_read(client.get(), buf, sizeof buf), 300);
    ASSERT_EQ(std::string(buf, 300), response);
    if (round == 0) kept_after_first = record_buffers_kept();
    EXPECT_GE(record_buffers_kept(), 1u);
    EXPECT_EQ(record_buffers_kept(), kept_after_first) << "round " << round << ": the same blocks cycle";
  }
  drain();
}

}  // namespace
}  // namespace airlock::tls
