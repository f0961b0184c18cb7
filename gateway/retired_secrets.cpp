#include "gateway/retired_secrets.hpp"

#include <airlock/errors.hpp>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>

namespace airlock::gateway {
namespace {

bool binds(const std::vector<SecretBinding>& secrets, const std::string& env) {
  return std::any_of(secrets.begin(), secrets.end(), [&](const SecretBinding& s) { return s.env_var() == env; });
}

bool clashes(const std::vector<SecretBinding>& secrets, const std::string& placeholder) {
  return std::any_of(secrets.begin(), secrets.end(), [&](const SecretBinding& s) {
    const std::string& other = s.placeholder();
    return other.find(placeholder) != std::string::npos || placeholder.find(other) != std::string::npos;
  });
}

// A value that is no secret: 32 random hex digits (it is never sent: no request is eligible).
SecretValue random_value() {
  std::array<unsigned char, 16> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) throw ConfigError("no random bytes for a retired secret");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string text;
  for (unsigned char b : bytes) {
    text += kHex[b >> 4];
    text += kHex[b & 15];
  }
  SecretValue value(text);
  OPENSSL_cleanse(text.data(), text.size());
  return value;
}

SecretBinding retired_binding(const SecretBinding& removed) {
  SecretBuilder b;
  b.env(removed.env_var()).value(random_value()).allow_host(kRetiredHost);
  if (removed.placeholder() != default_placeholder(removed.env_var())) b.placeholder(removed.placeholder());
  return b.build();
}

}  // namespace

RetiringResult retire_removed(const secrets::SecretSet& previous, std::shared_ptr<const secrets::SecretSet> next) {
  const std::vector<SecretBinding>& kept = next->secrets();
  std::vector<SecretBinding> retired;
  std::vector<std::string> names;
  for (const SecretBinding& s : previous.secrets()) {
    if (binds(kept, s.env_var()) || clashes(kept, s.placeholder()) || clashes(retired, s.placeholder())) continue;
    retired.push_back(retired_binding(s));
    names.push_back(s.env_var());
  }
  RetiringResult out;
  if (retired.empty()) {
    out.set = std::move(next);
    return out;
  }
  std::vector<SecretBinding> all;
  for (const SecretBinding& s : kept) all.push_back(s.clone());
  for (SecretBinding& s : retired) all.push_back(std::move(s));
  validate_secret_set(all);
  // next->action() is already the effective one; the retired bindings name no action of their own.
  out.set = std::make_shared<secrets::SecretSet>(std::move(all), next->action(), next->options());
  std::sort(names.begin(), names.end());
  out.retired = std::move(names);
  return out;
}

}  // namespace airlock::gateway
