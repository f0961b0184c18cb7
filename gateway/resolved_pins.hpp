#pragma once
// The standalone pin source (weaker than the sandbox's DNS pin set, which sees the workload's own
// DNS answers): the gateway resolves a name itself with the host resolver and pins the
// connection's destination for that name only when it is among the answers. Used for CONNECT
// authorities (the gateway connects only to what it resolved, so the pin holds by construction)
// and, when no pin set is given, for the SNI (or Host) of transparent connections.
#include <secrets/engine/engine.hpp>

#include <string>
#include <vector>

namespace airlock::gateway {

class ResolvedPins final : public secrets::PinQuery {
 public:
  ResolvedPins() = default;  // pins nothing
  ResolvedPins(std::string name, std::vector<IpAddress> addresses);
  // True when `ip` is among the answers for the resolved name and `pattern` matches that name.
  bool pinned(const IpAddress& ip, const HostPattern& pattern) const override;
  const std::string& name() const noexcept { return name_; }
  const std::vector<IpAddress>& addresses() const noexcept { return addresses_; }

 private:
  std::string name_;
  std::vector<IpAddress> addresses_;
};

}  // namespace airlock::gateway
