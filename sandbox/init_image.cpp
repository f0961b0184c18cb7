// The guest's init (init.c, built as a freestanding static program) embedded in this library,
// and the memfd it is executed from.
#include "sandbox/internal.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

// The bytes of the init program, between these two symbols.
__asm__(".section .rodata\n"
        ".balign 16\n"
        "airlock_guest_init_begin:\n"
        ".incbin \"" AIRLOCK_GUEST_INIT_FILE "\"\n"
        "airlock_guest_init_end:\n"
        ".previous\n");
extern "C" const char airlock_guest_init_begin[];
extern "C" const char airlock_guest_init_end[];

namespace airlock::sandbox::detail {

Fd guest_init_executable() {
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif
  constexpr unsigned kFlags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
  // MFD_EXEC where the kernel knows it (vm.memfd_noexec may make memfds non-executable by default).
  Fd fd(::memfd_create("airlock-sandbox-init", kFlags | MFD_EXEC));
  if (!fd && errno == EINVAL) fd.reset(::memfd_create("airlock-sandbox-init", kFlags));
  if (fd) {
    const char* p = airlock_guest_init_begin;
    while (p < airlock_guest_init_end) {
      const ssize_t n = ::write(fd.get(), p, static_cast<std::size_t>(airlock_guest_init_end - p));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      p += n;
    }
    if (p == airlock_guest_init_end &&
        ::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) == 0) {
      return fd;
    }
  }
  // No executable memfd here: re-execute this binary, whose constructor runs the same init.
  fd.reset(::open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
  if (!fd) throw_errno("open /proc/self/exe");
  return fd;
}

}  // namespace airlock::sandbox::detail
