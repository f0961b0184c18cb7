#pragma once
// Per-request audit records in one write per event-loop turn (issue 15). Every HTTP/1 request
// that carries a substitution writes a record before it leaves (fail closed: a request whose
// record is not in the log is blocked), and that write was one syscall per request. A record
// added here joins its thread's batch for the current turn; the batch is written with one write
// once every handler that was ready in the same turn had its go (a posted handler runs after
// those queued before it), and each request waits for that write before it is forwarded. A batch
// is written whole or not at all, so `written()` is true only when this caller's records are in
// the log. Nothing is held between turns: an idle connection holds no batch.
#include "gateway/audit_log.hpp"

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/steady_timer.hpp>

#include <cstddef>
#include <memory>
#include <string>

namespace airlock::gateway {

class AuditTurn {
 public:
  AuditTurn(AuditLog& log, const asio::any_io_executor& executor);
  // Completes once the batch was written or failed: true when every record of it is in the log.
  asio::awaitable<bool> written();

 private:
  friend std::shared_ptr<AuditTurn> add_to_turn(AuditLog&, const AuditRecord&, const asio::any_io_executor&);
  void flush();
  AuditLog& log_;
  std::string lines_;
  std::size_t records_ = 0;
  bool flushed_ = false;
  bool ok_ = false;
  asio::steady_timer done_;  // cancelled by flush(): wakes every waiter
};

// Adds `record` to this thread's batch for `log` (started, and its flush posted on `executor`,
// when there is none yet). Null when the log is disabled (the observer has the record; there is
// nothing to wait for).
std::shared_ptr<AuditTurn> add_to_turn(AuditLog& log, const AuditRecord& record, const asio::any_io_executor& executor);

}  // namespace airlock::gateway
