#include <airlock/errors.hpp>
#include <airlock/host_pattern.hpp>

#include "common/concat.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace airlock {
namespace {

constexpr std::size_t kMaxNameBytes = 253;
constexpr std::size_t kMaxLabelBytes = 63;

char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

bool is_label_char(char c) noexcept {
  c = lower(c);
  return (c >= 'a' && c <= 'z') || is_digit(c) || c == '-' || c == '_';
}

[[noreturn]] void reject(std::string_view text, std::string_view rule) {
  throw ConfigError("host " + quote_for_message(text) + ": " + std::string(rule));
}

std::string_view strip_trailing_dot(std::string_view s) noexcept {
  if (!s.empty() && s.back() == '.') s.remove_suffix(1);
  return s;
}

// An IPv6 literal, bare or in brackets, in canonical bracketed form; nullopt if not one.
bool ipv6_canonical(std::string_view s, std::string& out) {
  if (s.size() >= 2 && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
  if (s.empty() || s.size() >= INET6_ADDRSTRLEN || s.find(':') == std::string_view::npos) return false;
  char buf[INET6_ADDRSTRLEN + 1];
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = '\0';
  unsigned char bytes[16];
  if (inet_pton(AF_INET6, buf, bytes) != 1) return false;
  char text[INET6_ADDRSTRLEN];
  if (inet_ntop(AF_INET6, bytes, text, sizeof text) == nullptr) return false;
  out = concat("[", text, "]");  // not `"[" + std::string`: common/concat.hpp says why
  return true;
}

bool is_ascii(std::string_view s) noexcept {
  return std::none_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}

// Checks a DNS name (no `*`, trailing dot already stripped). `original` is for the message.
void validate_name(std::string_view name, std::string_view original) {
  if (name.empty()) reject(original, "name must not be empty");
  if (!is_ascii(name)) reject(original, "non-ASCII names are not accepted: give the A-label (xn--...)");
  if (name.size() > kMaxNameBytes) reject(original, "name is longer than 253 bytes");
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = name.find('.', start);
    const std::string_view label = name.substr(start, dot == std::string_view::npos ? name.npos : dot - start);
    if (label.empty()) reject(original, "empty label (two dots in a row, or a leading dot)");
    if (label.size() > kMaxLabelBytes) reject(original, "label longer than 63 bytes");
    for (char c : label) {
      if (!is_label_char(c)) {
        reject(original, "invalid character " + quote_for_message(std::string_view(&c, 1)) +
                             " (letters, digits, '-' and '_' only)");
      }
    }
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
}

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower(c);
  return out;
}

}  // namespace

std::string normalize_host(std::string_view host) { return to_lower(strip_trailing_dot(host)); }

HostPattern HostPattern::parse(std::string_view text) {
  if (text.find('*') != std::string_view::npos) return wildcard(text);
  return exact(text);
}

HostPattern HostPattern::exact(std::string_view name) {
  if (name.find('*') != std::string_view::npos) {
    reject(name, "`*` is not allowed in an exact host; use a host pattern such as *.example.com");
  }
  std::string v6;
  if (ipv6_canonical(name, v6)) return HostPattern(std::move(v6), false);
  if (name.find_first_of("[]:") != std::string_view::npos && is_ascii(name)) {
    reject(name, "not a valid host name or IP address");
  }
  const std::string_view stripped = strip_trailing_dot(name);
  validate_name(stripped, name);
  // A dotted quad is a valid exact host (an IPv4 literal). A name whose last label is all
  // digits but that is not an address is neither a DNS name nor an IP: reject it.
  const std::string_view last = stripped.substr(stripped.rfind('.') + 1);
  if (std::all_of(last.begin(), last.end(), is_digit)) {
    unsigned char bytes[4];
    const std::string s(stripped);
    if (inet_pton(AF_INET, s.c_str(), bytes) != 1) reject(name, "looks like an IP address but is not a valid one");
  }
  return HostPattern(to_lower(stripped), false);
}

HostPattern HostPattern::wildcard(std::string_view pattern) {
  if (pattern == "*" || pattern == "*.") {
    reject(pattern, "a bare `*` would match every host: use allow_any_host_dangerous instead");
  }
  if (pattern.size() < 2 || pattern.substr(0, 2) != "*.") {
    if (pattern.find('*') == std::string_view::npos) {
      reject(pattern, "a host pattern must begin with `*.`; list exact names as allowed hosts");
    }
    reject(pattern, "`*` is only allowed as the whole leading label (`*.example.com`)");
  }
  const std::string_view suffix_with_dot = pattern.substr(2);
  if (suffix_with_dot.find('*') != std::string_view::npos) {
    reject(pattern, "`*` is only allowed as the whole leading label (`*.example.com`)");
  }
  if (suffix_with_dot.find_first_of("[]:") != std::string_view::npos && is_ascii(suffix_with_dot)) {
    reject(pattern, "IP literals cannot be wildcards; list the address as an exact host");
  }
  const std::string_view suffix = strip_trailing_dot(suffix_with_dot);
  validate_name(suffix, pattern);
  if (suffix.find('.') == std::string_view::npos) {
    reject(pattern, "a wildcard over a single label would match a whole top-level domain; "
                    "use at least two labels after `*.`");
  }
  const std::string_view last = suffix.substr(suffix.rfind('.') + 1);
  if (std::all_of(last.begin(), last.end(), is_digit)) {
    reject(pattern, "IP literals cannot be wildcards; list the address as an exact host");
  }
  return HostPattern("*." + to_lower(suffix), true);
}

bool HostPattern::matches(std::string_view host) const noexcept {
  host = strip_trailing_dot(host);
  if (host.empty()) return false;
  if (!wildcard_) {
    if (host.size() != text_.size()) {
      // An IPv6 host may be written differently from the canonical form.
      if (!text_.empty() && text_.front() == '[' && host.find(':') != std::string_view::npos) {
        try {
          std::string canonical;
          return ipv6_canonical(host, canonical) && canonical == text_;
        } catch (...) {
          return false;
        }
      }
      return false;
    }
    for (std::size_t i = 0; i < host.size(); ++i) {
      if (lower(host[i]) != text_[i]) return false;
    }
    return true;
  }
  // text_ is `*.suffix`; the host must be `<labels>.suffix` with at least one non-empty label.
  const std::string_view dot_suffix = std::string_view(text_).substr(1);  // ".suffix"
  if (host.size() <= dot_suffix.size()) return false;
  const std::size_t head = host.size() - dot_suffix.size();
  for (std::size_t i = 0; i < dot_suffix.size(); ++i) {
    if (lower(host[head + i]) != dot_suffix[i]) return false;
  }
  const std::string_view prefix = host.substr(0, head);
  if (prefix.front() == '.' || prefix.back() == '.') return false;
  if (prefix.find("..") != std::string_view::npos) return false;
  return std::all_of(prefix.begin(), prefix.end(), [](char c) { return c == '.' || is_label_char(c); });
}

}  // namespace airlock
