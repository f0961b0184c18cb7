#include "gateway/gateway.hpp"

#include "gateway/core.hpp"
#include "gateway/loop_placement.hpp"
#include "gateway/socket_util.hpp"

#include <airlock/errors.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/v6_only.hpp>
#include <asio/post.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <pthread.h>
#include <sys/resource.h>

#include <condition_variable>
#include <future>
#include <mutex>
#include <string>
#include <thread>

namespace airlock::gateway {

using asio::ip::tcp;

struct Gateway::Impl {
  struct Listener {
    std::unique_ptr<tcp::acceptor> acceptor;
    ListenerKind kind;
    std::string endpoint;
  };

  Core core;
  std::vector<std::unique_ptr<asio::io_context>> contexts;  // [0] also runs the acceptors
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  std::vector<std::thread> threads;
  std::vector<Listener> listeners;
  std::atomic<std::size_t> next_context{0};
  std::vector<std::atomic<std::size_t>> open;  // per context: connections placed there, still open
  std::mutex mutex;
  std::condition_variable changed;
  bool started = false;
  bool stopping = false;
  bool stopped = false;

  explicit Impl(GatewayOptions options) : core(std::move(options)) {}

  // The loop with the fewest open connections, ties in turn (loop_placement.hpp).
  std::size_t pick_loop() { return least_loaded(open, next_context++); }

  void add_listener(std::unique_ptr<tcp::acceptor> acceptor, ListenerKind kind) {
    auto local = local_address(acceptor->native_handle());
    listeners.push_back({std::move(acceptor), kind, local ? local->to_string() : std::string("?")});
  }

  // `text` is one address or a comma-separated list ("0.0.0.0:15001,[::]:15001").
  void bind_all(const std::string& text, ListenerKind kind) {
    std::size_t start = 0;
    while (start <= text.size()) {
      std::size_t comma = text.find(',', start);
      std::string one = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (!one.empty()) bind(one, kind);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }

  void bind(const std::string& text, ListenerKind kind) {
    auto address = parse_listen_address(text);
    if (!address) throw ConfigError("bad listen address " + quote_for_message(text) + " (want IP:PORT)");
    std::error_code ec;
    tcp::endpoint endpoint(asio::ip::make_address(address->ip.to_string(), ec), address->port);
    auto acceptor = std::make_unique<tcp::acceptor>(*contexts[0]);
    acceptor->open(endpoint.protocol(), ec);
    if (!ec) acceptor->set_option(asio::socket_base::reuse_address(true), ec);
    // IPv6 listeners take IPv6 only, so "[::]:P" and "0.0.0.0:P" can both be bound (and an IPv4
    // connection never arrives v4-mapped, where its original destination would be unreadable).
    if (!ec && endpoint.protocol() == tcp::v6()) acceptor->set_option(asio::ip::v6_only(true), ec);
    if (!ec) acceptor->bind(endpoint, ec);
    if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) throw ConfigError("cannot listen on " + text + ": " + ec.message());
    add_listener(std::move(acceptor), kind);
  }

  void adopt(int fd, ListenerKind kind) {
    auto local = local_address(fd);
    if (!local) throw ConfigError("listening descriptor " + std::to_string(fd) + " is not a bound TCP socket");
    std::error_code ec;
    auto acceptor = std::make_unique<tcp::acceptor>(*contexts[0]);
    acceptor->assign(local->ip.is_v4() ? tcp::v4() : tcp::v6(), fd, ec);
    if (ec) throw ConfigError("cannot adopt listening descriptor " + std::to_string(fd) + ": " + ec.message());
    add_listener(std::move(acceptor), kind);
  }

  // The connection's share of the budget, or a reset (audited, warned) when its client or the
  // gateway is at a connection limit.
  std::unique_ptr<Budget::Ticket> admit(tcp::socket& socket) {
    auto peer = peer_address(socket.native_handle());
    const std::string client = peer ? peer->ip.to_string() : std::string("?");
    Refusal why = Refusal::kNone;
    auto ticket = core.budget->admit(client, why);
    if (ticket) return ticket;
    core.rejected_over_limit++;
    nlohmann::ordered_json r;
    r["event"] = "refused";
    r["client"] = peer ? peer->to_string() : std::string("?");
    r["reason"] = describe(why);
    core.audit.write(r);
    core.logger.log(LogLevel::kWarn, "connection from " + client + " refused: " + describe(why));
    std::error_code ec;
    set_reset_on_close(socket.native_handle());
    socket.close(ec);
    return nullptr;
  }

  asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, ListenerKind kind) {
    asio::steady_timer backoff(acceptor.get_executor());
    while (!core.stopping) {
      const std::size_t loop = pick_loop();
      asio::io_context& target = *contexts[loop];
      tcp::socket socket(target);
      std::error_code ec;
      co_await acceptor.async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor.is_open() || core.stopping) break;
        // Out of descriptors or similar: pause instead of spinning.
        core.logger.log(LogLevel::kWarn, "accept failed: " + ec.message());
        backoff.expires_after(std::chrono::milliseconds(100));
        co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      core.accepted++;
      std::unique_ptr<Budget::Ticket> ticket = admit(socket);
      if (!ticket) continue;
      ticket->occupy(open[loop]);
      core.active++;
      asio::co_spawn(target, serve_connection(core, std::move(socket), kind, std::move(ticket)),
                     [this](std::exception_ptr error) {
        if (!error) return;
        try {
          std::rethrow_exception(error);
        } catch (const std::exception& e) {
          core.logger.log(LogLevel::kError, std::string("connection ended by an exception: ") + e.what());
        }
      });
    }
  }
};

namespace {

// Two descriptors per connection (guest and upstream) and a margin for listeners, the audit log,
// resolvers and the CA files: at most that many connections, so accept never fails for want of
// a descriptor (which would refuse every client alike). The loops' pools of idle upstream
// connections (`pooled`: their bound, one descriptor each) come off the top.
BudgetLimits fit_descriptor_limit(BudgetLimits limits, std::size_t pooled) {
  constexpr std::size_t kMargin = 64;
  rlimit nofile{};
  if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY) {
    const std::size_t margin = kMargin + pooled;
    const std::size_t room = nofile.rlim_cur > 2 * kMargin + pooled ? (nofile.rlim_cur - margin) / 2 : 1;
    limits.connections = std::min(limits.connections, room);
  }
  limits.reserve_connections = std::min(limits.reserve_connections, limits.connections / 10);
  return limits;
}

}  // namespace

Gateway::Gateway(GatewayOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  if (impl_->core.options.on_record) impl_->core.audit.set_observer(impl_->core.options.on_record);
}

Gateway::~Gateway() { stop(); }

void Gateway::start() {
  std::lock_guard lock(impl_->mutex);
  if (impl_->started) return;
  Impl& s = *impl_;
  int threads = s.core.options.threads > 0 ? s.core.options.threads
                                           : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 0; i < threads; ++i) {
    s.contexts.push_back(std::make_unique<asio::io_context>(1));
    s.guards.push_back(asio::make_work_guard(*s.contexts.back()));
  }
  s.open = std::vector<std::atomic<std::size_t>>(s.contexts.size());
  const GatewayOptions& o = s.core.options;
  // The pools hold at most a quarter of the descriptors the process may open (a small limit
  // keeps its descriptors for guest connections): each loop's bound is cut to fit.
  rlimit nofile{};
  if (s.core.options.upstream_pool_per_key > 0 && ::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY) {
    const std::size_t share = static_cast<std::size_t>(nofile.rlim_cur) / 4 / s.contexts.size();
    s.core.options.upstream_pool_per_loop = std::min(s.core.options.upstream_pool_per_loop, share);
  }
  const std::size_t pooled = o.upstream_pool_per_key == 0 ? 0 : o.upstream_pool_per_loop * s.contexts.size();
  s.core.budget.emplace(fit_descriptor_limit(o.limits, pooled));
  for (int fd : o.transparent_fds) s.adopt(fd, ListenerKind::kTransparent);
  for (int fd : o.proxy_fds) s.adopt(fd, ListenerKind::kProxy);
  s.bind_all(o.transparent_listen, ListenerKind::kTransparent);
  s.bind_all(o.proxy_listen, ListenerKind::kProxy);
  if (s.listeners.empty()) throw ConfigError("the gateway has no listener (give a transparent or a proxy address)");
  for (auto& l : s.listeners)
    asio::co_spawn(*s.contexts[0], s.accept_loop(*l.acceptor, l.kind), asio::detached);
  for (std::size_t i = 0; i < s.contexts.size(); ++i) {
    s.threads.emplace_back([&s, io = s.contexts[i].get()] {
      while (true) {
        try {
          io->run();
          return;
        } catch (const std::exception& e) {
          s.core.logger.log(LogLevel::kError, std::string("event loop: ") + e.what());
        }
      }
    });
    // "airlock-loop-N" in ps -L, top -H, perf and /proc/PID/task/*/comm: which thread is which
    // event loop (loop 0 also runs the acceptors); named before start() returns. A thread a loop
    // starts (Asio's resolver) inherits the name. scripts/bench's capped scenario finds them so.
    const std::string name = "airlock-loop-" + std::to_string(i);
    ::pthread_setname_np(s.threads.back().native_handle(), name.substr(0, 15).c_str());
  }
  s.started = true;
  for (auto& l : s.listeners)
    s.core.logger.log(LogLevel::kInfo, std::string(l.kind == ListenerKind::kProxy ? "proxy" : "transparent") +
                                            " listener on " + l.endpoint);
}

void Gateway::stop() {
  Impl& s = *impl_;
  {
    std::unique_lock lock(s.mutex);
    if (!s.started || s.stopped) return;
    if (s.stopping) {
      s.changed.wait(lock, [&] { return s.stopped; });
      return;
    }
    s.stopping = true;
  }
  s.core.stopping = true;
  std::promise<void> closed;
  asio::post(*s.contexts[0], [&] {
    std::error_code ec;
    for (auto& l : s.listeners) l.acceptor->close(ec);
    closed.set_value();
  });
  closed.get_future().wait();
  auto deadline = std::chrono::steady_clock::now() + s.core.options.timeouts.stop_grace;
  while (s.core.active.load() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  for (auto& g : s.guards) g.reset();
  for (auto& ctx : s.contexts) ctx->stop();
  for (auto& t : s.threads) t.join();
  // Acceptors first, then the acceptor context (its frames hold sockets of the other contexts),
  // then the rest; destroying a context destroys its connections and closes their sockets.
  s.listeners.clear();
  s.contexts[0].reset();
  for (auto& ctx : s.contexts) ctx.reset();
  s.guards.clear();
  s.threads.clear();
  {
    std::lock_guard lock(s.mutex);
    s.stopped = true;
  }
  s.changed.notify_all();
}

void Gateway::wait() {
  std::unique_lock lock(impl_->mutex);
  impl_->changed.wait(lock, [&] { return impl_->stopped || !impl_->started; });
}

std::uint64_t Gateway::replace_secrets(std::shared_ptr<const secrets::SecretSet> secrets) {
  Core& core = impl_->core;
  core.replace_secrets(std::move(secrets));
  const auto now = core.snapshot();
  // Audited: which secrets (by env name, never a value) connections from here on use.
  nlohmann::ordered_json r;
  r["event"] = "secrets_reloaded";
  r["generation"] = now->generation;
  nlohmann::ordered_json names = nlohmann::ordered_json::array();
  for (const SecretBinding& s : now->set->secrets())
    if (!now->is_retired(s.env_var())) names.push_back(s.env_var());
  r["secrets"] = std::move(names);
  if (!now->retired.empty()) r["retired"] = now->retired;  // removed: their placeholders are violations
  core.audit.write(r);
  return now->generation;
}

GatewayEndpoints Gateway::endpoints() const {
  GatewayEndpoints out;
  for (const auto& l : impl_->listeners)
    (l.kind == ListenerKind::kProxy ? out.proxy : out.transparent).push_back(l.endpoint);
  return out;
}

GatewayCounters Gateway::counters() const {
  const Core& c = impl_->core;
  GatewayCounters out{c.accepted.load(), c.active.load(), c.rejected_over_limit.load(), c.intercepted.load(),
                      c.substitutions.load(), c.blocked.load(), c.denied.load()};
  out.over_budget = c.over_budget.load();
  out.idle_released = c.idle_released.load();
  out.idle_parked = c.idle_parked.load();
  out.upstream_released = c.upstream_released.load();
  out.upstream_pooled = c.upstream_pooled.load();
  out.upstream_reused = c.upstream_reused.load();
  out.request_latency = c.request_latency.snapshot();
  return out;
}

std::string Gateway::ca_certificate_pem() const { return impl_->core.minter->ca().certificate_pem(); }

}  // namespace airlock::gateway
