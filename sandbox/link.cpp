// The sandbox's link, configured with rtnetlink directly (no `ip` processes): a veth pair from
// the gateway namespace into the guest's, addresses on both ends, the guest's default routes.
#include "sandbox/internal.hpp"

#include <arpa/inet.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

namespace airlock::sandbox::detail {
namespace {

// One rtnetlink request: a header, a fixed body, attributes (nested ones by begin/end).
class Request {
 public:
  Request(std::uint16_t type, std::uint16_t flags) {
    header()->nlmsg_type = type;
    header()->nlmsg_flags = static_cast<std::uint16_t>(NLM_F_REQUEST | NLM_F_ACK | flags);
    len_ = NLMSG_HDRLEN;
  }
  template <typename T>
  T* body() {
    T* p = reinterpret_cast<T*>(buf_ + len_);
    std::memset(p, 0, sizeof(T));
    len_ += NLMSG_ALIGN(sizeof(T));
    return p;
  }
  void attr(std::uint16_t type, const void* data, std::size_t size) {
    rtattr* a = reinterpret_cast<rtattr*>(buf_ + len_);
    a->rta_type = type;
    a->rta_len = static_cast<std::uint16_t>(RTA_LENGTH(size));
    std::memcpy(RTA_DATA(a), data, size);
    len_ += RTA_SPACE(size);
  }
  void attr_str(std::uint16_t type, const char* s) { attr(type, s, std::strlen(s) + 1); }
  void attr_u32(std::uint16_t type, std::uint32_t v) { attr(type, &v, sizeof v); }
  std::size_t begin(std::uint16_t type) {
    const std::size_t at = len_;
    attr(type, nullptr, 0);
    return at;
  }
  void end(std::size_t at) {
    reinterpret_cast<rtattr*>(buf_ + at)->rta_len = static_cast<std::uint16_t>(len_ - at);
  }
  nlmsghdr* header() { return reinterpret_cast<nlmsghdr*>(buf_); }
  std::size_t size() const { return len_; }
  void finish(std::uint32_t seq) {
    header()->nlmsg_len = static_cast<std::uint32_t>(len_);
    header()->nlmsg_seq = seq;
  }

 private:
  alignas(nlmsghdr) char buf_[1024] = {};
  std::size_t len_;
};

// A NETLINK_ROUTE socket of the calling thread's network namespace.
class Netlink {
 public:
  Netlink() : fd_(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE)) {
    if (!fd_) throw_errno("netlink socket");
    timeval tv{5, 0};  // every wait has a timeout
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }

  void send(Request& req, const std::string& what) {
    req.finish(++seq_);
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (::sendto(fd_.get(), req.header(), req.size(), 0, reinterpret_cast<sockaddr*>(&kernel),
                 sizeof kernel) != static_cast<ssize_t>(req.size())) {
      throw_errno(what);
    }
    alignas(nlmsghdr) char reply[4096];
    for (;;) {
      const ssize_t got = ::recv(fd_.get(), reply, sizeof reply, 0);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) throw_errno(what + " (no answer)");
      unsigned int n = static_cast<unsigned int>(got);
      for (nlmsghdr* h = reinterpret_cast<nlmsghdr*>(reply); NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
        if (h->nlmsg_seq != seq_ || h->nlmsg_type != NLMSG_ERROR) continue;
        const int err = -reinterpret_cast<nlmsgerr*>(NLMSG_DATA(h))->error;
        if (err == 0) return;
        errno = err;
        throw_errno(what);
      }
    }
  }

 private:
  Fd fd_;
  std::uint32_t seq_ = 0;
};

int interface_index(const char* name) {
  Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  if (!s || ::ioctl(s.get(), SIOCGIFINDEX, &ifr) != 0) throw_errno(std::string("interface ") + name);
  return ifr.ifr_ifindex;
}

void link_up(Netlink& nl, int index, const std::string& name) {
  Request req(RTM_NEWLINK, 0);
  ifinfomsg* ifi = req.body<ifinfomsg>();
  ifi->ifi_family = AF_UNSPEC;
  ifi->ifi_index = index;
  ifi->ifi_flags = IFF_UP;
  ifi->ifi_change = IFF_UP;
  nl.send(req, "set " + name + " up");
}

void add_address(Netlink& nl, int index, const char* text, int prefix) {
  const bool v6 = std::strchr(text, ':') != nullptr;
  unsigned char addr[16];
  if (::inet_pton(v6 ? AF_INET6 : AF_INET, text, addr) != 1) {
    throw SandboxError(std::string("bad address ") + text);
  }
  Request req(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
  ifaddrmsg* ifa = req.body<ifaddrmsg>();
  ifa->ifa_family = static_cast<unsigned char>(v6 ? AF_INET6 : AF_INET);
  ifa->ifa_prefixlen = static_cast<unsigned char>(prefix);
  ifa->ifa_flags = v6 ? IFA_F_NODAD : 0;  // usable at once: the link has two ends, both ours
  ifa->ifa_index = static_cast<unsigned>(index);
  req.attr(IFA_LOCAL, addr, v6 ? 16 : 4);
  req.attr(IFA_ADDRESS, addr, v6 ? 16 : 4);
  nl.send(req, std::string("add address ") + text);
}

void add_default_route(Netlink& nl, int index, const char* gateway) {
  const bool v6 = std::strchr(gateway, ':') != nullptr;
  unsigned char addr[16];
  if (::inet_pton(v6 ? AF_INET6 : AF_INET, gateway, addr) != 1) {
    throw SandboxError(std::string("bad address ") + gateway);
  }
  Request req(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
  rtmsg* rt = req.body<rtmsg>();
  rt->rtm_family = static_cast<unsigned char>(v6 ? AF_INET6 : AF_INET);
  rt->rtm_table = RT_TABLE_MAIN;
  rt->rtm_protocol = RTPROT_BOOT;
  rt->rtm_scope = RT_SCOPE_UNIVERSE;
  rt->rtm_type = RTN_UNICAST;
  req.attr(RTA_GATEWAY, addr, v6 ? 16 : 4);
  req.attr_u32(RTA_OIF, static_cast<std::uint32_t>(index));
  nl.send(req, std::string("add default route via ") + gateway);
}

}  // namespace

void configure_link(int gateway_netns, int guest_netns) {
  std::string error;
  std::thread t([&] {
    try {
      if (::setns(gateway_netns, CLONE_NEWNET) != 0) throw_errno("setns gateway namespace");
      {
        Netlink nl;
        Request req(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        req.body<ifinfomsg>()->ifi_family = AF_UNSPEC;
        req.attr_str(IFLA_IFNAME, kGatewayIf);
        const std::size_t info = req.begin(IFLA_LINKINFO);
        req.attr_str(IFLA_INFO_KIND, "veth");
        const std::size_t data = req.begin(IFLA_INFO_DATA);
        const std::size_t peer = req.begin(VETH_INFO_PEER);
        req.body<ifinfomsg>()->ifi_family = AF_UNSPEC;
        req.attr_str(IFLA_IFNAME, kGuestIf);
        req.attr_u32(IFLA_NET_NS_FD, static_cast<std::uint32_t>(guest_netns));
        req.end(peer);
        req.end(data);
        req.end(info);
        nl.send(req, "create the veth pair");
        link_up(nl, interface_index("lo"), "lo");
        const int gw = interface_index(kGatewayIf);
        add_address(nl, gw, LinkAddresses::kGatewayV4, LinkAddresses::kPrefixV4);
        add_address(nl, gw, LinkAddresses::kGatewayV6, LinkAddresses::kPrefixV6);
        link_up(nl, gw, kGatewayIf);
      }
      if (::setns(guest_netns, CLONE_NEWNET) != 0) throw_errno("setns guest namespace");
      {
        Netlink nl;
        const int eth = interface_index(kGuestIf);
        add_address(nl, eth, LinkAddresses::kGuestV4, LinkAddresses::kPrefixV4);
        add_address(nl, eth, LinkAddresses::kGuestV6, LinkAddresses::kPrefixV6);
        link_up(nl, eth, kGuestIf);
        add_default_route(nl, eth, LinkAddresses::kGatewayV4);
        add_default_route(nl, eth, LinkAddresses::kGatewayV6);
      }
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  t.join();
  if (!error.empty()) throw SandboxError("sandbox link: " + error);
}

}  // namespace airlock::sandbox::detail
