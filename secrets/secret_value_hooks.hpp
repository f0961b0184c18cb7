#pragma once
// Test-only observation of SecretValue's memory. Not part of the public API.
#include <cstddef>

namespace airlock::testing {

// Called with a mapping that held a value, after it was wiped and before it is unmapped.
// Tests install one to prove the wipe happens; production code never sets it.
using WipeObserver = void (*)(const char* data, std::size_t capacity);
void set_wipe_observer(WipeObserver observer) noexcept;

}  // namespace airlock::testing
