// libFuzzer target for the machine interface's spec parser and control requests (issue 16).
//
// Input: any bytes, parsed as a spec and as a request line. Properties (trap on failure): parsing
// either succeeds or throws ConfigError, nothing else; the input is wiped either way; an accepted
// spec encodes to text that parses again to a spec with the same secrets (env, placeholder,
// hosts, value) and the same command; a ConfigError's message never holds a secret value the
// input carried (every accepted value is checked against it).
#include "machine/protocol.hpp"
#include "machine/spec.hpp"

#include <cstddef>
#include <cstdint>
#include <string>

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace airlock;
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::string text = input;
  try {
    machine::Spec spec = machine::parse_spec(text);
    check(text.empty());
    std::string encoded = machine::encode_spec(spec);
    machine::Spec again = machine::parse_spec(encoded);
    check(again.config.secrets.size() == spec.config.secrets.size());
    for (std::size_t i = 0; i < spec.config.secrets.size(); ++i) {
      const SecretBinding& a = spec.config.secrets[i];
      const SecretBinding& b = again.config.secrets[i];
      check(a.env_var() == b.env_var() && a.placeholder() == b.placeholder() && a.hosts() == b.hosts());
      check(b.value().equals(a.value().expose()));
      check(a.any_host() == b.any_host() && a.scopes() == b.scopes() && a.on_violation() == b.on_violation());
    }
    check(again.command == spec.command && again.mounts == spec.mounts && again.env == spec.env);
  } catch (const ConfigError&) {
    check(text.empty());
  }
  try {
    machine::Request r = machine::parse_request(input);
    if (auto* run = std::get_if<machine::RunRequest>(&r)) {
      machine::RunRequest back = std::get<machine::RunRequest>(machine::parse_request(machine::encode_request(r)));
      check(back.argv == run->argv && back.env == run->env && back.stdin_bytes == run->stdin_bytes);
    }
  } catch (const ConfigError&) {
  }
  machine::AgentFrameReader reader;
  reader.feed(input);
  for (int i = 0; i < 1000; ++i) {
    auto frame = reader.next();
    if (!frame) break;
    check(frame->payload.size() <= machine::kMaxAgentFrameBytes);
    if (frame->type == 'X') (void)machine::parse_exit_payload(frame->payload);
  }
  return 0;
}
