// Adversarial: no buffer that held a real value goes back to the allocator with the value in it.
// std::string's own growth frees its old buffer as it is; a request rewritten into a buffer that
// then grows (a request pipelined ahead of a buffered body, a head or body that outgrows its
// reservation) left a copy of the value in freed heap memory. This binary's free() scans every
// block it frees, while a test arms it, for the value.
#include "secrets/engine/engine_test_util.hpp"
#include "secrets/engine/message_gate.hpp"

#include <http/content_coding.hpp>

#include <gtest/gtest.h>
#include <openssl/crypto.h>

#include <malloc.h>

#include <atomic>
#include <cstring>

namespace {

// The value the freed-memory scan looks for (a test sets it; empty: the scan is off).
char g_needle[64];
std::size_t g_needle_size = 0;
std::atomic<int> g_freed_with_value{0};

}  // namespace

// Only this test binary: glibc's free, which operator delete and the C libraries (zlib, brotli,
// zstd) call, passes through the scan first.
extern "C" void __libc_free(void* p);
extern "C" void free(void* p) {
  if (p != nullptr && g_needle_size > 0) {
    const std::size_t n = malloc_usable_size(p);
    if (memmem(p, n, g_needle, g_needle_size) != nullptr) g_freed_with_value.fetch_add(1);
  }
  __libc_free(p);
}

namespace airlock::secrets {
namespace {

using namespace testing;

constexpr std::string_view kValue = "real-value-Zq7Kx9Lm2Pw4Rt6Vy8";  // longer than the inline buffer

// Arms the scan for kValue while it lives.
struct FreedMemoryScan {
  FreedMemoryScan() {
    std::memcpy(g_needle, kValue.data(), kValue.size());
    g_freed_with_value = 0;
    g_needle_size = kValue.size();
  }
  ~FreedMemoryScan() { g_needle_size = 0; }
  int freed_with_value() const { return g_freed_with_value.load(); }
};

// What the gateway does with the output: write it, then wipe it.
void wipe_out(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

struct FreedMemory : ::testing::Test {
  FakePins pins;
  std::shared_ptr<SecretSet> set;
  void SetUp() override {
    pins.pin(api_ip(), "api.example.com");
    InjectionScopes scopes;
    scopes.body = true;
    scopes.query = true;
    set = std::make_shared<SecretSet>(
        make_secrets({SecretSpec("KEY", std::string(kValue), {"api.example.com"}, scopes)}), ViolationAction::kUnset);
  }
  static std::string body_request(std::size_t placeholders, std::size_t filler) {
    std::string body;
    for (std::size_t i = 0; i < placeholders; ++i) body += "{\"k\":\"$MSB_KEY\"}";
    body += std::string(filler, 'x');
    return "POST /b HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
           body;
  }
};

// The case that was noticed: a request with a substituted header, then in the same read a
// request whose buffered body is emitted after it; the output grows past what the gateway
// reserved and its old buffer (with the first request's value) was freed unwiped.
TEST_F(FreedMemory, AnOutputThatGrowsAfterAValueIsWipedBeforeItsOldBufferIsFreed) {
  std::string input = "GET /a HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Bearer $MSB_KEY\r\n\r\n";
  input += body_request(1, 32 * 1024);
  {
    FreedMemoryScan scan;
    {
      RequestRewriter rw(*set, tls_context(&pins));
      std::string out, guest;
      out.reserve(2 * 200 + 4096);  // what the gateway reserves for a read of its first 200 bytes
      ASSERT_EQ(rw.feed(std::string_view(input).substr(0, 200), out, guest), Status::kOk);
      ASSERT_NE(out.find(kValue), std::string::npos);  // the first request, substituted
      ASSERT_EQ(rw.feed(std::string_view(input).substr(200), out, guest), Status::kOk);
      ASSERT_GT(out.size(), 32u * 1024);
      wipe_out(out);
    }
    EXPECT_EQ(scan.freed_with_value(), 0);
  }
}

// The rewritten head outgrows its buffer after a substituted header (more fields follow), and
// the rewritten body outgrows its reservation (values much longer than their placeholders).
TEST_F(FreedMemory, AHeadOrBodyThatOutgrowsItsBufferLeavesNoValueBehind) {
  std::string head = "GET /a?q=$MSB_KEY HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Bearer $MSB_KEY\r\n";
  for (int i = 0; i < 200; ++i) head += "X-Filler-" + std::to_string(i) + ": " + std::string(40, 'f') + "\r\n";
  head += "\r\n";
  FreedMemoryScan scan;
  for (const std::string& input : {head, body_request(400, 0), head + body_request(400, 0)}) {
    {
      RequestRewriter rw(*set, tls_context(&pins));
      std::string out, guest;
      for (std::size_t at = 0; at < input.size(); at += 1000) {
        ASSERT_EQ(rw.feed(std::string_view(input).substr(at, 1000), out, guest), Status::kOk);
      }
      ASSERT_NE(out.find(kValue), std::string::npos);
      wipe_out(out);
    }
    EXPECT_EQ(scan.freed_with_value(), 0) << input.substr(0, 40);
  }
}

// A chunked body is re-chunked piece by piece into the output; many small pieces each with a
// value make the output grow many times within one call.
TEST_F(FreedMemory, ARechunkedBodyGrowingTheOutputLeavesNoValueBehind) {
  std::string input = "POST /c HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 300; ++i) input += "e\r\n\"k\":\"$MSB_KEY\"\r\n";  // 14 bytes each
  input += "0\r\n\r\n";
  FreedMemoryScan scan;
  {
    RequestRewriter rw(*set, tls_context(&pins));
    std::string out, guest;
    ASSERT_EQ(rw.feed(input, out, guest), Status::kOk);
    ASSERT_NE(out.find(kValue), std::string::npos);
    wipe_out(out);
  }
  EXPECT_EQ(scan.freed_with_value(), 0);
}

// A buffered body is rewritten as it arrives (upload4): the rewritten request held values long
// before its end. A violation in a later read blocks it (at the body's end); the request
// rewritten up to the violation never leaves, and its buffer (values in the head and the body)
// goes back wiped.
TEST_F(FreedMemory, ABufferedBodyBlockedHalfwayLeavesNoValueBehind) {
  InjectionScopes scopes;
  scopes.headers = true;
  scopes.body = true;
  const SecretSet two(make_secrets({SecretSpec("KEY", std::string(kValue), {"api.example.com"}, scopes),
                                    SecretSpec("OTHER", "other-FAKE", {"other.example.net"}, {})}),
                      ViolationAction::kUnset);
  std::string body;
  for (int i = 0; i < 200; ++i) body += "{\"k\":\"$MSB_KEY\"}";
  body += std::string(20000, 'x') + "$MSB_OTHER" + std::string(20000, 'y');
  const std::string input = "POST /b HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Bearer $MSB_KEY\r\n"
                            "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  FreedMemoryScan scan;
  {
    RequestRewriter rw(two, tls_context(&pins));
    std::string out, guest;
    Status status = Status::kOk;
    std::size_t at = 0;
    for (; at < input.size() && status == Status::kOk; at += 4096) {
      status = rw.feed(std::string_view(input).substr(at, 4096), out, guest);
    }
    ASSERT_EQ(status, Status::kBlocked);  // at the body's end
    EXPECT_EQ(out, "");
    EXPECT_EQ(rw.blocked()->secret_env, "OTHER");
    EXPECT_EQ(rw.finish(out), Status::kBlocked);
  }
  EXPECT_EQ(scan.freed_with_value(), 0);
}

// A compressed body with an injection due is decoded, rewritten and encoded again: neither the
// encoder's intermediate buffers (the rewritten plain body among them) nor its state (zlib's
// window holds the plain bytes) may go back to the allocator unwiped.
TEST_F(FreedMemory, ACompressedBodyRewrittenAndEncodedAgainLeavesNoValueBehind) {
  std::string plain;
  for (int i = 0; i < 200; ++i) plain += "{\"k\":\"$MSB_KEY\",\"n\":" + std::to_string(i) + "}";
  for (const std::vector<http::Coding>& codings :
       std::vector<std::vector<http::Coding>>{{http::Coding::kGzip}, {http::Coding::kDeflate}, {http::Coding::kBrotli},
                                               {http::Coding::kZstd}, {http::Coding::kGzip, http::Coding::kZstd}}) {
    std::string body, names;
    ASSERT_EQ(http::encode_all(codings, plain, body), http::CodingError::kNone);
    for (const http::Coding c : codings) names += (names.empty() ? "" : ", ") + std::string(http::coding_name(c));
    const std::string input = "POST /z HTTP/1.1\r\nHost: api.example.com\r\nContent-Encoding: " + names +
                              "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    FreedMemoryScan scan;
    {
      RequestRewriter rw(*set, tls_context(&pins));
      std::string out, guest;
      ASSERT_EQ(rw.feed(input, out, guest), Status::kOk) << names;
      ASSERT_FALSE(rw.take_substitutions().empty()) << names;
      wipe_out(out);
    }
    EXPECT_EQ(scan.freed_with_value(), 0) << names;
  }
}

// The protocol-neutral gate (HTTP/2 streams, WebSocket messages): body pieces appended to an
// output that grows.
TEST_F(FreedMemory, TheMessageGatesOutputGrowingLeavesNoValueBehind) {
  FreedMemoryScan scan;
  {
    MessageGate gate(*set, tls_context(&pins));
    Request r;
    r.method = "POST";
    r.authority = "api.example.com";
    r.target = "/m";
    ASSERT_EQ(gate.on_headers(r, false, false), Status::kOk);
    std::string out;
    for (int i = 0; i < 300; ++i) ASSERT_EQ(gate.on_data("{\"k\":\"$MSB_KEY\"}", false, out), Status::kOk);
    ASSERT_EQ(gate.on_data({}, true, out), Status::kOk);
    ASSERT_NE(out.find(kValue), std::string::npos);
    wipe_out(out);
    for (Field& f : r.headers) OPENSSL_cleanse(f.value.data(), f.value.size());
    OPENSSL_cleanse(r.target.data(), r.target.size());
  }
  EXPECT_EQ(scan.freed_with_value(), 0);
}

}  // namespace
}  // namespace airlock::secrets
