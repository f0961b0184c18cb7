#pragma once
// Secrets a reload removed (issue 17): the guest may still hold their placeholders, and nothing
// may carry one anywhere any more, so each stays known to the engine as a binding no request is
// ever eligible for (allowed only for a reserved `.invalid` name, which no DNS answer, pin or
// certificate can match; its value random bytes, never a real one). Its placeholder is then a
// violation wherever it goes, on every connection, until the secret is added again or the
// gateway restarts. Control path (reloads): may throw.
#include <secrets/engine/engine.hpp>

#include <memory>
#include <string>
#include <vector>

namespace airlock::gateway {

// The only host a retired binding allows (RFC 6761: `.invalid` never resolves).
inline constexpr const char* kRetiredHost = "removed-by-reload.airlock.invalid";

struct RetiringResult {
  std::shared_ptr<const secrets::SecretSet> set;  // `next`, or a copy of it with the retired bindings
  std::vector<std::string> retired;               // env names of the retired bindings in `set`, sorted
};

// Every secret of `previous` (its retired bindings included) that `next` does not bind (by env
// name) is retired in the result, unless its placeholder would clash with one of `next` (shared,
// or one inside the other).
RetiringResult retire_removed(const secrets::SecretSet& previous, std::shared_ptr<const secrets::SecretSet> next);

}  // namespace airlock::gateway
