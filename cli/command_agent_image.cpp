// The command agent of `airlock serve` (agent/command_agent.c, a static program) embedded in
// this library, and the sealed memfd it is executed from inside the sandbox.
#include "cli/serve.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

__asm__(".section .rodata\n"
        ".balign 16\n"
        "airlock_command_agent_begin:\n"
        ".incbin \"" AIRLOCK_COMMAND_AGENT_FILE "\"\n"
        "airlock_command_agent_end:\n"
        ".previous\n");
extern "C" const char airlock_command_agent_begin[];
extern "C" const char airlock_command_agent_end[];

namespace airlock::cli {

int command_agent_memfd() {
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif
  constexpr unsigned kFlags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
  int fd = ::memfd_create("airlock-command-agent", kFlags | MFD_EXEC);
  if (fd < 0 && errno == EINVAL) fd = ::memfd_create("airlock-command-agent", kFlags);
  if (fd < 0) throw std::runtime_error(std::string("memfd_create: ") + std::strerror(errno));
  const char* p = airlock_command_agent_begin;
  while (p < airlock_command_agent_end) {
    const ssize_t n = ::write(fd, p, static_cast<std::size_t>(airlock_command_agent_end - p));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    p += n;
  }
  if (p != airlock_command_agent_end ||
      ::fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot prepare the command agent's memfd");
  }
  return fd;
}

}  // namespace airlock::cli
