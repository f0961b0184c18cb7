#include "gateway/admin_server.hpp"

#include "common/concat.hpp"

#include <airlock/errors.hpp>
#include <http/request_parser.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <thread>

namespace airlock::gateway {
namespace {

constexpr std::size_t kMaxRequestBytes = 8 * 1024;
constexpr std::size_t kMaxClients = 16;
constexpr auto kDeadline = std::chrono::seconds(5);

// Takes the request head from the project's HTTP/1.1 parser (fuzzed with the data path's).
struct HeadSink : http::RequestSink {
  bool done = false;
  std::string method, target;
  void on_head(http::RequestHead& head) override {
    method = std::string(head.view(head.method));
    target = std::string(head.view(head.target));
    done = true;
  }
  void on_body(std::string_view) override {}
  void on_framing(http::FramingKind, std::string_view) override {}
  void on_message_end() override {}
};

std::string response(int status, std::string_view reason, std::string_view type, std::string_view body) {
  std::string r = concat("HTTP/1.1 ", std::to_string(status), " ");  // common/concat.hpp says why
  r.append(reason).append("\r\nContent-Type: ").append(type);
  r.append("\r\nContent-Length: ").append(std::to_string(body.size()));
  r.append("\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n").append(body);
  return r;
}

}  // namespace

struct AdminServer::Impl {
  AdminHandlers handlers;
  asio::io_context io;
  std::unique_ptr<asio::ip::tcp::acceptor> tcp;
  std::unique_ptr<asio::local::stream_protocol::acceptor> local;
  std::string endpoint;
  std::string unix_path;
  std::atomic<std::size_t> clients{0};
  std::thread thread;

  std::string answer(const HeadSink& head) {
    const std::string_view path = std::string_view(head.target).substr(0, head.target.find('?'));
    if (path == "/reload" && handlers.reload) {
      if (head.method != "POST") return response(405, "Method Not Allowed", "text/plain", "POST only\n");
      const AdminResult r = handlers.reload();
      return r.ok ? response(200, "OK", "text/plain", r.message + "\n")
                  : response(422, "Unprocessable Content", "text/plain", r.message + "\n");
    }
    if (head.method != "GET" && head.method != "HEAD") return response(405, "Method Not Allowed", "text/plain", "GET only\n");
    if (path == "/metrics") return response(200, "OK", "text/plain; version=0.0.4; charset=utf-8", handlers.metrics());
    if (path == "/healthz") return response(200, "OK", "text/plain", "ok\n");
    if (path == "/readyz") {
      return handlers.ready() ? response(200, "OK", "text/plain", "ready\n")
                              : response(503, "Service Unavailable", "text/plain", "not ready\n");
    }
    return response(404, "Not Found", "text/plain", "/metrics, /healthz, /readyz\n");
  }

  template <typename Socket>
  asio::awaitable<void> serve(Socket socket) {
    asio::steady_timer deadline(socket.get_executor());
    deadline.expires_after(kDeadline);
    deadline.async_wait([&socket](std::error_code ec) {
      if (!ec) socket.close(ec);
    });
    http::Limits limits;
    limits.max_request_line = kMaxRequestBytes;
    limits.max_header_section = kMaxRequestBytes;
    limits.max_headers = 64;
    http::RequestParser parser(limits);
    HeadSink head;
    char buf[2048];
    std::size_t total = 0;
    std::error_code ec;
    while (!head.done && parser.error() == http::ParseError::kNone && total <= kMaxRequestBytes) {
      const std::size_t n = co_await socket.async_read_some(asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      total += n;
      parser.parse(std::string_view(buf, n), head);
    }
    if (!ec) {
      const std::string reply = head.done ? answer(head) : response(400, "Bad Request", "text/plain", "bad request\n");
      co_await asio::async_write(socket, asio::buffer(reply), asio::redirect_error(asio::use_awaitable, ec));
    }
    deadline.cancel();
    socket.shutdown(Socket::shutdown_both, ec);
    socket.close(ec);
    --clients;
  }

  template <typename Acceptor>
  asio::awaitable<void> accept_loop(Acceptor& acceptor) {
    for (;;) {
      std::error_code ec;
      auto socket = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      if (ec) {  // out of descriptors and the like: wait a little, never spin
        asio::steady_timer pause(acceptor.get_executor(), std::chrono::milliseconds(100));
        co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      if (clients.load() >= kMaxClients) {
        socket.close(ec);
        continue;
      }
      ++clients;
      asio::co_spawn(io, serve(std::move(socket)), asio::detached);
    }
  }
};

AdminServer::AdminServer(const std::string& address, AdminHandlers handlers) : impl_(std::make_unique<Impl>()) {
  impl_->handlers = std::move(handlers);
  std::error_code ec;
  if (address.starts_with("unix:")) {
    const std::string path = address.substr(5);
    if (path.empty() || path.front() != '/') throw ConfigError("--admin " + address + ": expected unix:/absolute/path");
    struct stat st{};
    if (::lstat(path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) throw ConfigError("--admin " + address + ": exists and is not a socket");
      ::unlink(path.c_str());
    }
    impl_->local = std::make_unique<asio::local::stream_protocol::acceptor>(impl_->io);
    const asio::local::stream_protocol::endpoint ep(path);
    impl_->local->open(ep.protocol(), ec);
    if (!ec) impl_->local->bind(ep, ec);
    if (!ec) ::chmod(path.c_str(), 0660);
    if (!ec) impl_->local->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) throw ConfigError("--admin " + address + ": " + ec.message());
    impl_->unix_path = path;
    impl_->endpoint = address;
    asio::co_spawn(impl_->io, impl_->accept_loop(*impl_->local), asio::detached);
  } else {
    std::string host = address;
    std::string port_text;
    const std::size_t colon = address.rfind(':');
    if (colon == std::string::npos) throw ConfigError("--admin " + address + ": expected 127.0.0.1:PORT, [::1]:PORT or unix:/path");
    host = address.substr(0, colon);
    port_text = address.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    unsigned port = 0;
    const auto [end, perr] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    const asio::ip::address ip = asio::ip::make_address(host, ec);
    if (ec || perr != std::errc() || end != port_text.data() + port_text.size() || port > 65535) {
      throw ConfigError("--admin " + address + ": expected 127.0.0.1:PORT, [::1]:PORT or unix:/path");
    }
    if (!ip.is_loopback()) {
      throw ConfigError("--admin " + address + ": only a loopback address or a unix socket (the admin listener is not for the network)");
    }
    const asio::ip::tcp::endpoint ep(ip, static_cast<unsigned short>(port));
    impl_->tcp = std::make_unique<asio::ip::tcp::acceptor>(impl_->io);
    impl_->tcp->open(ep.protocol(), ec);
    if (!ec) impl_->tcp->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) impl_->tcp->bind(ep, ec);
    if (!ec) impl_->tcp->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) throw ConfigError("--admin " + address + ": " + ec.message());
    const auto bound = impl_->tcp->local_endpoint(ec);
    const std::string bound_ip = bound.address().to_string();
    impl_->endpoint = bound.address().is_v6() ? concat("[", bound_ip, "]:", std::to_string(bound.port()))
                                              : concat(bound_ip, ":", std::to_string(bound.port()));
    asio::co_spawn(impl_->io, impl_->accept_loop(*impl_->tcp), asio::detached);
  }
  impl_->thread = std::thread([impl = impl_.get()] { impl->io.run(); });
}

AdminServer::~AdminServer() {
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  if (!impl_->unix_path.empty()) ::unlink(impl_->unix_path.c_str());
}

std::string AdminServer::endpoint() const { return impl_->endpoint; }

}  // namespace airlock::gateway
