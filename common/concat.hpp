#pragma once
// concat("n", std::to_string(i), ".example"): one string from pieces, appended in order.
//
// Why not `"n" + std::to_string(i)`: g++ 12.2's libstdc++ turns `literal + std::string&&` into an
// insert at the front whose memcpy the -O3 optimizer misjudges as overlapping, and -Werror makes
// the bogus -Wrestrict fatal (GCC PR 105329, fixed in 12.3 and 13). Appending never takes that
// path. scripts/build release builds with g++ 12 and clang 14 at -O3 and catches a new site.
#include <string>
#include <string_view>

namespace airlock {

template <typename... Parts>
std::string concat(const Parts&... parts) {
  std::string out;
  out.reserve((std::string_view(parts).size() + ... + 0));
  (out.append(std::string_view(parts)), ...);
  return out;
}

}  // namespace airlock
