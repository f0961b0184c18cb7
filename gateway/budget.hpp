#pragma once
// What the gateway spends on its clients' behalf, bounded (issue 11 §6, issue 12 §8): the memory
// it holds for a connection (a request body the engine buffers to rewrite, its hold-back, output
// waiting for a slow peer) and open connections, for all clients together and per client (a
// source address; a sandbox is one client). Pure accounting, thread-safe, no I/O.
#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace airlock::gateway {

struct BudgetLimits {
  std::size_t memory_bytes = std::size_t{1} << 30;          // all clients together
  std::size_t client_memory_bytes = std::size_t{256} << 20;  // one client
  std::size_t connections = 10'000;                          // open connections, all clients
  std::size_t client_connections = 1'000;                    // one client's
  // The last `reserve_connections` of `connections` admit only a client that holds fewer than
  // `light_client_connections`: one client that fills the gateway leaves room for the others.
  // The gateway keeps it at most a tenth of `connections`.
  std::size_t reserve_connections = 1'000;
  std::size_t light_client_connections = 16;
};

enum class Refusal : unsigned char {
  kNone,
  kClientConnections,  // the client holds client_connections already
  kConnections,        // the gateway holds `connections`
  kReserve,            // only the reserve is left, and the client is not light
};
const char* describe(Refusal refusal) noexcept;

enum class Over : unsigned char { kNone, kClient, kGateway };

class Budget {
  struct Account {
    std::string client;
    std::atomic<std::size_t> bytes{0};
    std::size_t connections = 0;  // under Budget::mutex_
  };

 public:
  explicit Budget(BudgetLimits limits);
  Budget(const Budget&) = delete;
  Budget& operator=(const Budget&) = delete;

  // One admitted connection. Gives back what it holds (bytes and its connection) when destroyed.
  class Ticket {
   public:
    ~Ticket();
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    // Sets what this connection holds now. Over::kNone, or which budget that exceeds (the bytes
    // are counted all the same: the caller frees them and holds 0).
    Over hold(std::size_t bytes) noexcept;
    std::size_t held() const noexcept { return held_; }
    // Counts the connection in `open` (its event loop's open connections, which place the next
    // ones: loop_placement.hpp) until the ticket is destroyed. Once per ticket.
    void occupy(std::atomic<std::size_t>& open) noexcept {
      loop_ = &open;
      loop_->fetch_add(1, std::memory_order_relaxed);
    }

   private:
    friend class Budget;
    Ticket(Budget& budget, std::shared_ptr<Account> account) : budget_(budget), account_(std::move(account)) {}
    Budget& budget_;
    std::shared_ptr<Account> account_;
    std::size_t held_ = 0;
    std::atomic<std::size_t>* loop_ = nullptr;
  };

  // A ticket for a new connection of `client`, or nullptr with the reason in `why`.
  std::unique_ptr<Ticket> admit(const std::string& client, Refusal& why);

  const BudgetLimits& limits() const noexcept { return limits_; }
  std::size_t held_bytes() const noexcept { return bytes_.load(); }
  std::size_t connections() const;
  std::size_t clients() const;

 private:
  void release(Ticket& ticket) noexcept;

  BudgetLimits limits_;
  std::atomic<std::size_t> bytes_{0};
  mutable std::mutex mutex_;
  std::size_t connections_ = 0;
  std::unordered_map<std::string, std::shared_ptr<Account>> accounts_;  // clients with a connection
};

}  // namespace airlock::gateway
