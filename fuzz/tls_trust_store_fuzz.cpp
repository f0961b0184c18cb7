// The Java trust store from a PEM text (the host's CA bundle plus the gateway's CA): certificate
// blocks are base64-decoded and wrapped, never parsed; any input gives a DER SEQUENCE or nothing.
#include "tls/trust_store.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string store =
      airlock::tls::java_trust_store(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!store.empty() && static_cast<unsigned char>(store[0]) != 0x30) __builtin_trap();
  return 0;
}
