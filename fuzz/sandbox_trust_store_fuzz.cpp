// The guest's Java trust store from a PEM text (the host's CA bundle plus the gateway's CA):
// certificate blocks are base64-decoded and wrapped, never parsed; any input gives a store or a
// SandboxError, never a crash.
#include "sandbox/internal.hpp"

#include <cstddef>
#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string pem(reinterpret_cast<const char*>(data), size);
  try {
    const std::string store = airlock::sandbox::detail::java_trust_store(pem);
    if (store.size() < 2 || static_cast<unsigned char>(store[0]) != 0x30) __builtin_trap();
  } catch (const airlock::sandbox::SandboxError&) {
  }
  return 0;
}
