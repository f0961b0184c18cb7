// One connection's life: destination, first-flight classification, interception, the engine on
// the request direction, the splice back, and its audit record.
#include "gateway/core.hpp"
#include "gateway/h2_pump.hpp"
#include "gateway/proxy_request.hpp"
#include "gateway/resolved_pins.hpp"
#include "gateway/response_scrubbers.hpp"
#include "gateway/retired_secrets.hpp"
#include "gateway/socket_util.hpp"
#include "gateway/streams.hpp"
#include "gateway/upstream_pool.hpp"
#include "gateway/websocket_pump.hpp"
#include "http/response_decoder.hpp"
#include "http/small_fifo.hpp"
#include "tls/client_hello.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <openssl/crypto.h>
#include <openssl/x509.h>

#include <malloc.h>
#include <string.h>
#include <strings.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <variant>

namespace airlock::gateway {
namespace {

using namespace asio::experimental::awaitable_operators;
using asio::redirect_error;
using asio::use_awaitable;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::ordered_json;

// Wipes the bytes and keeps the capacity (the buffer is reused for the next write). glibc's
// explicit_bzero is its vectorized memset behind a compiler barrier, never optimized away:
// about 4 times faster than OPENSSL_cleanse's 8-byte store loop over a 64 KiB request.
void wipe(std::string& s) {
  if (!s.empty()) explicit_bzero(s.data(), s.size());
  s.clear();
}

struct Filter;
struct Relay;

struct Connection {
  Core& core;
  std::uint64_t id;
  ListenerKind kind;
  tcp::socket guest;
  tcp::socket upstream;
  asio::steady_timer watchdog;
  Clock::time_point started = Clock::now();
  Clock::time_point deadline;
  Clock::time_point last_activity = Clock::now();
  bool streaming = false;  // the deadline follows activity (idle timeout)
  Clock::time_point head_due = Clock::time_point::max();  // a request head is in progress until then
  bool finished = false;
  bool timed_out = false;
  bool aborted = false;    // closed on purpose (block, reset, timeout): the pumps just stop
  bool idle_released = false;  // release_idle_state() gave back what it could; cleared on activity
  Filter* filter = nullptr;    // the HTTP/1 relay's, while it runs (in its Relay)
  bool relaying = false;       // a Relay owns the rest of its life (start_relay): it finishes it
  Relay* relay = nullptr;      // that Relay, while it lives
  bool upstream_release_tried = false;  // release_idle_upstream() ran; cleared on activity

  std::optional<SocketAddress> client;
  std::optional<SocketAddress> destination;
  std::string authority;       // proxy: what the client asked for (host:port)
  std::string authority_host;
  std::uint16_t authority_port = 0;
  bool absolute_http = false;  // explicit proxy, plain HTTP in absolute form
  std::string sni;
  std::vector<std::string> alpn;  // what the guest's ClientHello offered
  std::string protocol;           // what the intercepted connection speaks ("h2"; empty: HTTP/1)
  std::string handling = "none";
  std::string decision = "closed";
  std::string detail;
  std::uint64_t bytes_up = 0;
  std::uint64_t bytes_down = 0;
  ResolvedPins own_pins;       // the gateway's own resolution (proxy, standalone)
  const secrets::PinQuery* pins = &own_pins;
  std::unique_ptr<Budget::Ticket> ticket;  // this connection's share of the memory budget
  const SecretsSnapshot* secrets = nullptr;  // the request side's, while forwarding

  Connection(Core& c, tcp::socket s, ListenerKind k, std::unique_ptr<Budget::Ticket> t)
      : core(c), id(c.next_id++), kind(k), guest(std::move(s)), upstream(guest.get_executor()),
        watchdog(guest.get_executor()), deadline(Clock::now() + c.options.timeouts.first_flight + std::chrono::seconds(1)),
        ticket(std::move(t)) {}

  void phase(std::chrono::milliseconds limit) {
    streaming = false;
    deadline = Clock::now() + limit;
    watchdog.cancel();  // the watchdog re-reads the deadline
  }
  void stream() {
    streaming = true;
    last_activity = Clock::now();
    watchdog.cancel();
  }
  void touch() {
    last_activity = Clock::now();
    idle_released = false;
    upstream_release_tried = false;
  }
  // Closes both sides; with `reset_guest` the guest sees a TCP reset.
  void close_all(bool reset_guest) {
    aborted = true;
    std::error_code ec;
    if (reset_guest && guest.is_open()) set_reset_on_close(guest.native_handle());
    guest.close(ec);
    upstream.close(ec);
  }
  // How log lines name it: "connection 7 to 203.0.113.2:443 (SNI api.example.com)".
  std::string describe() const {
    return "connection " + std::to_string(id) + " to " + (destination ? destination->to_string() : std::string("?")) +
           (sni.empty() ? std::string() : " (SNI " + sni + ")");
  }
  Json base_record(const char* event) const {
    Json r;
    r["event"] = event;
    r["connection"] = id;
    if (destination) r["destination"] = destination->to_string();
    r["sni"] = sni;
    return r;
  }
  // The same members, written without a JSON document (the per-request records).
  AuditRecord audit_record(std::string_view event) const {
    AuditRecord r(event);
    r.members(own_members());
    return r;
  }
  // This connection's members of every record (connection, destination, sni), escaped and
  // written once and again only when the destination or the SNI changed.
  const AuditMembers& own_members() const {
    if (!own_members_valid || own_members_destination != destination || own_members_sni != sni) {
      own_members_text.clear();
      own_members_text.number("connection", id);
      if (destination) own_members_text.string("destination", destination->to_string());
      own_members_text.string("sni", sni);
      own_members_destination = destination;
      own_members_sni = sni;
      own_members_valid = true;
    }
    return own_members_text;
  }
  mutable AuditMembers own_members_text;
  mutable std::optional<SocketAddress> own_members_destination;
  mutable std::string own_members_sni;
  mutable bool own_members_valid = false;
};

// A connection idle this long gives back its per-request state (see release_idle_state).
constexpr std::chrono::milliseconds kIdleRelease{1000};
bool release_idle_state(Connection& c);
bool release_idle_upstream(Connection& c);
std::chrono::milliseconds upstream_release_after(const Connection& c);
bool poolable(const Connection& c);

// Re-armed by its own handler (no coroutine: an idle connection holds only the timer's wait);
// phase() and stream() cancel the wait so that the next round re-reads the deadline.
void arm_watchdog(std::shared_ptr<Connection> c) {
  if (c->finished) return;
  const auto now = Clock::now();
  auto due = c->streaming ? std::min(c->last_activity + c->core.options.timeouts.idle, c->head_due) : c->deadline;
  if (now >= due) {
    c->timed_out = true;
    if (c->streaming && now >= c->head_due) c->detail = "a request head did not end within its deadline";
    c->close_all(false);
    return;
  }
  if (c->streaming && !c->idle_released) {
    const bool idle_long_enough = now >= c->last_activity + kIdleRelease;
    if (idle_long_enough) c->idle_released = release_idle_state(*c);
    // Tried and not at rest yet: again a kIdleRelease from now. Not idle long enough (activity
    // since this wait was armed): at kIdleRelease after that activity, not after now.
    if (!c->idle_released) due = std::min(due, (idle_long_enough ? now : c->last_activity) + kIdleRelease);
  }
  // Much later, a parked HTTP/1 connection also gives back its upstream connection.
  if (c->streaming && c->idle_released && c->relay != nullptr && !c->upstream_release_tried &&
      (upstream_release_after(*c).count() > 0 || poolable(*c))) {
    const auto upstream_idle = upstream_release_after(*c);
    if (now >= c->last_activity + upstream_idle) {
      c->upstream_release_tried = release_idle_upstream(*c);
      if (!c->upstream_release_tried) due = std::min(due, now + kIdleRelease);  // not at rest yet
    } else {
      due = std::min(due, c->last_activity + upstream_idle);
    }
  }
  c->watchdog.expires_at(due);
  Connection& conn = *c;
  conn.watchdog.async_wait([c = std::move(c)](std::error_code) mutable { arm_watchdog(std::move(c)); });
}

asio::awaitable<IoResult> read_until(tcp::socket& socket, char* buf, std::size_t size, Clock::time_point until) {
  asio::steady_timer timer(socket.get_executor());
  timer.expires_at(until);
  IoResult r;
  std::error_code timer_ec;
  auto which = co_await (socket.async_read_some(asio::buffer(buf, size), redirect_error(use_awaitable, r.error)) ||
                         timer.async_wait(redirect_error(use_awaitable, timer_ec)));
  if (which.index() == 1) {
    r.error = asio::error::timed_out;
  } else {
    r.bytes = std::get<0>(which);
  }
  co_return r;
}

asio::awaitable<std::vector<IpAddress>> resolve(const std::string& host, std::uint16_t port, Clock::time_point until) {
  auto executor = co_await asio::this_coro::executor;
  tcp::resolver resolver(executor);
  asio::steady_timer timer(executor);
  timer.expires_at(until);
  std::error_code ec, timer_ec;
  std::vector<IpAddress> out;
  auto which = co_await (resolver.async_resolve(host, std::to_string(port), redirect_error(use_awaitable, ec)) ||
                         timer.async_wait(redirect_error(use_awaitable, timer_ec)));
  if (which.index() != 0 || ec) co_return out;
  for (const auto& entry : std::get<0>(which)) {
    auto address = entry.endpoint().address();
    std::optional<IpAddress> ip;
    if (address.is_v6() && address.to_v6().is_v4_mapped())
      ip = IpAddress::parse(asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6()).to_string());
    else
      ip = IpAddress::parse(address.to_string());
    if (ip && std::find(out.begin(), out.end(), *ip) == out.end()) out.push_back(*ip);
  }
  co_return out;
}

asio::awaitable<std::error_code> connect_to(tcp::socket& socket, const SocketAddress& to, Clock::time_point until) {
  std::error_code ec;
  if (socket.is_open()) socket.close(ec);
  asio::ip::address address = asio::ip::make_address(to.ip.to_string(), ec);
  if (ec) co_return ec;
  tcp::endpoint endpoint(address, to.port);
  asio::steady_timer timer(socket.get_executor());
  timer.expires_at(until);
  std::error_code timer_ec;
  auto which = co_await (socket.async_connect(endpoint, redirect_error(use_awaitable, ec)) ||
                         timer.async_wait(redirect_error(use_awaitable, timer_ec)));
  if (which.index() == 1) {
    socket.close(timer_ec);
    co_return std::error_code(asio::error::timed_out);
  }
  if (!ec) socket.set_option(tcp::no_delay(true), timer_ec);
  co_return ec;
}

asio::awaitable<std::error_code> write_raw(tcp::socket& socket, std::string_view text) {
  std::error_code ec;
  co_await asio::async_write(socket, asio::buffer(text.data(), text.size()), redirect_error(use_awaitable, ec));
  co_return ec;
}

// On an explicit-proxy plain-HTTP connection every request must name the authority the
// connection was opened for: a keep-alive client that moves on to another host would otherwise
// have its request sent to the first one. Runs its own parser over the same bytes as the engine.
class AuthorityCheck final : private http::RequestSink {
 public:
  AuthorityCheck(std::string host, std::uint16_t port) : host_(std::move(host)), port_(port) {}
  // False when a request in `in` targets another authority (or is not absolute-form).
  bool accept(std::string_view in) {
    if (done_) return !misrouted_;
    if (parser_.awaiting_upgrade()) {
      // Bounded like the engine's hold, which blocks the connection past it.
      constexpr std::size_t kMax = secrets::RequestRewriter::kMaxHeldAfterUpgrade;
      if (held_.size() < kMax) held_.append(in.substr(0, kMax - held_.size()));
      return !misrouted_;
    }
    std::size_t used = parser_.parse(in, *this);
    if (parser_.awaiting_upgrade()) {
      held_.assign(in.substr(used));  // HTTP again or the new protocol: the answer decides
    } else if (parser_.error() != http::ParseError::kNone || used < in.size()) {
      done_ = true;  // the engine judges malformed framing
    }
    return !misrouted_;
  }
  // The answer to an upgrade request: after a refusal the held bytes are requests to check.
  bool upgrade_answered(bool switched) {
    if (!parser_.awaiting_upgrade()) return !misrouted_;
    parser_.resolve_upgrade(switched);
    std::string held;
    held.swap(held_);
    if (switched) {
      done_ = true;  // the rest is the new protocol, not HTTP
      return !misrouted_;
    }
    return accept(held);
  }

 private:
  void on_head(http::RequestHead& head) override {
    std::string host;
    std::uint16_t port = 0;
    if (!absolute_http_authority(head.view(head.target), host, port) || host != host_ || port != port_) misrouted_ = true;
  }
  void on_body(std::string_view) override {}
  void on_framing(http::FramingKind, std::string_view) override {}
  void on_message_end() override {}

  std::string host_;
  std::uint16_t port_;
  http::RequestParser parser_;
  std::string held_;  // guest bytes after an upgrade request, until its answer
  bool misrouted_ = false;
  bool done_ = false;
};

// What the request direction runs through: the engine's rewriter, its scanner, or nothing.
struct Filter {
  // The secrets the rewriter or scanner works with (before them: it outlives them), and what a
  // new rewriter on a newer snapshot needs (see rebind_at_boundary).
  std::shared_ptr<const SecretsSnapshot> snapshot;
  secrets::ConnectionContext context;
  // Per forwarded request whose final response head has not come yet, in order: when its head
  // was complete (latency) and the snapshot it was sent under (its response may echo those values).
  struct InFlight {
    Clock::time_point head_done;
    std::uint64_t generation;
  };
  http::SmallFifo<InFlight> in_flight;  // allocates nothing while no response is due
  std::uint64_t answering = 0;  // the snapshot of the request whose response is being read
  std::vector<Clock::time_point> answered;  // heads of responses about to reach the guest
  std::optional<secrets::RequestRewriter> rewriter;
  std::optional<secrets::StreamScanner> scanner;
  std::unique_ptr<AuthorityCheck> authority;  // explicit proxy, absolute-form HTTP only (344 bytes)
  // What every response path scrubs through (refresh_scrubbers): one scrubber per snapshot still
  // needed. Borrowed by `responses` and `websocket` (declared before them: it outlives them).
  ResponseScrubbers scrubbers;
  // With the rewriter: the responses, read and scrubbed. On the heap: an idle connection gives it
  // back between responses (park_responses, ~1.5 KiB with its last head's fields).
  std::unique_ptr<http::ResponseStream> responses;
  // After a 101 to a WebSocket upgrade (issue 14): both directions message by message.
  std::unique_ptr<WebSocketSession> websocket;
  std::string websocket_first;  // the upstream's bytes after the 101, in the read that held it
  bool scrub_reported = false;  // a response echoed a value: audited once per connection
  // Every final response on the current upstream connection kept it open for the next request
  // (keeps_alive): only then may the connection serve another guest connection (the loop's pool).
  bool upstream_reusable = true;

  // An idle connection's rewriter (~2 KiB of parser and engine state) is released between
  // requests while pump_up waits for the guest's next bytes (release_idle_state), and made again,
  // on the same snapshot and with what it knew about values reaching this upstream, as soon as
  // the read returns: every other use of `rewriter` happens after that (or, in pump_down, only
  // while an upgrade is awaited, which is never at a message boundary).
  bool up_waiting = false;     // pump_up is suspended in its read, or parked
  // Parking (see Relay): an idle connection's two reads are cancelled (park_idle_relay) and
  // their coroutines end; each direction then waits for its socket with a plain handler.
  bool down_waiting = false;   // pump_down is suspended in its read with nothing held back, or parked
  bool park_up = false;        // its read was cancelled to park the direction
  bool park_down = false;
  bool up_parked = false;      // the direction waits with a plain handler (no coroutine)
  bool down_parked = false;
  Stream* guest = nullptr;     // the Relay's streams
  Stream* upstream = nullptr;
  bool rewriter_parked = false;
  bool parked_flowed = false;
  bool park_rewriter() {
    if (!up_waiting || !rewriter || websocket || !rewriter->at_message_boundary()) return false;
    parked_flowed = rewriter->values_may_flow();
    rewriter.reset();
    rewriter_parked = true;
    return true;
  }
  bool responses_parked = false;
  bool parked_undo = false;
  void park_responses() {
    if (!responses || !responses->at_rest()) return;
    parked_undo = responses->undoes_codings();
    responses.reset();
    responses_parked = true;
  }
  // Before either direction touches `responses` again (pump_up's expect_responses, pump_down's read).
  void unpark_responses() {
    if (!std::exchange(responses_parked, false)) return;
    responses = std::make_unique<http::ResponseStream>(&scrubbers);
    if (parked_undo) responses->undo_codings();
  }
  bool unpark_rewriter() {
    if (!std::exchange(rewriter_parked, false)) return false;
    rewriter.emplace(*snapshot->set, context);
    if (parked_flowed) rewriter->assume_values_may_flow();
    return true;
  }

  secrets::Status feed(std::string_view in, std::string& out, std::string& to_guest) {
    if (websocket) return websocket->feed_up(in, out, to_guest);
    if (rewriter) return rewriter->feed(in, out, to_guest);
    if (scanner) return scanner->feed(in, out);
    out.append(in);
    return secrets::Status::kOk;
  }
  secrets::Status finish(std::string& out) {
    if (websocket) return websocket->finish_up(out);
    if (rewriter) return rewriter->finish(out);
    if (scanner) return scanner->finish(out);
    return secrets::Status::kOk;
  }
  const secrets::Block* blocked() const {
    if (websocket && websocket->blocked()) return &*websocket->blocked();
    if (rewriter && rewriter->blocked()) return &*rewriter->blocked();
    if (scanner && scanner->blocked()) return &*scanner->blocked();
    return nullptr;
  }
  std::vector<secrets::Substitution> take() {
    if (websocket) return websocket->take_substitutions();
    if (rewriter) return rewriter->take_substitutions();
    return {};
  }
  std::size_t held_bytes() const {
    return websocket ? websocket->held_bytes() : rewriter ? rewriter->held_bytes() : 0;
  }
  bool in_head() const { return !websocket && rewriter && rewriter->in_head(); }
};

// An idle relay whose two directions both wait in their reads (nothing held back, nothing being
// written) ends both coroutines: the reads are cancelled and return to pump_up / pump_down, which
// see their park flag and return kParked (parked_now); the Relay then waits for each socket with
// a plain handler. False when a direction is busy (tried again at the watchdog's next round).
bool park_idle_relay(Connection& c) {
  Filter& f = *c.filter;
  if (f.park_up || f.park_down) return true;  // already under way
  // A direction that is parked already (the other's read returned bytes before its cancel took
  // effect, and that one has gone idle since) is left alone: cancelling its socket would end its
  // handler's wait.
  const bool up_ready = f.up_parked || (f.up_waiting && f.guest->waiting_for_bytes());
  const bool down_ready = f.down_parked || (f.down_waiting && f.upstream->waiting_for_bytes());
  if (!up_ready || !down_ready) return false;
  if (f.up_parked && f.down_parked) return true;
  f.park_responses();
  c.core.idle_parked++;
  std::error_code ignored;
  if (!f.up_parked) {
    f.park_up = true;
    c.guest.cancel(ignored);
  }
  if (!f.down_parked) {
    f.park_down = true;
    c.upstream.cancel(ignored);
  }
  return true;
}

// Whether the read that just returned was cancelled to park its direction (the flag is cleared
// either way: a read that returned bytes first simply goes on).
bool parked_now(const Connection& c, bool& flag, const IoResult& r) {
  return std::exchange(flag, false) && r.error == asio::error::operation_aborted && !c.aborted;
}

// What an idle connection can give back (the watchdog calls this once it has been idle for
// kIdleRelease): the HTTP/1 request rewriter at a message boundary, then the relay's coroutines
// (park_idle_relay). True when nothing is left to try until the connection is active again.
bool release_idle_state(Connection& c) {
  if (c.filter == nullptr) return true;
  if (c.filter->rewriter) {
    if (!c.filter->park_rewriter()) return false;
    c.core.idle_released++;
  }
  return park_idle_relay(c);
}

std::string mebibytes(std::size_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

// Past the memory budget: the request is blocked (the guest sees a reset), audited and warned.
void handle_over_budget(Connection& c, Over over) {
  Core& core = c.core;
  core.over_budget++;
  core.blocked++;
  c.decision = "blocked";
  const BudgetLimits& l = core.budget->limits();
  const std::string reason =
      over == Over::kClient
          ? "over the memory budget of this client (" + mebibytes(l.client_memory_bytes) +
                " for the bodies the gateway holds to rewrite and the output it buffers)"
          : "over the gateway's memory budget (" + mebibytes(l.memory_bytes) + " for all clients)";
  Json r = c.base_record("blocked");
  r["host"] = c.sni.empty() ? (c.destination ? c.destination->ip.to_string() : std::string()) : c.sni;
  r["reason"] = reason;
  if (c.client) r["client"] = c.client->to_string();
  core.audit.write(r);
  core.logger.log(LogLevel::kWarn, c.describe() + ": request blocked: " + reason);
  c.close_all(true);
}

// What this connection holds now (the engine's buffers and output on its way out) against the
// budget; false (and the request blocked) when that is past it.
bool within_budget(Connection& c, std::size_t bytes) {
  const Over over = c.ticket->hold(bytes);
  if (over == Over::kNone) return true;
  handle_over_budget(c, over);
  return false;
}

// A request head has its own deadline, from its first byte to its empty line (the watchdog
// reads head_due): a head that arrives partly and stalls does not hold its connection for the
// whole idle timeout.
void track_head(Connection& c, const Filter& filter) {
  const bool in_head = filter.in_head();
  if (in_head == (c.head_due != Clock::time_point::max())) return;
  c.head_due = in_head ? Clock::now() + c.core.options.timeouts.head : Clock::time_point::max();
  c.watchdog.cancel();
}

// False when a record could not be written and the audit log fails closed: the request that
// carries the substitution must then not leave (the caller blocks it).
bool record_substitutions(Connection& c, Filter& filter) {
  bool recorded = true;
  const auto one = [&](const secrets::Substitution& s) {
    c.core.substitutions++;
    AuditRecord r = c.audit_record("substitution");
    r.string("secret", s.secret_env).string("host", s.host).string("location", secrets::to_string(s.location));
    if (!c.core.audit.write(r, {.event = "substitution", .secret = s.secret_env})) recorded = false;
    if (c.core.logger.enabled(LogLevel::kDebug))
      c.core.logger.log(LogLevel::kDebug, "connection " + std::to_string(c.id) + ": substituted " + s.secret_env +
                                              " for " + s.host + " in " + std::string(secrets::to_string(s.location)));
  };
  if (filter.rewriter && !filter.websocket) {
    // Read in place and recycled: no vector and no strings allocated per request.
    for (const auto& s : filter.rewriter->substitutions()) one(s);
    filter.rewriter->clear_substitutions();
  } else {
    for (const auto& s : filter.take()) one(s);
  }
  return recorded || c.core.options.audit_fail_open;
}

// A substitution whose audit record could not be written (fail closed): blocked, said on stderr.
void handle_unaudited(Connection& c) {
  c.core.blocked++;
  c.decision = "blocked";
  c.detail = "the audit log cannot be written: substitutions are blocked until it can (audit_fail_open = false)";
  c.core.logger.log(LogLevel::kError, c.describe() + ": request blocked: " + c.detail);
  c.close_all(true);
}

// Audits and logs a blocked request (an HTTP/2 stream: `stream` set); the caller closes. A
// violation by the placeholder of a secret a reload removed says so.
void report_block(Connection& c, const secrets::Block& given, std::int32_t stream = 0) {
  Core& core = c.core;
  secrets::Block block = given;
  if (block.violation && c.secrets && c.secrets->is_retired(block.secret_env))
    block.reason = "placeholder of a secret removed by a reload (it is not sent anywhere any more)";
  core.blocked++;
  c.decision = block.violation ? "violation" : "blocked";
  Json r = c.base_record(block.violation ? "violation" : "blocked");
  if (stream != 0) r["stream"] = stream;
  r["secret"] = block.secret_env;
  r["host"] = block.host;
  r["location"] = secrets::to_string(block.location);
  r["action"] = to_string(block.action);
  r["reason"] = block.reason;
  if (c.client) r["client"] = c.client->to_string();
  core.audit.write(r);
  std::string message = c.describe() + ": " +
                        (block.violation ? "secret violation" : "request blocked") +
                        (block.secret_env.empty() ? std::string() : ", secret " + block.secret_env) + ", host " +
                        block.host + ", " + std::string(secrets::to_string(block.location)) + ": " + block.reason;
  if (!block.violation) {
    core.logger.log(LogLevel::kWarn, message);
  } else if (block.action == ViolationAction::kBlockAndTerminate) {
    core.logger.log(LogLevel::kError, message + " (block-and-terminate)");
    if (core.options.on_terminate) core.options.on_terminate(message);
  } else if (block.action == ViolationAction::kBlock) {
    core.logger.log(LogLevel::kInfo, message);
  } else {
    core.logger.log(LogLevel::kWarn, message);
  }
}

void handle_block(Connection& c, const secrets::Block& block) {
  report_block(c, block);
  c.close_all(true);
}

// ---- The response side's view of the requests (issue 12 items 3, 4) ----

void expect_responses(Filter& filter) {
  if (!filter.rewriter || !filter.responses) return;
  // Before the requests leave: a value may reach the upstream with them, and come back coded.
  if (filter.rewriter->values_may_flow()) filter.responses->undo_codings();
  for (const secrets::ForwardedRequest& r : filter.rewriter->forwarded()) {
    if (r.close) filter.upstream_reusable = false;  // the guest said this connection ends after it
    filter.responses->expect(
        http::ResponseExpectation{.head = r.head, .connect = r.connect, .upgrade = r.upgrade, .http10 = r.http10});
    filter.in_flight.push_back({Clock::now(), filter.snapshot->generation});
  }
  filter.rewriter->clear_forwarded();  // its capacity is kept for the next requests
}

// A final response head about to reach the guest: its request is answered.
void response_head(Filter& filter) {
  if (filter.in_flight.empty()) return;
  filter.answering = filter.in_flight.front().generation;
  filter.answered.push_back(filter.in_flight.front().head_done);
  filter.in_flight.pop_front();
}

// The answered heads were handed to the guest: their requests' latency.
void record_latency(Connection& c, Filter& filter) {
  const auto now = Clock::now();
  for (const Clock::time_point head_done : filter.answered) c.core.request_latency.observe(now - head_done);
  filter.answered.clear();
}

// After a reload, the connection's next request is rewritten with the new secrets, once the
// rewriter is between requests (a request in progress keeps the set it started with). What the
// old rewriter let reach this upstream still counts (values_may_flow). The old snapshot goes
// when the response side no longer needs it.
// A WebSocket session keeps the snapshot it started with to its end (like an opaque stream).
void rebind_at_boundary(Connection& c, Filter& filter) {
  if (!filter.rewriter || filter.websocket || c.core.generation() == filter.snapshot->generation) return;
  if (!filter.rewriter->at_message_boundary()) return;
  const bool flowed = filter.rewriter->values_may_flow();
  const std::shared_ptr<const SecretsSnapshot> previous = std::exchange(filter.snapshot, c.core.snapshot());
  filter.rewriter.emplace(*filter.snapshot->set, filter.context);
  if (flowed) filter.rewriter->assume_values_may_flow();
  c.secrets = filter.snapshot.get();
}

// The scrubbers the next response bytes go through: the newest snapshot's (a response may carry
// a rotated value), the request side's, and those of requests whose responses are not over.
// Every response path borrows this chain (filter.scrubbers): ResponseStream, the WebSocket relay,
// opaque bytes.
void refresh_scrubbers(Connection& c, Filter& filter) {
  ResponseScrubbers& scrubbers = filter.scrubbers;
  if (c.core.generation() > scrubbers.newest()) scrubbers.keep(c.core.snapshot());
  scrubbers.keep(filter.snapshot);
  if (scrubbers.size() < 2) return;
  scrubbers.release_unneeded([&](std::uint64_t g) {
    return g == filter.snapshot->generation || g == scrubbers.newest() || g == filter.answering ||
           std::any_of(filter.in_flight.begin(), filter.in_flight.end(), [g](const Filter::InFlight& r) { return r.generation == g; });
  });
}

// A response the guest must not get (in a coding the gateway cannot decode where a value may be
// echoed, malformed framing): it is not forwarded, the guest sees a reset, the audit log says why.
void block_response(Connection& c, const std::string& reason) {
  c.core.blocked++;
  c.decision = "blocked";
  Json r = c.base_record("blocked");
  r["direction"] = "response";
  r["reason"] = reason;
  if (c.client) r["client"] = c.client->to_string();
  c.core.audit.write(r);
  c.core.logger.log(LogLevel::kWarn, c.describe() + ": response blocked: " + reason);
  c.close_all(true);
}

// Writes the request side's output (it may hold a substituted value: wiped after), closing the
// connection on a failed write. True while the connection goes on.
asio::awaitable<bool> send_upstream(Connection& c, Stream& upstream, std::string& out) {
  std::error_code ec = out.empty() ? std::error_code{} : co_await upstream.write_all(out);
  wipe(out);
  if (ec && !c.aborted) {
    c.detail = "upstream write: " + ec.message();
    c.close_all(true);
  }
  co_return !ec && !c.aborted;
}

// Item 4: the answer to an upgrade request (or CONNECT) decides what the guest's held bytes
// are; after a refusal they are requests again, checked and rewritten, and sent here.
asio::awaitable<bool> answer_upgrade(std::shared_ptr<Connection> c, Filter& filter, Stream& upstream, bool switched) {
  if (filter.authority && !filter.authority->upgrade_answered(switched)) {
    c->decision = "proxy_authority_changed";
    c->close_all(false);
    co_return false;
  }
  std::string out, to_guest;
  const secrets::Status status = filter.rewriter->upgrade_answered(switched, out, to_guest);
  record_substitutions(*c, filter);
  expect_responses(filter);
  if (status == secrets::Status::kBlocked) {
    wipe(out);
    handle_block(*c, *filter.blocked());
    co_return false;
  }
  co_return co_await send_upstream(*c, upstream, out);
}

// A 101 to a WebSocket upgrade (issue 14): the guest's held bytes and everything after go
// through a WebSocketSession instead of the opaque scan. An extension the gateway cannot read
// fails closed: the 101 is not forwarded.
asio::awaitable<bool> start_websocket(std::shared_ptr<Connection> c, Filter& filter, Stream& upstream,
                                      const http::ResponseHead& head) {
  if (filter.authority && !filter.authority->upgrade_answered(true)) {
    c->decision = "proxy_authority_changed";
    c->close_all(false);
    co_return false;
  }
  std::string extensions;
  for (std::string_view v : head.values("sec-websocket-extensions")) {
    if (!extensions.empty()) extensions += ", ";
    extensions.append(v);
  }
  secrets::Request request;
  std::string held, why;
  if (filter.rewriter->hand_off_upgrade(request, held) != secrets::Status::kOk) {
    if (filter.blocked()) handle_block(*c, *filter.blocked());
    else block_response(*c, "a WebSocket switch the request side did not expect");
    co_return false;
  }
  WebSocketSession::Options options;
  // The session keeps this snapshot to its end (rebind_at_boundary leaves it alone); the
  // server's messages go through the connection's scrubber chain like every response byte.
  const secrets::SecretSet& set = *filter.snapshot->set;
  options.limits.max_frame = options.limits.max_message = set.options().max_body_bytes;
  options.max_ratio = set.options().max_decompression_ratio;
  filter.websocket = WebSocketSession::start(set, filter.context, &filter.scrubbers, std::move(request),
                                             extensions, options, why);
  if (!filter.websocket) {
    block_response(*c, why);
    co_return false;
  }
  c->handling += "+websocket";
  std::string out, to_guest;
  const secrets::Status status = filter.feed(held, out, to_guest);
  const bool recorded = record_substitutions(*c, filter);
  if (status == secrets::Status::kBlocked || !recorded) {
    wipe(out);
    if (status == secrets::Status::kBlocked) handle_block(*c, *filter.blocked());
    else handle_unaudited(*c);
    co_return false;
  }
  co_return co_await send_upstream(*c, upstream, out);
}

// Whether `value` (a Connection field's) lists `token`, ASCII case-insensitively.
bool lists_token(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    const std::size_t comma = value.find(',');
    std::string_view item = value.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (item.size() == token.size() && ::strncasecmp(item.data(), token.data(), token.size()) == 0) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

// A final response after which its HTTP/1 connection stays usable for any next request: HTTP/1.1
// both ways, a body with a known end (a length or chunks, or none), no `Connection: close`, no
// upgrade or CONNECT asked or granted. Anything else never goes to the pool.
bool keeps_alive(const http::ResponseHead& head) {
  if (head.minor_version != 1 || head.request.http10 || head.request.upgrade || head.request.connect || head.switched)
    return false;
  if (head.body == http::ResponseHead::Body::kClose) return false;
  for (const auto& [name, value] : head.fields) {
    if (name.size() == 10 && ::strncasecmp(name.data(), "connection", 10) == 0 && lists_token(value, "close")) return false;
  }
  return true;
}

// The HTTP/1 response stage (issue 14 item 3): the upstream's bytes in `raw` become in `out`
// what the guest gets (framing read; chunked bodies de-chunked, scrubbed and chunked again;
// coded bodies decoded where a value may flow; every value masked). An upgrade's answer is acted
// on at its head. False when the connection was closed; `close_after`: it closes after `out`.
asio::awaitable<bool> read_responses(std::shared_ptr<Connection> c, Filter& filter, Stream& upstream, std::string_view raw,
                                     std::string& out, std::string& hold, bool& close_after) {
  http::ResponseStream& responses = *filter.responses;
  while (!raw.empty()) {
    std::size_t used = 0;
    const http::ResponseStream::Event event = responses.feed(raw, used, out);
    raw.remove_prefix(used);
    if (event == http::ResponseStream::Event::kError) {
      block_response(*c, responses.error());
      co_return false;
    }
    if (event == http::ResponseStream::Event::kClose) {
      close_after = true;
      co_return true;
    }
    if (event != http::ResponseStream::Event::kHead) continue;
    const http::ResponseHead& head = responses.head();
    if (!head.interim) {
      response_head(filter);  // its bytes are in `out`, on their way to the guest
      if (filter.upstream_reusable && !keeps_alive(head)) filter.upstream_reusable = false;
    }
    if (head.interim || !(head.request.upgrade || head.request.connect)) continue;
    if (head.switched && head.request.upgrade && is_websocket_switch(head.fields)) {
      // `out` has the 101; the rest of `raw` is the server's first frames: pump_down relays them.
      filter.websocket_first.assign(raw);
      co_return co_await start_websocket(c, filter, upstream, head);
    }
    std::string rest(raw);  // the scratch buffer does not outlive the suspension
    wipe(hold);
    hold.swap(rest);
    raw = hold;
    if (!co_await answer_upgrade(c, filter, upstream, head.switched)) co_return false;
  }
  co_return true;
}

void finish(Connection& c);
bool guest_ended_at_rest(const Connection& c, const Filter& f);
bool begin_pool_handoff(Connection& c);

// How one coroutine of a relay direction ended: its read was cancelled to park it (the relay then
// waits for the socket with a plain handler, park_idle_relay), or the direction is over.
enum class Pumped { kEnded, kParked };

asio::awaitable<Pumped> pump_up(std::shared_ptr<Connection> c, Stream& from, Stream& to, Filter& filter) {
  const std::size_t size = std::min(c->core.options.buffer_bytes, kScratchBytes);
  std::string out, to_guest;
  while (!c->aborted) {
    // Read into the thread's scratch buffer; everything below uses it before the next suspension.
    char* buf = pump_scratch();
    filter.up_waiting = true;
    IoResult r = co_await from.read_some(buf, size);
    if (parked_now(*c, filter.park_up, r)) co_return Pumped::kParked;  // up_waiting stays set
    filter.up_waiting = false;
    filter.unpark_responses();
    if (filter.unpark_rewriter()) c->watchdog.cancel();  // re-armed to release it again once idle
    if (c->aborted) break;
    if (r.error) {
      const bool truncated = r.error == tls_truncated();
      if (r.error != asio::error::eof && !truncated) {
        if (c->detail.empty()) c->detail = "guest: " + r.error.message();  // the first cause is kept
        c->close_all(true);
        break;
      }
      // Release point (a): the guest ended between requests with every response read and passed
      // on; its upstream connection goes to the loop's pool instead of being closed.
      if (guest_ended_at_rest(*c, filter) && begin_pool_handoff(*c)) {
        co_await from.shutdown_send();  // the guest's close_notify (the upstream is not told)
        break;
      }
      secrets::Status status = filter.finish(out);
      const bool recorded = record_substitutions(*c, filter);
      if (status == secrets::Status::kBlocked) {
        wipe(out);
        handle_block(*c, *filter.blocked());
        break;
      }
      if (!recorded) {
        wipe(out);
        handle_unaudited(*c);
        break;
      }
      if (!out.empty()) {
        std::error_code ec = co_await to.write_all(out);
        wipe(out);
        if (ec) break;
      }
      // Passed on as it came (not with a ?: around co_await: g++ 12 destroys that frame twice).
      if (truncated) co_await to.shutdown_send_truncated();
      else co_await to.shutdown_send();
      break;
    }
    c->touch();
    c->bytes_up += r.bytes;
    if (filter.authority && !filter.authority->accept(std::string_view(buf, r.bytes))) {
      // Not forwarded; closed (not reset) so the client retries on a fresh proxy connection.
      c->decision = "proxy_authority_changed";
      c->close_all(false);
      break;
    }
    rebind_at_boundary(*c, filter);
    // `buf` holds only what the guest sent, which never contains a value; `out` may, and is wiped.
    // No reservation per read: every writer of values grows `out` through a ValueSink, which wipes
    // the old buffer before it is freed, and a read the engine holds (a buffered body's) then
    // costs no allocation.
    secrets::Status status = filter.feed(std::string_view(buf, r.bytes), out, to_guest);
    track_head(*c, filter);
    // The TLS layer copies the output once more while it is written.
    if (status != secrets::Status::kBlocked && !within_budget(*c, filter.held_bytes() + out.capacity() + out.size())) {
      wipe(out);
      break;
    }
    const bool recorded = record_substitutions(*c, filter);
    expect_responses(filter);  // before the requests leave: their responses may come at once
    if (!to_guest.empty()) {
      co_await from.write_all(to_guest);
      to_guest.clear();
    }
    if (status == secrets::Status::kBlocked) {
      wipe(out);
      handle_block(*c, *filter.blocked());
      break;
    }
    if (!recorded) {
      wipe(out);
      handle_unaudited(*c);
      break;
    }
    if (!out.empty()) {
      std::error_code ec = co_await to.write_all(out);
      wipe(out);  // it may hold a substituted value
      std::string().swap(out);  // an idle connection keeps no output buffer
      c->ticket->hold(filter.held_bytes());
      if (ec) {
        if (!c->aborted) {
          c->detail = "upstream write: " + ec.message();
          c->close_all(true);
        }
        break;
      }
    }
  }
  co_return Pumped::kEnded;
}

// Once per connection, when a response first echoes a value (masked before the guest sees it).
void record_scrub(Connection& c) {
  Json r = c.base_record("scrubbed");
  r["reason"] = "a response echoed a secret value (or an encoding of it); masked before the guest";
  c.core.audit.write(r);
  c.core.logger.log(LogLevel::kWarn, c.describe() + ": a response echoed a secret value; masked");
}

// Upstream to guest after a WebSocket switch: messages scrubbed whole and framed again. False
// when the connection was closed (the upstream broke the protocol: the guest gets a close frame,
// then a reset).
asio::awaitable<bool> relay_websocket_down(std::shared_ptr<Connection> c, Filter& filter, Stream& to,
                                           std::string_view bytes, bool& reported) {
  WebSocketSession& ws = *filter.websocket;
  const std::uint64_t masked = ws.masked_bytes();
  std::string out;
  const bool ok = ws.feed_down(bytes, out);
  if (ws.masked_bytes() != masked && !std::exchange(reported, true)) record_scrub(*c);
  if (!within_budget(*c, filter.held_bytes() + out.size())) co_return false;
  std::error_code ec = out.empty() ? std::error_code{} : co_await to.write_all(out);
  if (!ok) {
    block_response(*c, ws.down_error());
    co_return false;
  }
  if (ec) {
    if (!c->aborted) {
      c->detail = "guest write: " + ec.message();
      c->close_all(true);
    }
    co_return false;
  }
  co_return true;
}

// Upstream to guest. With `scrub`, every value the responses echo is masked (same length, so
// the framing holds), for every secrets snapshot still needed (filter.scrubbers, refreshed before
// each read and after each write): HTTP/1 through the ResponseStream (heads, plain, de-chunked and
// decoded bodies, trailers, opaque bytes after a switch), WebSocket messages after a 101 through
// the session, other streams as raw bytes. The scrubbers may hold back the start of a possible
// value, and let it go (masked when it is 4 bytes or more) once no more bytes are ready to read.
// Scrubbed output of reads that follow each other without a pause is written once per batch
// (kDownBatchBytes or more, batch_goes_on): one TLS write and one send instead of one per record
// read, as whole records while more bytes are ready (the rest leads the next batch). A batch
// ends at a pause like the held bytes do, so nothing waits for bytes that are not there yet.
asio::awaitable<Pumped> pump_down(std::shared_ptr<Connection> c, Stream& from, Stream& to,
                                  bool scrub, Filter& filter) {
  const std::size_t size = std::min(c->core.options.buffer_bytes, kScratchBytes);
  ResponseScrubbers& scrubbers = filter.scrubbers;
  if (scrub) refresh_scrubbers(*c, filter);
  std::string scrubbed, hold;  // scrubbed: the batch's output (masked), not yet written
  std::string rest;            // in place: the bytes after a plain body's end (the upstream's)
  bool& reported = filter.scrub_reported;
  while (!c->aborted) {
    char* buf = pump_scratch();  // valid until we suspend: write_all takes it before it waits
    filter.down_waiting = scrubbed.empty() && scrubbers.pending() == 0;  // nothing held back
    // A plain body with one scrubber is read straight into the batch, after room for the bytes
    // the scrubber holds, and scrubbed there (no copy from scratch into the batch).
    http::ResponseScrubber* direct =
        filter.responses && !filter.websocket ? filter.responses->in_place_scrubber() : nullptr;
    const std::size_t room = direct != nullptr ? direct->pending() : 0;
    const std::size_t at = scrubbed.size() + room;
    if (direct != nullptr) {
      if (scrubbed.capacity() < at + size) scrubbed.reserve(std::max(at + size, kDownBatchCapacity));
      scrubbed.resize(at + size);
      buf = scrubbed.data() + at;
    }
    IoResult r = co_await from.read_some(buf, size);
    if (direct != nullptr) {
      scrubbed.resize(at + r.bytes);
      if (c->aborted || r.error) {  // never scrubbed: the upstream's bytes do not stay behind
        OPENSSL_cleanse(scrubbed.data() + at - room, room + r.bytes);
        scrubbed.resize(at - room);
      }
    }
    if (parked_now(*c, filter.park_down, r)) co_return Pumped::kParked;
    filter.down_waiting = false;
    filter.unpark_responses();
    if (c->aborted) break;
    if (r.error) {
      const bool truncated = r.error == tls_truncated();
      if (r.error == asio::error::eof || truncated) {
        // The batch so far goes first, then what the stream's end lets go.
        if (filter.responses && filter.responses->finish(scrubbed) != http::DecodeError::kNone) {
          block_response(*c, filter.responses->error());
          break;
        }
        if (!filter.responses && scrubbers.pending() > 0) scrubbers.flush(scrubbed);
        if (!scrubbed.empty()) {
          if (co_await to.write_all(scrubbed)) break;
          record_latency(*c, filter);
        }
        // A response cut short by a bare FIN must not look complete to the guest: no close_notify.
        if (truncated) c->detail = "upstream: " + r.error.message() + ", passed on to the guest";
        if (truncated) co_await to.shutdown_send_truncated();
        else co_await to.shutdown_send();
      } else {
        c->detail = "upstream: " + r.error.message();
        c->close_all(true);  // an upstream reset reaches the guest as a reset
      }
      break;
    }
    c->touch();
    c->bytes_down += r.bytes;
    std::string_view chunk(buf, r.bytes);
    if (scrub) refresh_scrubbers(*c, filter);
    if (direct != nullptr && (filter.responses->in_place_scrubber() != direct || direct->pending() != room)) {
      // The chain changed while we waited (a reload): these bytes take the path that copies.
      rest.assign(scrubbed, at);
      OPENSSL_cleanse(scrubbed.data() + at - room, scrubbed.size() - at + room);
      scrubbed.resize(at - room);
      chunk = rest;
      direct = nullptr;
    }
    if (filter.websocket) {
      if (!co_await relay_websocket_down(c, filter, to, chunk, reported)) break;
      continue;
    }
    bool close_after = false;
    bool more = false;  // more bytes are ready: the batch may go on
    if (filter.responses) {
      const std::uint64_t masked = filter.responses->masked_bytes();
      if (direct != nullptr) {
        filter.responses->feed_in_place(scrubbed, at, rest);
        chunk = rest;  // what followed the body, if anything, goes the usual way
      }
      const bool going = co_await read_responses(c, filter, from, chunk, scrubbed, hold, close_after);
      wipe(rest);
      if (!going) break;
      wipe(hold);
      if (filter.websocket) {
        // Switched in this read: the 101 goes on whole, then what followed it as WebSocket frames.
        filter.responses->flush(scrubbed);
        filter.responses.reset();
        std::string first;
        first.swap(filter.websocket_first);
        if (co_await to.write_all(scrubbed)) break;
        scrubbed.clear();
        record_latency(*c, filter);
        if (!co_await relay_websocket_down(c, filter, to, first, reported)) break;
        continue;
      }
      more = !close_after && from.readable_now();
      if (!close_after && !more) filter.responses->flush(scrubbed);
      // A decoded read can expand (up to the ratio cap): that output counts against the budget.
      const bool large = scrubbed.capacity() > kDownBatchCapacity;
      if (large && !within_budget(*c, filter.held_bytes() + scrubbed.capacity())) break;
      if (filter.responses->masked_bytes() != masked) {
        if (buf == pump_scratch()) OPENSSL_cleanse(buf, r.bytes);  // it held a value (in place: masked there)
        if (!std::exchange(reported, true)) record_scrub(*c);
      }
      if (batch_goes_on(more, scrubbed.size(), size)) continue;
      chunk = scrubbed;
    } else if (!scrubbers.empty()) {
      const std::uint64_t masked = scrubbers.masked_bytes();
      scrubbers.feed(chunk, scrubbed);
      more = from.readable_now();
      if (scrubbers.pending() > 0 && !more) scrubbers.flush(scrubbed);
      if (scrubbers.masked_bytes() != masked) {
        OPENSSL_cleanse(buf, r.bytes);  // it held a value
        if (!std::exchange(reported, true)) record_scrub(*c);
      }
      if (batch_goes_on(more, scrubbed.size(), size)) continue;
      chunk = scrubbed;
    }
    // With more bytes ready, only whole records go: the rest (under one record, already
    // scrubbed) starts the next batch, which follows at once.
    std::size_t carried = 0;
    if (more && !close_after && chunk.data() == scrubbed.data()) carried = chunk.size() - whole_records(chunk.size());
    chunk.remove_suffix(carried);
    std::error_code ec;
    if (!chunk.empty()) ec = co_await to.write_all(chunk);
    scrubbed.erase(0, scrubbed.size() - carried);
    if (ec) {
      if (!c->aborted) {
        c->detail = "guest write: " + ec.message();
        c->close_all(true);
      }
      break;
    }
    if (!filter.answered.empty()) record_latency(*c, filter);
    if (scrub) refresh_scrubbers(*c, filter);  // a response just ended may free an old snapshot
    // A decoded burst, or a batch before a pause (the connection may idle now): given back.
    if (scrubbed.capacity() > kDownBatchCapacity || (!more && scrubbed.capacity() > kScratchBytes)) {
      std::string(scrubbed).swap(scrubbed);  // keeps what was carried, if anything
      c->ticket->hold(filter.held_bytes());
    }
    if (close_after) {
      // A body re-framed as close-delimited ends with the connection (its head said so).
      co_await to.shutdown_send();
      c->close_all(false);
      break;
    }
  }
  co_return Pumped::kEnded;
}

enum class FilterKind { kNone, kRewriter, kScanner };

// A connection's relay (HTTP/1, WebSocket after a switch, opaque and spliced streams) after its
// setup: both streams, the filter and what the two directions share, on the heap, so that the
// setup's frames (serve_connection -> intercept) are gone once it runs. Each direction is a
// coroutine (pump_up / pump_down) while the connection is in use. Once it has been idle for
// kIdleRelease with both directions waiting in their reads, the watchdog cancels those reads
// (park_idle_relay): both coroutines return kParked and each direction waits for its socket with
// a plain handler (park), which starts a new coroutine when bytes come. An idle connection so
// holds no coroutine frame, only two socket waits; a busy one pays nothing per request for it.
// The last of the two directions to end takes the Relay with it: ~Relay finishes the connection.
// An intercepted HTTP/1 relay parked for timeouts.upstream_idle_release also closes its upstream
// connection (release_idle_upstream); the guest's next bytes connect and verify it again first
// (pump_up_after_release).
struct Relay {
  std::shared_ptr<Connection> c;
  std::unique_ptr<Stream> guest;
  std::unique_ptr<Stream> upstream;  // null while released
  Filter filter;
  bool scrub = false;  // bytes the gateway can read (not spliced TLS) are scrubbed on their way back
  bool ended[2] = {false, false};  // up, down: the direction ran to its end
  bool upstream_releasable = false;  // intercepted TLS with the request rewriter (both streams TlsStreams)
  bool upstream_released = false;
  std::uint32_t upstream_epoch = 0;  // which upstream connection a parked down direction waits on
  std::vector<std::string> upstream_alpn;  // what the upstream connection was offered (its pool key)
  bool pool_when_parked = false;  // the guest ended at rest: the down direction's read was cancelled to pool it

  Relay(std::shared_ptr<Connection> conn, std::unique_ptr<Stream> g, std::unique_ptr<Stream> u)
      : c(std::move(conn)), guest(std::move(g)), upstream(std::move(u)) {}
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;
  ~Relay() {
    c->secrets = nullptr;  // the filter (and its snapshot) ends here
    c->filter = nullptr;
    c->relay = nullptr;
    const bool complete = ended[0] && ended[1];
    // Not complete: the gateway is stopping and its handlers are being destroyed (no asio calls then).
    if (!c->finished && !complete && c->decision == "forwarded") c->decision = "stopped";
    finish(*c);
    if (complete) c->watchdog.cancel();
    c->core.active--;
  }
};

enum class Direction { kUp, kDown };
void park(std::shared_ptr<Relay> r, Direction d);
void run_burst(std::shared_ptr<Relay> r, Direction d);
asio::awaitable<std::unique_ptr<TlsStream>> connect_upstream_tls(std::shared_ptr<Connection> c, std::vector<std::string> alpn);

// ---- Each event loop's pool of idle upstream connections (issue 15) ----
// An upstream HTTP/1 TLS connection is needed only while a request is in flight. A guest
// connection at rest (every request sent, every response read to its known end and passed on,
// nothing buffered anywhere) hands its upstream connection to its loop's pool when it ends
// (release point a, pump_up) or parks (release point b, release_idle_upstream); the next guest
// connection of the same key takes it (connect_upstream_tls) instead of connecting and verifying
// again. Pure bookkeeping in upstream_pool.hpp; the I/O (watching, closing) here. One pool per
// loop thread: no lock, and a socket never leaves its io_context.

// A pooled connection owns its socket (moved out of its guest Connection) and its TLS session.
struct PooledUpstream {
  tcp::socket socket;
  std::unique_ptr<TlsStream> tls;
  asio::steady_timer expiry;
  PooledUpstream(tcp::socket s, std::unique_ptr<TlsStream> t)
      : socket(std::move(s)), tls(std::move(t)), expiry(socket.get_executor()) {
    tls->rebind(socket);
  }
};
using UpstreamPoolOf = UpstreamPool<std::unique_ptr<PooledUpstream>>;

// The loop's pool (thread-local: each loop runs on its own thread, created and joined by its
// gateway). Made after the thread's TLS write cork, so it is destroyed (its TlsStreams with it)
// before the cork.
UpstreamPoolOf& loop_pool(const Core& core) {
  make_thread_cork();
  thread_local UpstreamPoolOf pool(UpstreamPoolLimits{.per_key = core.options.upstream_pool_per_key,
                                                      .total = core.options.upstream_pool_per_loop,
                                                      .max_idle = core.options.timeouts.upstream_idle_release});
  return pool;
}

bool pool_enabled(const Core& core) {
  return core.options.upstream_pool_per_key > 0 && core.options.upstream_pool_per_loop > 0 &&
         core.options.timeouts.upstream_idle_release.count() > 0;
}

UpstreamKey pool_key(const Connection& c, const std::vector<std::string>& offer, std::string_view protocol) {
  UpstreamKey k;
  k.destination = c.destination->to_string();
  k.sni = c.sni;
  for (const std::string& p : offer) {
    if (!k.alpn_offer.empty()) k.alpn_offer += ',';
    k.alpn_offer += p;
  }
  k.protocol = protocol;
  k.trust = c.core.upstream.get();
  k.owner = std::string(c.kind == ListenerKind::kProxy ? "proxy " : "transparent ") + (c.client ? c.client->ip.to_string() : std::string());
  return k;
}

// Closes what leaves the pool unused: close_notify if the socket takes it now, then the socket.
void close_pooled(std::vector<std::unique_ptr<PooledUpstream>>& gone) {
  for (auto& p : gone) {
    if (p->tls) p->tls->close_now();
    std::error_code ignored;
    p->socket.close(ignored);
  }
  gone.clear();
}

void drop_pooled(const Core& core, std::uint64_t id) {
  std::optional<std::unique_ptr<PooledUpstream>> p = loop_pool(core).remove(id);
  if (!p) return;  // taken, evicted or dropped already
  std::vector<std::unique_ptr<PooledUpstream>> gone;
  gone.push_back(std::move(*p));
  close_pooled(gone);
}

// While pooled, a connection is watched: any readiness (a byte, close_notify, EOF, an error)
// drops it, never to be handed out (an unsolicited byte means it is out of step); so does its
// expiry. Taking it cancels both (the late handlers then find nothing under `id`).
void watch_pooled(const Core& core, PooledUpstream& p, std::uint64_t id) {
  p.socket.async_wait(asio::socket_base::wait_read, [&core, id](std::error_code ec) {
    if (ec != asio::error::operation_aborted) drop_pooled(core, id);
  });
  p.expiry.expires_after(core.options.timeouts.upstream_idle_release);
  p.expiry.async_wait([&core, id](std::error_code ec) {
    if (!ec) drop_pooled(core, id);
  });
}

// Hands `tls` (on c.upstream, with no operation pending) to the loop's pool, or closes it when it
// is not quiet (unused_and_quiet) or there is no pool. c.upstream is left closed either way.
void pool_upstream(Connection& c, std::unique_ptr<TlsStream> tls, const std::vector<std::string>& offer) {
  std::vector<std::unique_ptr<PooledUpstream>> gone;
  auto p = std::make_unique<PooledUpstream>(std::move(c.upstream), std::move(tls));
  if (!pool_enabled(c.core) || !p->tls->unused_and_quiet()) {
    gone.push_back(std::move(p));
    close_pooled(gone);
    c.core.upstream_released++;
    return;
  }
  PooledUpstream& held = *p;
  const std::uint64_t id =
      loop_pool(c.core).put(pool_key(c, offer, tls::negotiated_alpn(held.tls->ssl())), std::move(p), Clock::now(), gone);
  close_pooled(gone);  // what the bounds pushed out (never the one just held)
  watch_pooled(c.core, held, id);
  c.core.upstream_pooled++;
  if (c.core.logger.enabled(LogLevel::kDebug)) c.core.logger.log(LogLevel::kDebug, c.describe() + ": at rest, upstream connection pooled");
}

// The most recently pooled connection of c's key (LIFO), moved onto c.upstream, once it is
// checked again to hold nothing of the peer's; null when there is none.
std::unique_ptr<TlsStream> take_pooled(Connection& c, const std::vector<std::string>& offer) {
  UpstreamPoolOf& pool = loop_pool(c.core);
  if (pool.size() == 0 || !pool_enabled(c.core)) return nullptr;
  std::vector<std::unique_ptr<PooledUpstream>> gone;
  std::unique_ptr<TlsStream> out;
  for (const std::string_view protocol : {tls::kAlpnHttp11, std::string_view()}) {
    const UpstreamKey key = pool_key(c, offer, protocol);
    while (!out) {
      std::optional<std::unique_ptr<PooledUpstream>> p = pool.take(key, Clock::now(), gone);
      if (!p) break;
      PooledUpstream& e = **p;
      std::error_code ignored;
      e.expiry.cancel();
      e.socket.cancel(ignored);
      if (!e.tls->unused_and_quiet()) {
        gone.push_back(std::move(*p));
        continue;
      }
      // The explicit proxy connected before it answered CONNECT: that TCP connection, not yet
      // used, is closed (the handshake it would need costs more than the connect it cost).
      std::error_code unused;
      c.upstream.close(unused);
      c.upstream = std::move(e.socket);
      e.tls->rebind(c.upstream);
      out = std::move(e.tls);
    }
    if (out) break;
  }
  close_pooled(gone);
  if (!out) return nullptr;
  c.core.upstream_reused++;
  if (c.core.logger.enabled(LogLevel::kDebug)) c.core.logger.log(LogLevel::kDebug, c.describe() + ": pooled upstream connection reused");
  return out;
}

// Whether this relay's upstream connection may go to the pool once it is at rest.
bool poolable(const Connection& c) {
  const Relay* r = c.relay;
  return r != nullptr && r->upstream_releasable && !r->upstream_released && !c.aborted && r->filter.upstream_reusable &&
         !r->filter.websocket && pool_enabled(c.core);
}

// The guest ended (pump_up read its end) with nothing of any exchange left: its request side at
// a message boundary, every response read to its end, none expected.
bool guest_ended_at_rest(const Connection& c, const Filter& f) {
  return poolable(c) && f.rewriter && f.rewriter->at_message_boundary() &&
         f.in_flight.empty() && f.answered.empty() && f.responses && f.responses->at_rest();
}

// Moves the relay's upstream connection to the pool (or closes it: pool_upstream). Only while the
// down direction runs no coroutine (parked, or its burst just returned).
void finish_pool_handoff(Relay& r) {
  Connection& c = *r.c;
  Filter& f = r.filter;
  r.pool_when_parked = false;
  r.upstream_released = true;  // a parked down direction's handler sees it and returns
  r.ended[1] = true;
  std::error_code ignored;
  if (f.down_parked) c.upstream.cancel(ignored);
  f.down_parked = false;
  f.upstream = nullptr;
  std::unique_ptr<TlsStream> tls(static_cast<TlsStream*>(r.upstream.release()));
  pool_upstream(c, std::move(tls), r.upstream_alpn);
}

// Release point (a): false when the down direction is busy (writing to the guest): the upstream
// is then closed as before.
bool begin_pool_handoff(Connection& c) {
  Relay& r = *c.relay;
  Filter& f = r.filter;
  if (f.down_parked) {
    finish_pool_handoff(r);
    return true;
  }
  if (!f.down_waiting || f.park_down || !f.upstream->waiting_for_bytes()) return false;
  r.pool_when_parked = true;  // its burst returns kParked (run_burst), or handles what came first
  f.park_down = true;
  std::error_code ignored;
  c.upstream.cancel(ignored);
  return true;
}

// A parked intercepted HTTP/1 connection at a message boundary with no response due gives its
// upstream connection back: to the loop's pool as soon as it parks (release point b: a guest
// connection idle for kIdleRelease does not pin an upstream connection, as in nginx's or Go's
// pools, which release at once), or, when it may not be pooled, by closing it (close_notify, then
// the socket; ~14 KiB of OpenSSL state with it) after timeouts.upstream_idle_release. The guest's
// connection stays. False when the relay is not at rest yet (tried again later).
bool release_idle_upstream(Connection& c) {
  Relay& r = *c.relay;
  Filter& f = r.filter;
  const bool at_rest = f.up_parked && f.down_parked && !f.rewriter && f.rewriter_parked && !f.responses &&
                       f.responses_parked && f.in_flight.empty() && f.answered.empty() && !f.websocket;
  if (!r.upstream_releasable || r.upstream_released || c.aborted) return true;
  if (!at_rest) return false;
  if (poolable(c)) {
    finish_pool_handoff(r);
    return true;
  }
  static_cast<TlsStream&>(*r.upstream).close_now();
  r.upstream_released = true;
  r.ended[1] = true;  // nothing to read until the next request connects again
  f.down_parked = false;
  std::error_code ignored;
  c.upstream.close(ignored);  // the parked down direction's wait ends; its handler sees the release
  f.upstream = nullptr;
  r.upstream.reset();
  c.core.upstream_released++;
  if (c.core.logger.enabled(LogLevel::kDebug)) c.core.logger.log(LogLevel::kDebug, c.describe() + ": idle, upstream connection released");
  return true;
}

// How long a parked relay waits before release_idle_upstream: at once when its upstream may be
// pooled, else timeouts.upstream_idle_release (0: never).
std::chrono::milliseconds upstream_release_after(const Connection& c) {
  if (poolable(c)) return std::chrono::milliseconds(0);
  return c.core.options.timeouts.upstream_idle_release;
}

// The guest's side of a connection whose upstream was released: once the guest sends data (not
// when it just ends), the upstream is connected and verified again exactly as at the start
// (connect_upstream_tls: the same verification, a cached session offered), HTTP/1.1 only; then
// both directions go on. A failure ends the connection as it would have at the start (the guest
// is reset; nothing it sent reaches anyone).
asio::awaitable<Pumped> pump_up_after_release(std::shared_ptr<Relay> r) {
  Relay& relay = *r;
  std::shared_ptr<Connection> c = relay.c;
  if (c->aborted) co_return Pumped::kEnded;
  if (std::error_code ec = co_await static_cast<TlsStream&>(*relay.guest).wait_for_data()) {
    if (ec != asio::error::eof && ec != tls_truncated() && !c->aborted && c->detail.empty()) c->detail = "guest: " + ec.message();
    co_return Pumped::kEnded;  // the guest ended while idle: nothing to connect for
  }
  std::vector<std::string> alpn(1, std::string(tls::kAlpnHttp11));  // HTTP/1 goes on as HTTP/1
  std::unique_ptr<TlsStream> upstream = co_await connect_upstream_tls(c, alpn);
  if (!upstream) co_return Pumped::kEnded;
  relay.upstream_alpn = std::move(alpn);
  relay.filter.upstream_reusable = true;  // a new upstream connection (or one that was at rest)
  relay.upstream = std::move(upstream);
  relay.filter.upstream = relay.upstream.get();
  relay.upstream_released = false;
  ++relay.upstream_epoch;
  relay.ended[1] = false;
  c->stream();
  run_burst(r, Direction::kDown);
  co_return co_await pump_up(c, *relay.guest, *relay.upstream, relay.filter);
}

// One direction as a coroutine until it ends or parks; a parked direction waits (park).
void run_burst(std::shared_ptr<Relay> r, Direction d) {
  Relay& relay = *r;
  asio::awaitable<Pumped> burst =
      d == Direction::kUp ? (relay.upstream_released ? pump_up_after_release(r)
                                                     : pump_up(relay.c, *relay.guest, *relay.upstream, relay.filter))
                          : pump_down(relay.c, *relay.upstream, *relay.guest, relay.scrub, relay.filter);
  asio::co_spawn(relay.c->guest.get_executor(), std::move(burst), [r = std::move(r), d](std::exception_ptr e, Pumped p) mutable {
    if (e) {
      r->c->close_all(true);  // the other direction ends too (its socket is closed)
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        r->c->core.logger.log(LogLevel::kError, std::string("connection ended by an exception: ") + x.what());
      } catch (...) {
      }
      p = Pumped::kEnded;
    }
    if (p == Pumped::kParked && !r->c->aborted && d == Direction::kDown && r->pool_when_parked) finish_pool_handoff(*r);
    else if (p == Pumped::kParked && !r->c->aborted) park(std::move(r), d);
    else r->ended[d == Direction::kUp ? 0 : 1] = true;
  });
}

// Waits for the direction's socket without a coroutine; a closed socket (the connection aborted)
// wakes it too, and the burst then ends at once.
void park(std::shared_ptr<Relay> r, Direction d) {
  Stream& from = d == Direction::kUp ? *r->guest : *r->upstream;
  asio::ip::tcp::socket* socket = from.park_socket();
  if (socket == nullptr) {  // a stream that cannot park: its burst waits in read_some
    run_burst(std::move(r), d);
    return;
  }
  (d == Direction::kUp ? r->filter.up_parked : r->filter.down_parked) = true;
  // Both directions parked now: the watchdog gives a poolable upstream back at once.
  if (r->filter.up_parked && r->filter.down_parked && poolable(*r->c)) r->c->watchdog.cancel();
  const std::uint32_t epoch = r->upstream_epoch;
  socket->async_wait(asio::socket_base::wait_read, [r = std::move(r), d, epoch](std::error_code ec) mutable {
    // The upstream this wait was for has been released since (release_idle_upstream).
    if (d == Direction::kDown && (r->upstream_released || epoch != r->upstream_epoch)) return;
    Connection& c = *r->c;
    if (ec && !c.aborted) {
      if (c.detail.empty()) c.detail = std::string(d == Direction::kUp ? "guest: " : "upstream: ") + ec.message();
      c.close_all(true);
    }
    (d == Direction::kUp ? *r->guest : *r->upstream).readable();
    (d == Direction::kUp ? r->filter.up_parked : r->filter.down_parked) = false;
    run_burst(std::move(r), d);
  });
}

// The relay of a connection whose setup is done: the filter for its kind, then both directions.
// From here on the Relay, not serve_connection, finishes the connection.
void start_relay(std::shared_ptr<Connection> c, std::unique_ptr<Stream> guest, std::unique_ptr<Stream> upstream,
                 FilterKind kind, secrets::Transport transport) {
  auto r = std::make_shared<Relay>(c, std::move(guest), std::move(upstream));
  c->relaying = true;
  c->relay = r.get();
  r->upstream_releasable = kind == FilterKind::kRewriter && transport == secrets::Transport::kTlsVerified;
  Filter& filter = r->filter;
  secrets::ConnectionContext context;
  context.transport = transport;
  context.sni = c->sni;
  context.destination = c->destination->ip;
  context.port = c->destination->port;
  context.pins = c->pins;
  // The secrets as they are now. A reload never changes them under a request in flight: an HTTP
  // connection takes the newest ones at its next request (rebind_at_boundary); a stream that is
  // not HTTP keeps these to its end.
  filter.snapshot = c->core.snapshot();
  filter.context = context;
  c->secrets = filter.snapshot.get();
  const secrets::SecretSet& set = *filter.snapshot->set;
  r->scrub = kind != FilterKind::kNone;
  if (kind == FilterKind::kRewriter) {
    filter.rewriter.emplace(set, context);
    filter.responses = std::make_unique<http::ResponseStream>(&filter.scrubbers);  // filled by pump_down's refresh_scrubbers
  }
  if (c->kind == ListenerKind::kProxy && c->absolute_http) filter.authority = std::make_unique<AuthorityCheck>(c->authority_host, c->authority_port);
  if (kind == FilterKind::kScanner) filter.scanner.emplace(set, context);
  filter.guest = r->guest.get();
  filter.upstream = r->upstream.get();
  c->decision = "forwarded";
  c->filter = &filter;
  c->stream();
  run_burst(r, Direction::kDown);
  run_burst(std::move(r), Direction::kUp);
}

enum class FirstFlight { kTls, kTlsUnparsed, kHttp, kOpaque };

std::optional<FirstFlight> classify(std::string_view first, tls::ClientHelloInfo& hello) {
  if (first.empty()) return std::nullopt;
  if (static_cast<unsigned char>(first[0]) == 0x16) {
    hello = tls::peek_client_hello(first);
    switch (hello.status) {
      case tls::PeekStatus::kHello: return FirstFlight::kTls;
      case tls::PeekStatus::kNeedMore: return std::nullopt;
      case tls::PeekStatus::kNotTls: return FirstFlight::kOpaque;
      case tls::PeekStatus::kInvalid: return FirstFlight::kTlsUnparsed;
    }
  }
  if (looks_like_http_request(first)) return FirstFlight::kHttp;
  bool method_prefix = first.size() < 24 && std::all_of(first.begin(), first.end(), [](char ch) { return ch >= 'A' && ch <= 'Z'; });
  if (method_prefix) return std::nullopt;
  return FirstFlight::kOpaque;
}

asio::awaitable<bool> ensure_upstream(std::shared_ptr<Connection> c) {
  if (c->upstream.is_open()) co_return true;
  c->phase(c->core.options.timeouts.connect + std::chrono::seconds(1));
  std::error_code ec = co_await connect_to(c->upstream, *c->destination, Clock::now() + c->core.options.timeouts.connect);
  if (ec) {
    c->decision = "connect_failed";
    c->detail = ec.message();
    c->close_all(true);  // like the destination refusing
    co_return false;
  }
  co_return true;
}

// The egress policy's verdict on a TCP flow to `to`; `sni` as the first flight gave it.
std::optional<policy::Decision> deny_decision(const Connection& c, const SocketAddress& to, std::string_view sni) {
  const policy::Policy* p = c.core.options.policy.get();
  if (p == nullptr) return std::nullopt;
  policy::Decision d = p->decide(policy::Flow{to.ip, policy::Protocol::kTcp, to.port, sni}, c.pins);
  if (d.allowed()) return std::nullopt;
  return d;
}

void record_denial(Connection& c, const policy::Decision& d) {
  c.core.denied++;
  c.decision = "denied";
  c.detail = c.core.options.policy->explain(d);
  c.core.logger.log(LogLevel::kWarn, c.describe() + " denied: " + c.detail);
}

// On a port the gateway intercepts, what it cannot inspect is refused, never spliced: a first
// flight that starts a TLS handshake record but is no ClientHello the parser accepts (bad SNI
// bytes, truncated or duplicate extensions, over the peek bound), and one that is neither TLS
// nor HTTP (other bytes, an SSLv2 hello, a client silent for the whole first-flight timeout).
// The TLS bypass list names hosts by SNI, so only a parsed hello can be bypassed.
bool refuse_uninspectable(Connection& c, FirstFlight kind, const tls::ClientHelloInfo& hello) {
  if (!c.core.intercepts_port(c.destination->port)) return false;
  c.decision = kind == FirstFlight::kTlsUnparsed ? "refused_unparsed_tls" : "refused_not_tls";
  c.detail = kind == FirstFlight::kTlsUnparsed
                 ? std::string("ClientHello not parsed: ") + hello.error
                 : "neither a TLS ClientHello nor an HTTP request on an intercepted port";
  c.core.logger.log(LogLevel::kWarn, c.describe() + " refused: " + c.detail);
  c.close_all(true);
  return true;
}

// Standalone pin mode: resolve `name` with the host resolver and pin the destination for it.
asio::awaitable<void> resolve_own_pins(std::shared_ptr<Connection> c, const std::string& name) {
  if (c->core.options.pins || c->kind == ListenerKind::kProxy || name.empty()) co_return;
  if (auto held = c->core.resolved.find(name, c->destination->ip)) {
    c->own_pins = ResolvedPins(name, std::move(*held));
    co_return;
  }
  c->phase(c->core.options.timeouts.connect + std::chrono::seconds(1));
  auto ips = co_await resolve(name, c->destination->port, Clock::now() + c->core.options.timeouts.connect);
  if (!ips.empty()) c->core.resolved.store(name, ips);
  c->own_pins = ResolvedPins(name, std::move(ips));
}

// HTTP/2 on both sides: the bridge (gateway/h2_bridge.hpp), its notices recorded as HTTP/1's are.
asio::awaitable<void> bridge_h2(std::shared_ptr<Connection> c, Stream& guest, Stream& upstream) {
  struct Hooks final : H2Hooks {
    Connection& c;
    explicit Hooks(Connection& conn) : c(conn) {}
    // The records of a batch of streams leave in one write (AuditBatch), before the bytes that
    // carry their substitutions; a substitution that could not be recorded closes the connection
    // before they leave (unless the audit log fails open).
    void notify(const std::vector<H2Notice>& notices) override {
      AuditBatch batch(c.core.audit);
      bool recorded = true;
      bool substituted = false;
      for (const H2Notice& n : notices) {
        substituted = substituted || n.kind == H2Notice::Kind::kSubstitution;
        recorded = record(n) && recorded;
      }
      if (!batch.commit() && substituted) recorded = false;
      if (!recorded && !c.core.options.audit_fail_open) handle_unaudited(c);
    }
    // False: a substitution's record could not be written.
    bool record(const H2Notice& n) {
      switch (n.kind) {
        case H2Notice::Kind::kSubstitution: {
          c.core.substitutions++;
          AuditRecord r = c.audit_record("substitution");
          r.number("stream", n.stream).string("secret", n.substitution.secret_env).string("host", n.substitution.host);
          r.string("location", secrets::to_string(n.substitution.location));
          return c.core.audit.write(r, {.event = "substitution", .secret = n.substitution.secret_env});
        }
        case H2Notice::Kind::kBlocked:
          report_block(c, *n.block, n.stream);
          if (n.block->violation && n.block->action == ViolationAction::kBlockAndTerminate) c.close_all(true);
          return true;
        case H2Notice::Kind::kResponseBlocked: {
          c.core.blocked++;
          Json r = c.base_record("blocked");
          r["direction"] = "response";
          r["stream"] = n.stream;
          r["reason"] = n.reason;
          c.core.audit.write(r);
          c.core.logger.log(LogLevel::kWarn, c.describe() + ": stream " + std::to_string(n.stream) + " response blocked: " + n.reason);
          return true;
        }
        case H2Notice::Kind::kScrubbed: record_scrub(c); return true;
        case H2Notice::Kind::kSessionError:
          if (c.detail.empty()) c.detail = n.reason;
          c.core.logger.log(LogLevel::kWarn, c.describe() + ": HTTP/2 session ended: " + n.reason);
          return true;
      }
      return true;
    }
    void touch() override { c.touch(); }
    bool within_budget(std::size_t held) override { return gateway::within_budget(c, held); }
    bool aborted() override { return c.aborted; }
    void close(bool reset_guest) override { c.close_all(reset_guest); }
    void bytes(std::size_t up, std::size_t down) override {
      c.bytes_up += up;
      c.bytes_down += down;
    }
    void answered(std::chrono::steady_clock::duration latency) override { c.core.request_latency.observe(latency); }
    std::shared_ptr<const SecretsSnapshot> newer_secrets(std::uint64_t generation) override {
      if (c.core.generation() == generation) return nullptr;
      std::shared_ptr<const SecretsSnapshot> newest = c.core.snapshot();
      c.secrets = newest.get();  // the bridge holds it from now on (report_block's retired names)
      return newest;
    }
  } hooks(*c);
  secrets::ConnectionContext context;
  context.transport = secrets::Transport::kTlsVerified;
  context.sni = c->sni;
  context.destination = c->destination->ip;
  context.port = c->destination->port;
  context.pins = c->pins;
  // Each stream is gated with the secrets newest when the guest opened it (hooks.newer_secrets
  // after a reload); the bridge holds every snapshot a stream still uses.
  std::shared_ptr<const SecretsSnapshot> snapshot = c->core.snapshot();
  c->secrets = snapshot.get();
  H2Bridge bridge(std::move(snapshot), context);
  c->protocol = "h2";
  c->decision = "forwarded";
  c->stream();
  co_await run_h2_bridge(guest, upstream, bridge, hooks, std::min(c->core.options.buffer_bytes, kScratchBytes));
  c->secrets = nullptr;
}

// The upstream's TLS connection for `c`: TCP to its destination, then a handshake offering
// `alpn` that verifies the certificate chain and that it names the SNI (or the destination IP):
// UpstreamVerifier::new_session. Null when either fails: the decision and detail are set and both
// sides are closed (the guest reset). The same for a connection's start and for its reconnect
// after an idle release.
asio::awaitable<std::unique_ptr<TlsStream>> connect_upstream_tls(std::shared_ptr<Connection> c, std::vector<std::string> alpn) {
  Core& core = c->core;
  // A connection of the loop's pool with the same key was verified the same way (same address,
  // same name, same trust) and is at rest: it serves instead.
  if (std::unique_ptr<TlsStream> pooled = take_pooled(*c, alpn)) co_return pooled;
  if (!co_await ensure_upstream(c)) co_return nullptr;
  c->phase(core.options.timeouts.handshake);
  tls::SslPtr upstream_ssl = core.upstream->new_session(c->sni, c->destination->ip, c->destination->port);
  if (!upstream_ssl || !tls::offer_alpn(upstream_ssl.get(), alpn)) {
    c->decision = "internal_error";
    c->close_all(true);
    co_return nullptr;
  }
  auto upstream = std::make_unique<TlsStream>(c->upstream, std::move(upstream_ssl));
  if (std::error_code ec = co_await upstream->handshake()) {
    long verify = SSL_get_verify_result(upstream->ssl());
    c->decision = "upstream_tls_failed";
    c->detail = verify != X509_V_OK ? std::string("certificate: ") + X509_verify_cert_error_string(verify)
                                    : (ec == tls_error() ? tls::openssl_error_text() : ec.message());
    core.logger.log(LogLevel::kWarn, c->describe() + ": upstream TLS failed, guest closed: " + c->detail);
    c->close_all(true);
    co_return nullptr;
  }
  co_return upstream;
}

asio::awaitable<void> intercept(std::shared_ptr<Connection> c, std::string first) {
  Core& core = c->core;
  core.intercepted++;
  std::vector<std::string> offer = tls::upstream_alpn_offer(c->alpn);
  std::unique_ptr<TlsStream> upstream = co_await connect_upstream_tls(c, offer);
  if (!upstream) co_return;
  std::string leaf_name = c->sni.empty() ? c->destination->ip.to_string() : c->sni;
  std::shared_ptr<X509> leaf = core.minter->leaf_for(leaf_name);
  tls::SslPtr guest_ssl = leaf ? tls::new_guest_session(core.guest_context.get(), leaf.get(), core.minter->leaf_key()) : nullptr;
  if (!guest_ssl) {
    c->decision = "internal_error";
    c->detail = "no leaf certificate";
    c->close_all(true);
    co_return;
  }
  // ALPN follows the upstream (tls/contexts.hpp says why).
  const bool h2 = tls::negotiated_alpn(upstream->ssl()) == tls::kAlpnH2;
  tls::answer_guest_alpn(guest_ssl.get(), h2 ? tls::kAlpnH2 : tls::kAlpnHttp11);
  const bool alpn_mismatch = !h2 && std::find(c->alpn.begin(), c->alpn.end(), tls::kAlpnH2) != c->alpn.end() &&
                             std::find(c->alpn.begin(), c->alpn.end(), tls::kAlpnHttp11) == c->alpn.end();
  auto guest = std::make_unique<TlsStream>(c->guest, std::move(guest_ssl));
  guest->preload(first);
  wipe(first);
  first.shrink_to_fit();  // the hello is in OpenSSL's hands now
  c->phase(core.options.timeouts.handshake);
  if (std::error_code ec = co_await guest->handshake()) {
    c->decision = "guest_tls_failed";
    c->detail = ec == tls_error() ? tls::openssl_error_text() : ec.message();
    if (alpn_mismatch) {
      c->decision = "alpn_mismatch";
      c->detail = "the guest offered only h2 (ALPN) and the upstream speaks HTTP/1.1: refused with no_application_protocol";
      core.logger.log(LogLevel::kWarn, c->describe() + ": " + c->detail);
    }
    c->close_all(false);
    co_return;
  }
  ack_now(c->guest.native_handle());  // the client's Finished gets no reply (no session tickets)
  if (h2) {
    co_await bridge_h2(c, *guest, *upstream);
    co_return;
  }
  start_relay(c, std::move(guest), std::move(upstream), FilterKind::kRewriter, secrets::Transport::kTlsVerified);
  if (c->relay != nullptr) c->relay->upstream_alpn = std::move(offer);
}

asio::awaitable<void> forward_plain(std::shared_ptr<Connection> c, std::string first, FilterKind kind,
                                    secrets::Transport transport) {
  if (!co_await ensure_upstream(c)) co_return;
  // The first flight goes through the same path (and filter) as everything after it.
  struct Preloaded final : Stream {
    TcpStream inner;
    std::string pending;
    Preloaded(tcp::socket& s, std::string bytes) : inner(s), pending(std::move(bytes)) {}
    asio::awaitable<IoResult> read_some(char* out, std::size_t size) override {
      if (!pending.empty()) {
        IoResult r;
        r.bytes = std::min(size, pending.size());
        std::copy_n(pending.data(), r.bytes, out);
        pending.erase(0, r.bytes);
        if (pending.empty()) std::string().swap(pending);
        co_return r;
      }
      co_return co_await inner.read_some(out, size);
    }
    asio::awaitable<std::error_code> write_all(std::string_view data) override { return inner.write_all(data); }
    asio::awaitable<std::error_code> shutdown_send() override { return inner.shutdown_send(); }
    bool readable_now() override { return !pending.empty() || inner.readable_now(); }
    tcp::socket* park_socket() override { return inner.park_socket(); }
    void readable() override { inner.readable(); }
    bool waiting_for_bytes() const override { return pending.empty() && inner.waiting_for_bytes(); }
  };
  start_relay(c, std::make_unique<Preloaded>(c->guest, std::move(first)), std::make_unique<TcpStream>(c->upstream), kind,
              transport);
}

void finish(Connection& c) {
  if (c.finished) return;
  c.finished = true;
  Json r;
  r["event"] = "connection";
  r["connection"] = c.id;
  r["mode"] = c.kind == ListenerKind::kProxy ? "proxy" : "transparent";
  if (c.client) r["client"] = c.client->to_string();
  if (c.destination) r["destination"] = c.destination->to_string();
  if (c.kind == ListenerKind::kProxy) r["authority"] = c.authority;
  r["sni"] = c.sni;
  if (!c.protocol.empty()) r["protocol"] = c.protocol;
  r["handling"] = c.handling;
  r["decision"] = c.timed_out && c.decision != "violation" && c.decision != "blocked" ? "timeout" : c.decision;
  if (!c.detail.empty()) r["detail"] = c.detail;
  r["bytes_up"] = c.bytes_up;
  r["bytes_down"] = c.bytes_down;
  r["duration_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - c.started).count();
  c.core.audit.write(r);
  if (c.core.logger.enabled(LogLevel::kDebug)) c.core.logger.log(LogLevel::kDebug, r.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

// What a connection does once its first flight is read and judged: the relay (interception or
// forwarding) runs after run() has returned, so that run()'s frame (its parsing state and
// locals, ~1.4 KiB) is not held for the connection's whole life.
struct Setup {
  bool intercepting = false;
  std::string first;
  FilterKind filter = FilterKind::kScanner;
  secrets::Transport transport = secrets::Transport::kOpaque;
};

asio::awaitable<std::optional<Setup>> run(std::shared_ptr<Connection> c) {
  Core& core = c->core;
  const GatewayTimeouts& t = core.options.timeouts;
  const int fd = c->guest.native_handle();
  std::error_code ignored;
  c->guest.set_option(tcp::no_delay(true), ignored);
  c->client = peer_address(fd);
  std::string first;  // the guest's first flight (what follows a CONNECT head)
  bool absolute_http = false;

  if (c->kind == ListenerKind::kTransparent) {
    auto original = original_destination(fd);
    auto local = local_address(fd);
    if (!original || (local && *original == *local)) {
      c->decision = "no_original_destination";  // not redirected here: never connect to ourselves
      co_return std::nullopt;
    }
    c->destination = original;
    if (core.options.pins) c->pins = core.options.pins;
  } else {
    c->phase(t.first_flight + std::chrono::seconds(1));  // a backstop; the reads below time out first
    const auto until = Clock::now() + t.first_flight;
    ProxyRequest request;
    std::string buf(4096, '\0');
    while ((request = parse_proxy_request(first)).kind == ProxyRequest::Kind::kNeedMore) {
      IoResult r = co_await read_until(c->guest, buf.data(), std::min(buf.size(), kMaxProxyHead - first.size()), until);
      if (r.error) {
        c->decision = r.error == asio::error::timed_out ? "first_flight_timeout" : "closed_before_request";
        co_return std::nullopt;
      }
      first.append(buf.data(), r.bytes);
    }
    if (request.kind == ProxyRequest::Kind::kBad) {
      c->decision = "bad_proxy_request";
      c->detail = request.error;
      co_await write_raw(c->guest, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      co_return std::nullopt;
    }
    c->authority_host = request.host;
    c->authority_port = request.port;
    c->authority = (request.host.find(':') != std::string::npos ? "[" + request.host + "]" : request.host) + ":" +
                   std::to_string(request.port);
    c->phase(t.connect * 2 + std::chrono::seconds(1));
    std::vector<IpAddress> ips;
    if (auto literal = IpAddress::parse(request.host)) ips.push_back(*literal);
    else ips = co_await resolve(request.host, request.port, Clock::now() + t.connect);
    // The gateway connects only to what it resolved for this authority: the pin holds by construction.
    c->own_pins = ResolvedPins(request.host, ips);
    std::error_code ec = asio::error::host_not_found;
    std::optional<std::pair<SocketAddress, policy::Decision>> denied;  // the first denied address
    for (const auto& ip : ips) {
      const SocketAddress to{ip, request.port};
      if (auto d = deny_decision(*c, to, {})) {  // never even a SYN to a denied address
        if (!denied) denied.emplace(to, *d);
        continue;
      }
      ec = co_await connect_to(c->upstream, to, Clock::now() + t.connect);
      if (!ec) {
        c->destination = to;
        break;
      }
    }
    if (!c->destination && denied) {
      c->destination = denied->first;
      record_denial(*c, denied->second);
      co_await write_raw(c->guest, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      co_return std::nullopt;
    }
    if (ec) {
      c->decision = ips.empty() ? "resolve_failed" : "connect_failed";
      c->detail = ec.message();
      co_await write_raw(c->guest, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      co_return std::nullopt;
    }
    if (request.kind == ProxyRequest::Kind::kConnect) {
      first.erase(0, request.head_bytes);
      if (co_await write_raw(c->guest, "HTTP/1.1 200 Connection established\r\n\r\n")) co_return std::nullopt;
    } else {
      absolute_http = true;
      c->absolute_http = true;
    }
  }

  FirstFlight kind = FirstFlight::kHttp;
  tls::ClientHelloInfo hello;
  if (!absolute_http) {
    const bool intercept_port = core.intercepts_port(c->destination->port);
    const auto start = Clock::now();
    const auto until = start + t.first_flight;
    // A silent client on a port we do not intercept may be waiting for the server to speak first.
    const auto silent_until = intercept_port ? until : start + std::min(t.server_first, t.first_flight);
    c->phase(t.first_flight + std::chrono::seconds(1));
    std::string buf(4096, '\0');
    while (true) {
      if (auto decided = classify(first, hello)) {
        kind = *decided;
        break;
      }
      std::size_t room = std::min(buf.size(), tls::kMaxClientHelloBytes - std::min(first.size(), tls::kMaxClientHelloBytes));
      IoResult r = co_await read_until(c->guest, buf.data(), std::max<std::size_t>(room, 1), first.empty() ? silent_until : until);
      if (r.error == asio::error::timed_out && first.empty()) {
        kind = FirstFlight::kOpaque;
        break;
      }
      if (r.error) {
        c->decision = r.error == asio::error::timed_out ? "first_flight_timeout" : "closed_during_first_flight";
        co_return std::nullopt;
      }
      first.append(buf.data(), r.bytes);
    }
  }

  bool intercepting = false;
  FilterKind filter = FilterKind::kScanner;
  secrets::Transport transport = secrets::Transport::kOpaque;
  switch (kind) {
    case FirstFlight::kTls: {
      c->sni = hello.sni;
      c->alpn = hello.alpn;
      if (c->kind == ListenerKind::kProxy && !c->sni.empty() && c->sni != c->authority_host) {
        // Domain fronting through the proxy: the tunnel was asked for one host, the TLS names another.
        c->own_pins = ResolvedPins();
        Json r = c->base_record("misaligned");
        r["authority"] = c->authority;
        r["reason"] = "CONNECT authority differs from the TLS SNI: no substitution on this connection";
        core.audit.write(r);
        core.logger.log(LogLevel::kWarn, "connection " + std::to_string(c->id) + ": CONNECT " + c->authority +
                                             " carries SNI " + c->sni + ": no substitution");
      }
      if (core.intercepts_port(c->destination->port) && !core.bypassed(c->sni)) {
        c->handling = "intercept";
        intercepting = true;
        co_await resolve_own_pins(c, c->sni);
      } else {
        c->handling = core.bypassed(c->sni) ? "bypass" : "tls_passthrough";
        filter = FilterKind::kNone;
      }
      break;
    }
    case FirstFlight::kHttp:
      c->handling = "http";
      filter = FilterKind::kRewriter;
      transport = secrets::Transport::kPlainHttp;
      co_await resolve_own_pins(c, host_header(first));
      break;
    case FirstFlight::kTlsUnparsed:
    case FirstFlight::kOpaque:
      c->handling = kind == FirstFlight::kOpaque ? "opaque" : "tls_unparsed";
      if (refuse_uninspectable(*c, kind, hello)) co_return std::nullopt;
      break;
  }
  // Decided once the first flight named its host (the SNI): domain rules need it.
  if (auto denied = deny_decision(*c, *c->destination, c->sni)) {
    record_denial(*c, *denied);
    c->close_all(true);
    co_return std::nullopt;
  }
  co_return Setup{intercepting, std::move(first), filter, transport};
}

}  // namespace

asio::awaitable<void> serve_connection(Core& core, tcp::socket guest, ListenerKind kind,
                                       std::unique_ptr<Budget::Ticket> ticket) {
  auto c = std::make_shared<Connection>(core, std::move(guest), kind, std::move(ticket));
  // Written even if the frame is destroyed at shutdown (no asio calls there). Once a Relay took
  // the connection over (c->relaying), the Relay finishes it and counts it out of `active`.
  struct FinishGuard {
    std::shared_ptr<Connection> c;
    ~FinishGuard() {
      if (c->relaying) return;
      if (!c->finished) {
        if (c->decision == "forwarded") c->decision = "stopped";
        finish(*c);
      }
      c->core.active--;
    }
  } finish_guard{c};
  arm_watchdog(c);
  if (std::optional<Setup> next = co_await run(c)) {
    if (next->intercepting) co_await intercept(c, std::move(next->first));
    else co_await forward_plain(c, std::move(next->first), next->filter, next->transport);
  }
  if (c->relaying) co_return;
  finish(*c);
  c->watchdog.cancel();
}

Core::Core(GatewayOptions opts) : options(std::move(opts)), logger(options.log_level), audit(options.audit_log_path) {
  if (!options.secrets) throw ConfigError("the gateway needs a secret set (it may be empty)");
  // Buffers past 256 KiB (a body held to rewrite) are mapped on their own and given back to the
  // system when freed: glibc's adaptive threshold would otherwise move them into the heap, where
  // the memory a budgeted request used stays resident after it ends.
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  if (options.buffer_bytes < 1024) options.buffer_bytes = 1024;
  if (!options.ca_certificate_file.empty() || !options.ca_key_file.empty()) {
    if (options.ca_certificate_file.empty() || options.ca_key_file.empty())
      throw ConfigError("a configured CA needs both its certificate and its key file");
    minter.emplace(tls::CertificateAuthority::load(options.ca_certificate_file, options.ca_key_file));
  } else {
    minter.emplace(tls::CertificateAuthority::load_or_create(options.home.empty() ? tls::default_home() : options.home));
  }
  audit.report_to(&logger);
  guest_context = tls::make_guest_context();
  upstream = std::make_unique<tls::UpstreamVerifier>(options.network.upstream_cas, options.system_roots_dir);
  // The snapshot holds the set from here on: a reload can then let the first values go too.
  replace_secrets(std::move(options.secrets));
}

std::shared_ptr<const SecretsSnapshot> Core::snapshot() const {
  std::lock_guard lock(snapshot_mutex_);
  return snapshot_;
}

void Core::replace_secrets(std::shared_ptr<const secrets::SecretSet> set) {
  if (!set) throw ConfigError("the gateway needs a secret set (it may be empty)");
  std::lock_guard reloading(reload_mutex_);
  auto next = std::make_shared<SecretsSnapshot>();
  const std::shared_ptr<const SecretsSnapshot> current = snapshot();  // the one replaced (one reload at a time)
  if (current) {
    RetiringResult r = retire_removed(*current->set, std::move(set));
    next->set = std::move(r.set);
    next->retired = std::move(r.retired);
  } else {
    next->set = std::move(set);
  }
  build_scrub_forms(*next, current.get());
  std::shared_ptr<const SecretsSnapshot> old;
  {
    std::lock_guard lock(snapshot_mutex_);
    next->generation = snapshot_ ? snapshot_->generation + 1 : 1;
    generation_.store(next->generation, std::memory_order_release);
    old = std::exchange(snapshot_, std::move(next));
  }
  // `old` goes here, outside the lock: its values are wiped now unless a connection still holds it.
}

std::optional<std::vector<IpAddress>> ResolveCache::find(const std::string& name, const IpAddress& destination) {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(name);
  if (it == entries_.end()) return std::nullopt;
  if (std::chrono::steady_clock::now() - it->second.resolved > kHold) {
    entries_.erase(it);
    return std::nullopt;
  }
  const auto& a = it->second.addresses;
  if (std::find(a.begin(), a.end(), destination) == a.end()) return std::nullopt;  // ask again
  return a;
}

void ResolveCache::store(const std::string& name, const std::vector<IpAddress>& addresses) {
  std::lock_guard lock(mutex_);
  if (entries_.size() >= kMaxNames && !entries_.count(name)) entries_.clear();  // bounded; refills on demand
  entries_[name] = Entry{addresses, std::chrono::steady_clock::now()};
}

bool Core::intercepts_port(std::uint16_t port) const {
  const auto& ports = options.network.intercept_ports;
  return std::find(ports.begin(), ports.end(), port) != ports.end();
}

bool Core::bypassed(std::string_view sni) const {
  if (sni.empty()) return false;
  for (const auto& pattern : options.network.tls_bypass)
    if (pattern.matches(sni)) return true;
  return false;
}

}  // namespace airlock::gateway
