#include "dns/forwarder.hpp"

#include "dns/answer.hpp"

#include <airlock/errors.hpp>

#include <asio/co_spawn.hpp>
#include <asio/connect.hpp>
#include <asio/detached.hpp>
#include <asio/dispatch.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/read.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <sys/random.h>
#include <sys/socket.h>

#include <fstream>
#include <mutex>
#include <set>
#include <sstream>

namespace airlock::dns {

using asio::awaitable;
using namespace asio::experimental::awaitable_operators;
using udp = asio::ip::udp;
using tcp = asio::ip::tcp;

namespace {

constexpr auto kTuple = asio::experimental::as_tuple(asio::use_awaitable);

std::uint16_t random_id() {
  std::uint16_t id = 0;
  if (getrandom(&id, sizeof id, 0) != static_cast<ssize_t>(sizeof id)) {
    // getrandom on a 2-byte request does not fail short once the pool is ready; keep a value anyway.
    id = static_cast<std::uint16_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }
  return id;
}

void set_id(std::string& wire, std::uint16_t id) {
  wire[0] = static_cast<char>(id >> 8);
  wire[1] = static_cast<char>(id & 0xff);
}

std::string encode_or_empty(const Message& m) {
  std::string out;
  if (build(m, out)) out.clear();
  return out;
}

// Is `reply` the answer to the query we sent (id, QR, the same single question)?
bool matches_query(const Message& reply, std::uint16_t id, const Message& query) {
  return reply.header.qr() && reply.header.id == id && reply.header.opcode() == 0 && reply.questions.size() == 1 &&
         reply.questions.front() == query.questions.front();
}

}  // namespace

std::string_view to_string(Outcome outcome) noexcept {
  switch (outcome) {
    case Outcome::kAnswered: return "answered";
    case Outcome::kTruncated: return "truncated";
    case Outcome::kDeniedDomain: return "denied-domain";
    case Outcome::kRebinding: return "rebinding";
    case Outcome::kServFail: return "servfail";
    case Outcome::kFormErr: return "formerr";
    case Outcome::kNotImp: return "notimp";
    case Outcome::kDropped: return "dropped";
  }
  return "?";
}

std::vector<udp::endpoint> read_resolv_conf(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError("cannot read resolver list " + path);
  std::vector<udp::endpoint> out;
  std::string line;
  while (std::getline(in, line) && out.size() < 16) {
    std::istringstream words(line);
    std::string key, value;
    if (!(words >> key >> value) || key != "nameserver") continue;
    std::error_code ec;
    const auto address = asio::ip::make_address(value, ec);
    if (!ec) out.emplace_back(address, 53);
  }
  if (out.empty()) throw ConfigError(path + " names no resolver (no valid `nameserver` line)");
  return out;
}

struct Forwarder::Core : std::enable_shared_from_this<Core> {
  Core(asio::any_io_executor executor, ForwarderOptions o, PinSet& p, const policy::Policy& pol)
      : strand(asio::make_strand(std::move(executor))), options(std::move(o)), pins(&p), policy(&pol) {}

  asio::strand<asio::any_io_executor> strand;
  ForwarderOptions options;
  ForwarderStats stats;

  // Guards pins/policy against stop(): every use holds it and first checks `stopped`.
  std::mutex use_mutex;
  bool stopped = false;
  PinSet* pins;
  const policy::Policy* policy;

  // Strand-only state.
  std::size_t udp_in_flight = 0;
  std::size_t tcp_clients = 0;  // counted from accept, so a burst cannot overshoot the cap
  std::vector<std::shared_ptr<udp::socket>> udp_sockets;
  std::vector<std::shared_ptr<tcp::acceptor>> acceptors;
  std::set<tcp::socket*> clients;

  bool is_stopped() {
    std::lock_guard lock(use_mutex);
    return stopped;
  }
  void stop();
  void serve_udp(std::shared_ptr<udp::socket> socket);
  void serve_tcp(std::shared_ptr<tcp::acceptor> acceptor);
  awaitable<std::string> resolve(std::string query, Transport transport, Outcome* outcome);
  awaitable<void> udp_loop(std::shared_ptr<Core> self, std::shared_ptr<udp::socket> socket);
  awaitable<void> udp_query(std::shared_ptr<Core> self, std::shared_ptr<udp::socket> socket, std::string query,
                            udp::endpoint from);
  awaitable<void> tcp_accept_loop(std::shared_ptr<Core> self, std::shared_ptr<tcp::acceptor> acceptor);
  awaitable<void> tcp_client(std::shared_ptr<Core> self, tcp::socket socket);
  awaitable<std::error_code> ask_udp(const udp::endpoint& upstream, const std::string& query, const Message& parsed,
                                     std::string& reply, Message& answer);
  awaitable<std::error_code> ask_tcp(const udp::endpoint& upstream, const std::string& query, const Message& parsed,
                                     std::string& reply, Message& answer);
};

Forwarder::Forwarder(asio::any_io_executor executor, ForwarderOptions options, PinSet& pins,
                     const policy::Policy& policy) {
  if (options.upstreams.empty()) options.upstreams = read_resolv_conf();
  if (options.tries == 0) options.tries = 1;
  core_ = std::make_shared<Core>(std::move(executor), std::move(options), pins, policy);
}

Forwarder::~Forwarder() { stop(); }

const ForwarderStats& Forwarder::stats() const noexcept { return core_->stats; }
const ForwarderOptions& Forwarder::options() const noexcept { return core_->options; }

awaitable<std::string> Forwarder::resolve(std::string query, Transport transport, Outcome* outcome) {
  auto core = core_;
  co_return co_await core->resolve(std::move(query), transport, outcome);
}

void Forwarder::serve_udp(udp::socket socket) { core_->serve_udp(std::make_shared<udp::socket>(std::move(socket))); }

void Forwarder::serve_tcp(tcp::acceptor acceptor) {
  core_->serve_tcp(std::make_shared<tcp::acceptor>(std::move(acceptor)));
}

void Forwarder::Core::serve_udp(std::shared_ptr<udp::socket> socket) {
  asio::dispatch(strand, [self = shared_from_this(), socket] {
    if (self->is_stopped()) return;
    self->udp_sockets.push_back(socket);
    asio::co_spawn(self->strand, self->udp_loop(self, socket), asio::detached);
  });
}

void Forwarder::Core::serve_tcp(std::shared_ptr<tcp::acceptor> acceptor) {
  asio::dispatch(strand, [self = shared_from_this(), acceptor] {
    if (self->is_stopped()) return;
    self->acceptors.push_back(acceptor);
    asio::co_spawn(self->strand, self->tcp_accept_loop(self, acceptor), asio::detached);
  });
}

std::error_code Forwarder::serve_udp_fd(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return {errno, std::system_category()};
  udp::socket socket(core_->strand);
  std::error_code ec;
  socket.assign(addr.ss_family == AF_INET6 ? udp::v6() : udp::v4(), fd, ec);
  if (ec) return ec;
  serve_udp(std::move(socket));
  return {};
}

std::error_code Forwarder::serve_tcp_fd(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return {errno, std::system_category()};
  tcp::acceptor acceptor(core_->strand);
  std::error_code ec;
  acceptor.assign(addr.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), fd, ec);
  if (ec) return ec;
  serve_tcp(std::move(acceptor));
  return {};
}

std::error_code Forwarder::listen(const asio::ip::address& address, std::uint16_t port, std::uint16_t& bound_port) {
  std::error_code ec;
  for (int attempt = 0; attempt < 20; ++attempt) {
    udp::socket u(core_->strand);
    u.open(address.is_v4() ? udp::v4() : udp::v6(), ec);
    if (!ec) u.bind(udp::endpoint(address, port), ec);
    if (ec) return ec;
    const std::uint16_t chosen = u.local_endpoint(ec).port();
    if (ec) return ec;
    tcp::acceptor t(core_->strand);
    t.open(address.is_v4() ? tcp::v4() : tcp::v6(), ec);
    if (!ec) t.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) t.bind(tcp::endpoint(address, chosen), ec);
    if (!ec) t.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      if (port == 0 && ec == asio::error::address_in_use) continue;  // the free UDP port is taken on TCP
      return ec;
    }
    bound_port = chosen;
    serve_udp(std::move(u));
    serve_tcp(std::move(t));
    return {};
  }
  return ec;
}

void Forwarder::stop() { core_->stop(); }

void Forwarder::Core::stop() {
  {
    std::lock_guard lock(use_mutex);
    if (stopped) return;
    stopped = true;
  }
  asio::dispatch(strand, [self = shared_from_this()] {
    std::error_code ignored;
    for (auto& s : self->udp_sockets) s->close(ignored);
    for (auto& a : self->acceptors) a->close(ignored);
    for (auto* c : self->clients) c->close(ignored);
    self->udp_sockets.clear();
    self->acceptors.clear();
  });
}

// ---- upstream ----

awaitable<std::error_code> Forwarder::Core::ask_udp(const udp::endpoint& upstream, const std::string& query,
                                              const Message& parsed, std::string& reply, Message& answer) {
  ++stats.upstream_udp;
  udp::socket socket(strand);
  std::error_code ec;
  socket.open(upstream.protocol(), ec);
  if (!ec) socket.connect(upstream, ec);  // replies from anywhere else are never seen
  if (ec) co_return ec;
  std::string wire = query;
  const std::uint16_t id = random_id();
  set_id(wire, id);
  asio::steady_timer deadline(strand);
  deadline.expires_after(options.try_timeout);
  auto sent = co_await (socket.async_send(asio::buffer(wire), kTuple) || deadline.async_wait(kTuple));
  if (sent.index() == 1) co_return asio::error::timed_out;
  if (auto [send_ec, n] = std::get<0>(sent); send_ec) co_return send_ec;
  std::string buffer(kMaxMessageBytes, '\0');
  while (true) {
    auto got = co_await (socket.async_receive(asio::buffer(buffer), kTuple) || deadline.async_wait(kTuple));
    if (got.index() == 1) co_return asio::error::timed_out;
    auto [recv_ec, n] = std::get<0>(got);
    if (recv_ec) co_return recv_ec;
    const std::string_view bytes(buffer.data(), n);
    Message m;
    if (parse(bytes, m) || !matches_query(m, id, parsed)) continue;  // stray or forged: keep waiting
    reply.assign(bytes);
    answer = std::move(m);
    co_return std::error_code{};
  }
}

awaitable<std::error_code> Forwarder::Core::ask_tcp(const udp::endpoint& upstream, const std::string& query,
                                              const Message& parsed, std::string& reply, Message& answer) {
  ++stats.upstream_tcp;
  tcp::socket socket(strand);
  asio::steady_timer deadline(strand);
  deadline.expires_after(options.try_timeout);
  const tcp::endpoint to(upstream.address(), upstream.port());
  auto connected = co_await (socket.async_connect(to, kTuple) || deadline.async_wait(kTuple));
  if (connected.index() == 1) co_return asio::error::timed_out;
  if (auto [ec] = std::get<0>(connected); ec) co_return ec;

  std::string wire(2, '\0');
  wire += query;
  const std::uint16_t id = random_id();
  wire[0] = static_cast<char>(query.size() >> 8);
  wire[1] = static_cast<char>(query.size() & 0xff);
  wire[2] = static_cast<char>(id >> 8);
  wire[3] = static_cast<char>(id & 0xff);
  auto written = co_await (asio::async_write(socket, asio::buffer(wire), kTuple) || deadline.async_wait(kTuple));
  if (written.index() == 1) co_return asio::error::timed_out;
  if (auto [ec, n] = std::get<0>(written); ec) co_return ec;

  unsigned char length[2];
  auto got_length = co_await (asio::async_read(socket, asio::buffer(length), kTuple) || deadline.async_wait(kTuple));
  if (got_length.index() == 1) co_return asio::error::timed_out;
  if (auto [ec, n] = std::get<0>(got_length); ec) co_return ec;
  const std::size_t size = (std::size_t{length[0]} << 8) | length[1];
  std::string buffer(size, '\0');
  auto got = co_await (asio::async_read(socket, asio::buffer(buffer), kTuple) || deadline.async_wait(kTuple));
  if (got.index() == 1) co_return asio::error::timed_out;
  if (auto [ec, n] = std::get<0>(got); ec) co_return ec;
  Message m;
  if (auto ec = parse(buffer, m)) co_return ec;
  if (!matches_query(m, id, parsed)) co_return make_error_code(Errc::kBadRdata);
  reply = std::move(buffer);
  answer = std::move(m);
  co_return std::error_code{};
}

// ---- one query ----

awaitable<std::string> Forwarder::Core::resolve(std::string query, Transport transport, Outcome* outcome) {
  ++stats.queries;
  Outcome local = Outcome::kDropped;
  Outcome& out = outcome ? *outcome : local;
  Message q;
  if (auto ec = parse(query, q)) {
    Header header;
    std::optional<Question> question;
    parse_question(query, header, question);
    if (query.size() < kHeaderBytes || header.qr()) {
      ++stats.dropped;
      out = Outcome::kDropped;
      co_return std::string{};
    }
    Message formerr;
    formerr.header.id = header.id;
    formerr.header.flags = static_cast<std::uint16_t>(header.flags & 0x7900);
    formerr.header.set_qr(true);
    formerr.header.set_rcode(rcode::kFormErr);
    out = Outcome::kFormErr;
    co_return encode_or_empty(formerr);
  }
  if (q.header.qr()) {
    ++stats.dropped;
    out = Outcome::kDropped;
    co_return std::string{};
  }
  if (q.header.opcode() != 0) {
    out = Outcome::kNotImp;
    co_return encode_or_empty(make_response(q, rcode::kNotImp, options.advertised_udp_payload));
  }
  if (q.questions.size() != 1) {
    out = Outcome::kFormErr;
    co_return encode_or_empty(make_response(q, rcode::kFormErr, options.advertised_udp_payload));
  }
  bool denied = false;
  {
    std::lock_guard lock(use_mutex);
    if (stopped) {
      out = Outcome::kDropped;
      co_return std::string{};
    }
    denied = policy->denies_domain(q.questions.front().name.text());
    if (denied && options.on_refused) options.on_refused(q.questions.front().name.text(), Outcome::kDeniedDomain);
  }
  if (denied) {
    ++stats.denied_domain;
    out = Outcome::kDeniedDomain;
    co_return encode_or_empty(make_response(q, rcode::kNxDomain, options.advertised_udp_payload));
  }

  std::string reply;
  Message answer;
  std::error_code ec = asio::error::timed_out;
  for (unsigned attempt = 0; attempt < options.tries && ec; ++attempt) {
    const udp::endpoint& upstream = options.upstreams[attempt % options.upstreams.size()];
    if (transport == Transport::kUdp) {
      ec = co_await ask_udp(upstream, query, q, reply, answer);
      if (!ec && answer.header.tc()) {
        ++stats.tcp_retries;
        ec = co_await ask_tcp(upstream, query, q, reply, answer);
      }
    } else {
      ec = co_await ask_tcp(upstream, query, q, reply, answer);
    }
  }
  if (ec) {
    ++stats.servfail;
    out = Outcome::kServFail;
    co_return encode_or_empty(make_response(q, rcode::kServFail, options.advertised_udp_payload));
  }

  policy::AnswerVerdict verdict = policy::AnswerVerdict::kPass;
  {
    std::lock_guard lock(use_mutex);
    if (stopped) {
      out = Outcome::kDropped;
      co_return std::string{};
    }
    verdict = check_answer(answer, *policy);
    // Pinned before the guest can read the answer, so its first connection finds the pin.
    if (verdict == policy::AnswerVerdict::kPass) pins->record(answer, pins->now());
    else if (options.on_refused)
      options.on_refused(q.questions.front().name.text(), verdict == policy::AnswerVerdict::kRebinding
                                                              ? Outcome::kRebinding
                                                              : Outcome::kDeniedDomain);
  }
  switch (verdict) {
    case policy::AnswerVerdict::kPass:
      break;
    case policy::AnswerVerdict::kDeniedDomain:
      ++stats.denied_domain;
      out = Outcome::kDeniedDomain;
      co_return encode_or_empty(make_response(q, rcode::kNxDomain, options.advertised_udp_payload));
    case policy::AnswerVerdict::kRebinding:
      ++stats.rebinding;
      out = Outcome::kRebinding;
      co_return encode_or_empty(make_response(q, rcode::kNxDomain, options.advertised_udp_payload));
  }

  set_id(reply, q.header.id);
  if (transport == Transport::kUdp) {
    const std::size_t limit = std::min(q.udp_payload_limit(), options.max_udp_payload);
    if (reply.size() > std::max<std::size_t>(limit, kMinUdpPayload)) {
      Message cut = truncated(answer);
      cut.header.id = q.header.id;
      ++stats.truncated;
      out = Outcome::kTruncated;
      co_return encode_or_empty(cut);
    }
  }
  ++stats.answered;
  out = Outcome::kAnswered;
  co_return reply;
}

// ---- guest servers ----

awaitable<void> Forwarder::Core::udp_loop(std::shared_ptr<Core> self, std::shared_ptr<udp::socket> socket) {
  std::string buffer(kMaxMessageBytes, '\0');
  while (!is_stopped()) {
    udp::endpoint from;
    auto [ec, n] = co_await socket->async_receive_from(asio::buffer(buffer), from, kTuple);
    if (ec) {
      if (is_stopped() || ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) co_return;
      continue;  // e.g. an ICMP error reported on the socket
    }
    if (udp_in_flight >= options.max_udp_in_flight) {
      ++stats.dropped;
      continue;
    }
    ++udp_in_flight;
    asio::co_spawn(strand, udp_query(self, socket, buffer.substr(0, n), from), asio::detached);
  }
}

awaitable<void> Forwarder::Core::udp_query(std::shared_ptr<Core> self, std::shared_ptr<udp::socket> socket,
                                           std::string query, udp::endpoint from) {
  struct Release {
    Core* core;
    ~Release() { --core->udp_in_flight; }
  } release{self.get()};
  const std::string reply = co_await resolve(std::move(query), Transport::kUdp, nullptr);
  if (reply.empty() || is_stopped()) co_return;
  co_await socket->async_send_to(asio::buffer(reply), from, kTuple);
}

awaitable<void> Forwarder::Core::tcp_accept_loop(std::shared_ptr<Core> self, std::shared_ptr<tcp::acceptor> acceptor) {
  while (!is_stopped()) {
    auto [ec, socket] = co_await acceptor->async_accept(kTuple);
    if (ec) {
      if (is_stopped() || ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) co_return;
      // Out of descriptors or similar: back off briefly instead of spinning.
      asio::steady_timer pause(strand, std::chrono::milliseconds(100));
      co_await pause.async_wait(kTuple);
      continue;
    }
    if (tcp_clients >= options.max_tcp_clients) {
      std::error_code ignored;
      socket.close(ignored);
      ++stats.dropped;
      continue;
    }
    ++tcp_clients;
    asio::co_spawn(strand, tcp_client(self, std::move(socket)), asio::detached);
  }
}

awaitable<void> Forwarder::Core::tcp_client(std::shared_ptr<Core> self, tcp::socket socket) {
  struct Registration {
    Core* core;
    tcp::socket* socket;
    ~Registration() {
      core->clients.erase(socket);
      --core->tcp_clients;
    }
  } registration{self.get(), &socket};
  clients.insert(&socket);
  asio::steady_timer deadline(strand);
  while (!is_stopped()) {
    deadline.expires_after(options.tcp_idle_timeout);
    unsigned char length[2];
    auto got_length = co_await (asio::async_read(socket, asio::buffer(length), kTuple) || deadline.async_wait(kTuple));
    if (got_length.index() == 1 || std::get<0>(std::get<0>(got_length))) break;
    const std::size_t size = (std::size_t{length[0]} << 8) | length[1];
    if (size == 0) break;
    std::string query(size, '\0');
    deadline.expires_after(options.try_timeout);
    auto got = co_await (asio::async_read(socket, asio::buffer(query), kTuple) || deadline.async_wait(kTuple));
    if (got.index() == 1 || std::get<0>(std::get<0>(got))) break;
    const std::string reply = co_await resolve(std::move(query), Transport::kTcp, nullptr);
    if (reply.empty() || is_stopped()) break;
    std::string framed(2, '\0');
    framed[0] = static_cast<char>(reply.size() >> 8);
    framed[1] = static_cast<char>(reply.size() & 0xff);
    framed += reply;
    deadline.expires_after(options.try_timeout);
    auto written = co_await (asio::async_write(socket, asio::buffer(framed), kTuple) || deadline.async_wait(kTuple));
    if (written.index() == 1 || std::get<0>(std::get<0>(written))) break;
  }
  std::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_both, ignored);
  socket.close(ignored);
}

}  // namespace airlock::dns
