// Differential: AuditRecord's JSON string escaping must equal nlohmann's dump(replace) for any
// bytes (the audit format must not change), and its output must parse back to the same value;
// members written once (AuditMembers) and taken by a record give the same text.
#include "gateway/audit_record.hpp"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::string ours;
  airlock::gateway::append_json_string(ours, input);
  const std::string reference =
      nlohmann::ordered_json(input).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (ours != reference) std::abort();
  airlock::gateway::AuditRecord r("substitution");
  r.number("connection", size).string("sni", input);
  const auto parsed = nlohmann::ordered_json::parse(r.object());
  if (parsed["sni"].get<std::string>() != nlohmann::ordered_json::parse(reference).get<std::string>()) std::abort();
  // A connection's members written once and taken whole: the same record text.
  airlock::gateway::AuditMembers own;
  own.number("connection", size).string("sni", input);
  airlock::gateway::AuditRecord reused("substitution");
  reused.members(own);
  if (reused.object() != r.object()) std::abort();
  return 0;
}
