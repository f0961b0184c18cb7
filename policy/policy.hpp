#pragma once
// The egress policy: ordered rules, first match wins, an implicit deny after the last rule.
// Pure and immutable once built: share one Policy read-only across threads.
#include "policy/address.hpp"
#include "policy/rule.hpp"

#include <secrets/engine/engine.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::policy {

// What the gateway knows about a new flow when it decides.
struct Flow {
  IpAddress destination;      // the original destination (SO_ORIGINAL_DST), never re-resolved
  Protocol protocol = Protocol::kTcp;  // kTcp, kUdp or kIcmp (never kAny)
  std::uint16_t port = 0;
  std::string_view sni;       // normalized (lower case, no trailing dot); empty when none or not TLS
};

struct Decision {
  Action action = Action::kDeny;
  // Index into Policy::rules() of the rule that matched, or one of the built-in verdicts below.
  std::size_t rule = kNoRule;
  static constexpr std::size_t kNoRule = static_cast<std::size_t>(-1);      // the implicit final deny
  static constexpr std::size_t kQuic = static_cast<std::size_t>(-2);        // UDP to port 443
  static constexpr std::size_t kDnsOverTls = static_cast<std::size_t>(-3);  // TCP to port 853
  bool allowed() const noexcept { return action == Action::kAllow; }
};

// Why a DNS answer must not reach the guest as it is.
enum class AnswerVerdict : std::uint8_t {
  kPass,
  kDeniedDomain,  // a name in the query or its CNAME chain is denied by a domain rule
  kRebinding,     // an address in private, loopback, link-local, metadata or host space
                  // that no explicit rule allows
};
std::string_view to_string(AnswerVerdict verdict) noexcept;

class Policy {
 public:
  // The default rules, appended after the configured ones:
  //   allow@public:tcp, allow@host:any:53, and the implicit deny of everything else (other UDP
  //   and ICMP are dropped unless a rule allows them: issue 5, item 5).
  static std::vector<Rule> default_rules();

  // `rules` are the configured rules, in order; when `append_defaults`, default_rules() follow
  // them. `host_addresses` are the gateway's own addresses (the `host` group).
  explicit Policy(std::vector<Rule> rules = {}, std::vector<IpAddress> host_addresses = {},
                  bool append_defaults = true);
  // Parses each line with parse_rule_or_throw (control path; throws ConfigError).
  static Policy from_text(std::span<const std::string> lines, std::vector<IpAddress> host_addresses = {},
                          bool append_defaults = true);

  // Every rule in evaluation order (configured, then defaults).
  const std::vector<Rule>& rules() const noexcept { return rules_; }
  std::size_t configured_rules() const noexcept { return configured_; }
  const AddressGroups& groups() const noexcept { return groups_; }

  // The connection decision. Before any rule: UDP to port 443 (QUIC, which cannot be intercepted
  // or scanned) is denied so clients fall back to TCP, and TCP to port 853 (DNS over TLS, which
  // would bypass the pin set and denied domains) is denied; the gateway may decide to intercept
  // such a flow instead and not ask. Then the rules, in order. IP, CIDR and group rules match on
  // the destination address (an IPv4-mapped IPv6 address is taken as the IPv4 it embeds; a
  // group holds every address that embeds one of its IPv4 members, see embedded_ipv4; a CIDR
  // deny also matches those forms, a CIDR allow only the addresses it names). Domain rules:
  //   allow matches when `pins` holds the destination for a name the rule matches AND the SNI,
  //         when present, matches the rule too;
  //   deny  matches when the SNI matches the rule, or, with no SNI, when the destination is
  //         pinned to a matching name (a deny is never escaped by forging a different pin).
  // With pins == nullptr nothing is pinned.
  Decision decide(const Flow& flow, const secrets::PinQuery* pins) const;

  // True when the first domain rule that matches `name` is a deny for every protocol and port:
  // the forwarder answers such queries with NXDOMAIN.
  bool denies_domain(std::string_view name) const;

  // May a DNS answer point a name at `ip`? Public, multicast and reserved addresses may; an
  // address in private, loopback, link-local, metadata or host space (itself or the IPv4 address
  // it embeds) only when the first configured IP, CIDR or (non-public) group rule containing it
  // is an allow.
  bool answer_address_allowed(const IpAddress& ip) const;

  // True when a configured allow rule names an address, CIDR or group (other than public; with
  // the IPv6 forms of its IPv4 members) that overlaps `range`: a coarser filter in front of the policy (the sandbox's nftables guard)
  // must let that range through and leave the decision to decide().
  bool opens(const Cidr& range) const;

  // What a decision means, for audit records and errors: the rule's canonical text
  // ("deny@private"), or why a built-in verdict was taken.
  std::string explain(const Decision& decision) const;

  // The rebind filter's decision for one answer: `names` are the query name and its CNAME
  // chain (text form), `addresses` every A/AAAA address the answer carries.
  AnswerVerdict check_answer(std::span<const std::string> names,
                             std::span<const IpAddress> addresses) const;

 private:
  bool destination_matches(const Rule& rule, const Flow& flow, const secrets::PinQuery* pins) const;

  std::vector<Rule> rules_;
  std::size_t configured_ = 0;
  AddressGroups groups_;
};

}  // namespace airlock::policy
