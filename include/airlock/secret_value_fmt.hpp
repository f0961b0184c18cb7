#pragma once
// {fmt} support for SecretValue: it formats as "<redacted>", whatever the format spec says.
// Without this header fmt refuses to format a SecretValue at compile time (it has no
// formatter and is not implicitly convertible), which is the other safe outcome.
#include <airlock/secret_value.hpp>

#include <fmt/format.h>

template <>
struct fmt::formatter<airlock::SecretValue> {
  constexpr auto parse(fmt::format_parse_context& ctx) {
    auto it = ctx.begin();
    while (it != ctx.end() && *it != '}') ++it;  // any spec is accepted and ignored
    return it;
  }
  template <typename FormatContext>
  auto format(const airlock::SecretValue&, FormatContext& ctx) const {
    return fmt::format_to(ctx.out(), "<redacted>");
  }
};
