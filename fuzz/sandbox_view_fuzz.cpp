// The pure parts of the guest's view: the placeholder rewrite of scanned files (no value may
// survive it), and the parsers of /etc/passwd, /etc/subuid and --id-range.
// Input: byte 0 = number of values (0-3), then per value one length byte and its bytes, then the
// content to rewrite (also fed to the parsers).
#include "sandbox/view.hpp"

#include <airlock/errors.hpp>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace airlock::sandbox;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> owned;
  if (!in.empty()) {
    const std::size_t n = static_cast<std::uint8_t>(in[0]) % 4;
    in.remove_prefix(1);
    for (std::size_t i = 0; i < n && !in.empty(); ++i) {
      const std::size_t len = std::min<std::size_t>(static_cast<std::uint8_t>(in[0]) % 16, in.size() - 1);
      owned.emplace_back(in.substr(1, len));
      in.remove_prefix(1 + len);
    }
  }
  std::vector<ValueReplacement> values;
  static const std::string placeholders[] = {"$MSB_A", "$MSB_B", "$MSB_C"};
  for (std::size_t i = 0; i < owned.size(); ++i) values.push_back({owned[i], placeholders[i]});

  std::vector<std::size_t> found;
  if (const auto out = replace_values(in, values, &found)) {
    for (const auto& v : values) {
      if (!v.value.empty() && out->find(v.value) != std::string::npos) std::abort();  // a value survived
    }
    if (found.empty()) std::abort();
  } else {
    for (const auto& v : values) {
      if (!v.value.empty() && in.find(v.value) != std::string_view::npos) std::abort();  // a value missed
    }
  }

  (void)ids_in_passwd(in, true);
  for (const IdRange& r : ranges_in_subid(in)) {
    if (r.count == 0) std::abort();
  }
  try {
    const IdRange r = parse_id_range(in);
    if (r.count < kIdsPerSandbox || r.first == 0) std::abort();
    (void)free_slots(IdRange{r.first, std::min<std::uint64_t>(r.count, 64 * kIdsPerSandbox)}, {r.first + 1}, {});
  } catch (const airlock::ConfigError&) {
  }
  return 0;
}
