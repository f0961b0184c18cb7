#include "cli/egress.hpp"

#include "sandbox/sandbox.hpp"

#include <airlock/errors.hpp>

namespace airlock::cli {

policy::Rule parse_egress_rule(std::string_view text) {
  policy::Rule rule = policy::parse_rule_or_throw(text);
  if (rule.action == policy::Action::kAllow &&
      (rule.protocol == policy::Protocol::kUdp || rule.protocol == policy::Protocol::kIcmp)) {
    throw ConfigError("rule '" + std::string(text) + "': airlock relays TCP and DNS only; other " +
                      std::string(policy::to_string(rule.protocol)) + " is always dropped");
  }
  return rule;
}

namespace {

std::vector<IpAddress> host_addresses() {
  std::vector<IpAddress> out;
  for (const std::string& cidr : sandbox::host_interface_addresses()) {
    if (auto ip = IpAddress::parse(cidr.substr(0, cidr.find('/')))) out.push_back(*ip);
  }
  return out;
}

}  // namespace

std::shared_ptr<const policy::Policy> make_egress_policy(const std::vector<std::string>& command_line,
                                                         const std::vector<std::string>& config_file) {
  std::vector<policy::Rule> rules;
  for (const auto* list : {&command_line, &config_file})
    for (const std::string& text : *list) rules.push_back(parse_egress_rule(text));
  return std::make_shared<const policy::Policy>(std::move(rules), host_addresses());
}

std::vector<std::string> guard_destinations(const policy::Policy& policy) {
  std::vector<std::string> all = sandbox::default_blocked_destinations();
  // The policy's `host` group already holds this host's addresses: no second interface walk.
  std::vector<std::string> hosts;
  for (const IpAddress& ip : policy.groups().host_addresses()) hosts.push_back(policy::Cidr::host(ip).to_string());
  for (std::string& text : sandbox::with_ipv4_embeddings(std::move(hosts))) all.push_back(std::move(text));
  std::vector<std::string> kept;
  for (std::string& text : all) {
    auto range = policy::Cidr::parse(text);
    if (!range || !policy.opens(*range)) kept.push_back(std::move(text));
  }
  return kept;
}

}  // namespace airlock::cli
