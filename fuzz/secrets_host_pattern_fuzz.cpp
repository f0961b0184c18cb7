// libFuzzer target for host patterns (secrets-spec §2).
//
// Input: a pattern text and a host name separated by the first '\n'. Properties (trap on failure):
// parse either accepts or throws ConfigError, nothing else; an accepted pattern's normalized text
// parses again to an equal pattern (normalization is idempotent); matching is case-insensitive and
// ignores one trailing dot; a wildcard never matches its own apex; an exact pattern matches its text.
#include <airlock/errors.hpp>
#include <airlock/host_pattern.hpp>

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t split = input.find('\n');
  const std::string_view text = input.substr(0, split);
  const std::string_view host = split == std::string_view::npos ? std::string_view{} : input.substr(split + 1);

  std::optional<airlock::HostPattern> pattern;
  try {
    pattern = airlock::HostPattern::parse(text);
  } catch (const airlock::ConfigError&) {
    return 0;
  }
  const auto again = airlock::HostPattern::parse(pattern->text());
  check(again == *pattern);

  const bool matched = pattern->matches(host);
  check(pattern->matches(upper(host)) == matched);
  if (!host.empty() && host.back() != '.') check(pattern->matches(std::string(host) + ".") == matched);

  if (pattern->is_wildcard()) {
    const std::string apex = pattern->text().substr(2);
    check(!pattern->matches(apex));
    check(pattern->matches("a." + apex));
    check(pattern->matches("a.b." + apex));
  } else {
    check(pattern->matches(pattern->text()));
  }
  return 0;
}
