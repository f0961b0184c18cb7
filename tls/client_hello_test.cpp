#include "tls/client_hello.hpp"
#include "tls/test_support.hpp"

#include <gtest/gtest.h>

namespace airlock::tls {
namespace {

using testing::alpn_extension;
using testing::hello_message;
using testing::records;
using testing::sni_extension;

TEST(ClientHelloPeek, RealOpenSslHelloGivesSniAndAlpn) {
  std::string hello = testing::openssl_client_hello("API.Example.com.", {"h2", "http/1.1"});
  ClientHelloInfo info = peek_client_hello(hello);
  ASSERT_EQ(info.status, PeekStatus::kHello) << info.error;
  EXPECT_EQ(info.sni, "api.example.com");
  EXPECT_EQ(info.alpn, (std::vector<std::string>{"h2", "http/1.1"}));
  EXPECT_EQ(info.hello_bytes, hello.size());
}

TEST(ClientHelloPeek, EveryStrictPrefixNeedsMore) {
  std::string hello = testing::openssl_client_hello("api.example.com", {"http/1.1"});
  for (std::size_t n = 0; n < hello.size(); ++n)
    ASSERT_EQ(peek_client_hello(std::string_view(hello).substr(0, n)).status, PeekStatus::kNeedMore) << n;
}

TEST(ClientHelloPeek, HelloSplitAcrossManyRecords) {
  std::string msg = hello_message({sni_extension("a.b.example.org"), alpn_extension({"http/1.1"})});
  for (std::size_t size : {1u, 7u, 50u, 100u}) {
    std::string bytes = records(msg, size);
    ClientHelloInfo info = peek_client_hello(bytes);
    ASSERT_EQ(info.status, PeekStatus::kHello) << size << " " << info.error;
    EXPECT_EQ(info.sni, "a.b.example.org");
    EXPECT_EQ(info.alpn, std::vector<std::string>{"http/1.1"});
    EXPECT_EQ(info.hello_bytes, bytes.size());
    EXPECT_EQ(peek_client_hello(std::string_view(bytes).substr(0, bytes.size() - 1)).status, PeekStatus::kNeedMore);
  }
}

TEST(ClientHelloPeek, BytesAfterTheHelloAreNotPartOfIt) {
  std::string bytes = records(hello_message({sni_extension("x.example")}));
  std::size_t size = bytes.size();
  bytes += std::string("\x17\x03\x03\x00\x01Z", 6);  // early data after the hello records
  ClientHelloInfo info = peek_client_hello(bytes);
  ASSERT_EQ(info.status, PeekStatus::kHello);
  EXPECT_EQ(info.hello_bytes, size);
}

TEST(ClientHelloPeek, NoSniNoAlpn) {
  ClientHelloInfo info = peek_client_hello(records(hello_message({})));
  ASSERT_EQ(info.status, PeekStatus::kHello);
  EXPECT_EQ(info.sni, "");
  EXPECT_TRUE(info.alpn.empty());
  EXPECT_EQ(peek_client_hello(records(hello_message({}, false))).status, PeekStatus::kHello);
}

TEST(ClientHelloPeek, NotTls) {
  EXPECT_EQ(peek_client_hello("GET / HTTP/1.1\r\n").status, PeekStatus::kNotTls);
  EXPECT_EQ(peek_client_hello("G").status, PeekStatus::kNotTls);
  EXPECT_EQ(peek_client_hello(std::string("\x16\x02", 2)).status, PeekStatus::kNotTls);
  EXPECT_EQ(peek_client_hello(std::string("\x16\x03\x09", 3)).status, PeekStatus::kNotTls);
  EXPECT_EQ(peek_client_hello(std::string("\x16", 1)).status, PeekStatus::kNeedMore);
  EXPECT_EQ(peek_client_hello("").status, PeekStatus::kNeedMore);
}

TEST(ClientHelloPeek, MalformedHellosAreInvalid) {
  auto check = [](const std::string& bytes, const char* what) {
    ClientHelloInfo info = peek_client_hello(bytes);
    EXPECT_EQ(info.status, PeekStatus::kInvalid) << what;
    EXPECT_TRUE(info.sni.empty()) << what;
  };
  check(records(hello_message({sni_extension("a.example"), sni_extension("b.example")})), "duplicate extension");
  check(records(hello_message({sni_extension(std::string("a\0b.example", 11))})), "NUL in SNI");
  check(records(hello_message({sni_extension("a..example")})), "empty label");
  check(records(hello_message({sni_extension("a/b.example")})), "slash in SNI");
  check(records(hello_message({sni_extension("")})), "empty SNI");
  check(records(hello_message({sni_extension(std::string(254, 'a'))})), "too long SNI");
  check(records(hello_message({alpn_extension({"h2", ""})})), "empty ALPN name");
  {
    testing::Extension two{0, ""};
    std::string entries;
    for (const char* n : {"a.example", "b.example"}) {
      entries.push_back(0);
      testing::put16(entries, std::string_view(n).size());
      entries += n;
    }
    testing::put16(two.data, entries.size());
    two.data += entries;
    check(records(hello_message({two})), "two host_name entries");
  }
  {
    testing::Extension bad = sni_extension("a.example");
    bad.data[1] = static_cast<char>(bad.data[1] + 1);  // list length past the extension
    check(records(hello_message({bad})), "server_name list length");
  }
  {
    std::string msg = hello_message({sni_extension("a.example")});
    msg[0] = 2;  // ServerHello
    check(records(msg), "not a ClientHello");
  }
  {
    std::string msg = hello_message({sni_extension("a.example")});
    check(records(msg + std::string("\x01", 1)), "trailing handshake bytes");
  }
  {
    std::string msg = hello_message({sni_extension("a.example")});
    std::string bytes = records(msg.substr(0, 10)) + records(msg.substr(10), 16384, 23);
    check(bytes, "application data inside the hello");
  }
  {
    std::string msg = hello_message({sni_extension("a.example")});
    msg.pop_back();  // extensions length now overruns
    msg[3] = static_cast<char>(msg[3] - 1);
    check(records(msg), "truncated extensions");
  }
  check(std::string("\x16\x03\x01\x00\x00", 5), "empty record");
  check(std::string("\x16\x03\x01\x40\x01", 5), "record over 16 KiB");
}

TEST(ClientHelloPeek, BoundedInput) {
  // A hello that declares more than the bound is refused as soon as its header is seen.
  std::string msg = hello_message({sni_extension("a.example"), {0xfe00, std::string(20000, 'x')}});
  std::string bytes = records(msg);
  EXPECT_EQ(peek_client_hello(std::string_view(bytes).substr(0, 9)).status, PeekStatus::kInvalid);
  // Bytes that keep needing more are refused once the bound is reached.
  std::string many;
  while (many.size() < kMaxClientHelloBytes + 100) many += records(std::string("\x01\x00", 2));
  ClientHelloInfo small = peek_client_hello(std::string_view(many).substr(0, 100), 64);
  EXPECT_EQ(small.status, PeekStatus::kInvalid);
  // A hello that fits a small bound is still accepted under it.
  std::string ok = records(hello_message({sni_extension("a.example")}));
  EXPECT_EQ(peek_client_hello(ok, ok.size() + 1).status, PeekStatus::kHello);
  EXPECT_EQ(peek_client_hello(ok, ok.size() - 1).status, PeekStatus::kInvalid);
}

}  // namespace
}  // namespace airlock::tls
