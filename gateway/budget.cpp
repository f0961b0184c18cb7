#include "gateway/budget.hpp"

#include <algorithm>

namespace airlock::gateway {

const char* describe(Refusal refusal) noexcept {
  switch (refusal) {
    case Refusal::kNone: return "admitted";
    case Refusal::kClientConnections: return "the client holds its maximum of open connections";
    case Refusal::kConnections: return "the gateway holds its maximum of open connections";
    case Refusal::kReserve: return "only the reserve for clients with few connections is left";
  }
  return "refused";
}

Budget::Budget(BudgetLimits limits) : limits_(limits) {
  limits_.connections = std::max<std::size_t>(limits_.connections, 1);
  limits_.client_connections = std::clamp<std::size_t>(limits_.client_connections, 1, limits_.connections);
  limits_.reserve_connections = std::min(limits_.reserve_connections, limits_.connections - 1);
}

std::unique_ptr<Budget::Ticket> Budget::admit(const std::string& client, Refusal& why) {
  std::lock_guard lock(mutex_);
  auto found = accounts_.find(client);
  const std::size_t mine = found == accounts_.end() ? 0 : found->second->connections;
  why = Refusal::kNone;
  if (mine >= limits_.client_connections) why = Refusal::kClientConnections;
  else if (connections_ >= limits_.connections) why = Refusal::kConnections;
  else if (connections_ >= limits_.connections - limits_.reserve_connections && mine >= limits_.light_client_connections)
    why = Refusal::kReserve;
  if (why != Refusal::kNone) return nullptr;
  if (found == accounts_.end()) {
    auto account = std::make_shared<Account>();
    account->client = client;
    found = accounts_.emplace(client, std::move(account)).first;
  }
  ++found->second->connections;
  ++connections_;
  return std::unique_ptr<Ticket>(new Ticket(*this, found->second));
}

void Budget::release(Ticket& ticket) noexcept {
  ticket.hold(0);
  std::lock_guard lock(mutex_);
  --connections_;
  if (--ticket.account_->connections == 0) accounts_.erase(ticket.account_->client);
}

std::size_t Budget::connections() const {
  std::lock_guard lock(mutex_);
  return connections_;
}

std::size_t Budget::clients() const {
  std::lock_guard lock(mutex_);
  return accounts_.size();
}

Budget::Ticket::~Ticket() {
  if (loop_) loop_->fetch_sub(1, std::memory_order_relaxed);
  budget_.release(*this);
}

Over Budget::Ticket::hold(std::size_t bytes) noexcept {
  if (bytes == held_) return Over::kNone;
  if (bytes < held_) {
    const std::size_t less = held_ - bytes;
    account_->bytes -= less;
    budget_.bytes_ -= less;
    held_ = bytes;
    return Over::kNone;
  }
  const std::size_t more = bytes - held_;
  held_ = bytes;
  const std::size_t client = account_->bytes += more;
  const std::size_t total = budget_.bytes_ += more;
  if (client > budget_.limits_.client_memory_bytes) return Over::kClient;
  if (total > budget_.limits_.memory_bytes) return Over::kGateway;
  return Over::kNone;
}

}  // namespace airlock::gateway
