#pragma once
// Host patterns of secrets-spec §2: exact names and leading-label wildcards.
#include <string>
#include <string_view>

namespace airlock {

class HostPattern {
 public:
  // `api.example.com` → exact; `*.example.com` → wildcard. Throws ConfigError for a bare `*`,
  // a wildcard over a single label (`*.com`), a `*` anywhere but the whole leading label,
  // IP literals in wildcard form, non-ASCII or otherwise invalid names.
  static HostPattern parse(std::string_view text);
  static HostPattern exact(std::string_view name);          // rejects any `*`
  static HostPattern wildcard(std::string_view pattern);    // requires `*.` prefix

  // Case-insensitive; one trailing dot on either side is ignored. A wildcard matches names
  // ending in `.<suffix>` at any depth, never the apex itself.
  bool matches(std::string_view host) const noexcept;

  bool is_wildcard() const noexcept { return wildcard_; }
  // Normalized text: lower case, no trailing dot; wildcards keep their `*.`.
  const std::string& text() const noexcept { return text_; }

  friend bool operator==(const HostPattern&, const HostPattern&) = default;

 private:
  HostPattern(std::string text, bool wildcard) : text_(std::move(text)), wildcard_(wildcard) {}
  std::string text_;
  bool wildcard_ = false;
};

// Lower-cases and strips one trailing dot: the form SNI and Host are compared in.
std::string normalize_host(std::string_view host);

}  // namespace airlock
