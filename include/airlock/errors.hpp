#pragma once
// Control-path errors. The data path never throws; it returns values.
#include <stdexcept>
#include <string>
#include <string_view>

namespace airlock {

// A configuration that breaks a rule of secrets-spec §1/§2. The message names the secret
// (by its env var, never its value) and the rule.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// `text` in double quotes for an error message, with quotes, backslashes, control bytes and
// non-ASCII bytes escaped (\xNN), so a message stays one printable line. Never pass a value.
std::string quote_for_message(std::string_view text);

}  // namespace airlock
