// libFuzzer target: the ClientHello peek parser on arbitrary bytes, whole and in every prefix
// split the gateway could see, with the default and a small bound.
#include "tls/client_hello.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  using namespace airlock::tls;
  ClientHelloInfo whole = peek_client_hello(in);
  if (whole.status == PeekStatus::kHello) {
    if (whole.hello_bytes == 0 || whole.hello_bytes > in.size()) std::abort();
    if (whole.sni.size() > 253) std::abort();
    // The hello alone parses the same.
    ClientHelloInfo again = peek_client_hello(in.substr(0, whole.hello_bytes));
    if (again.status != PeekStatus::kHello || again.sni != whole.sni || again.alpn != whole.alpn) std::abort();
  }
  // A prefix never contradicts the whole: it needs more, or is already decided the same way.
  std::size_t cut = size / 2;
  ClientHelloInfo prefix = peek_client_hello(in.substr(0, cut));
  if (prefix.status != PeekStatus::kNeedMore && prefix.status != whole.status && whole.status != PeekStatus::kNeedMore)
    if (!(prefix.status == PeekStatus::kHello && whole.status == PeekStatus::kHello)) std::abort();
  peek_client_hello(in, 64);
  return 0;
}
