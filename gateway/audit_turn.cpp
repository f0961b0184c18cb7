#include "gateway/audit_turn.hpp"

#include <asio/post.hpp>
#include <asio/redirect_error.hpp>
#include <asio/use_awaitable.hpp>

namespace airlock::gateway {

namespace {
// The batch of the turn under way on this thread (each event-loop thread runs one io_context).
thread_local std::shared_ptr<AuditTurn> current;
}  // namespace

AuditTurn::AuditTurn(AuditLog& log, const asio::any_io_executor& executor) : log_(log), done_(executor) {
  done_.expires_at(asio::steady_timer::time_point::max());
}

void AuditTurn::flush() {
  ok_ = log_.write_lines(lines_, records_);
  flushed_ = true;
  std::string().swap(lines_);
  done_.cancel();
}

asio::awaitable<bool> AuditTurn::written() {
  if (!flushed_) {
    std::error_code ignored;  // cancelled by flush()
    co_await done_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  }
  co_return ok_;
}

std::shared_ptr<AuditTurn> add_to_turn(AuditLog& log, const AuditRecord& record, const asio::any_io_executor& executor) {
  if (!log.enabled()) {
    log.write(record);  // the observer still sees it
    return nullptr;
  }
  if (!current || &current->log_ != &log) {
    // A batch for another log of the process (rare) is written in its own turn, not merged.
    auto turn = std::make_shared<AuditTurn>(log, executor);
    if (!current) current = turn;
    asio::post(executor, [turn] {
      if (current == turn) current.reset();  // records added from now on start the next batch
      turn->flush();
    });
    log.append_line(turn->lines_, record);
    ++turn->records_;
    return turn;
  }
  log.append_line(current->lines_, record);
  ++current->records_;
  return current;
}

}  // namespace airlock::gateway
