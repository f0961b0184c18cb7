#pragma once
// Control-path errors. The data path never throws; it returns values.
#include <stdexcept>
#include <string>

namespace airlock {

// A configuration that breaks a rule of secrets-spec §1/§2. The message names the secret
// (by its env var, never its value) and the rule.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace airlock
