// The guest's seccomp program as compiled at build time (gen/seccomp_gen.cpp runs
// build_seccomp_program()), embedded in this library. A unit test checks that it equals what
// build_seccomp_program() compiles now.
#include "sandbox/internal.hpp"

#include <cstring>

__asm__(".section .rodata\n"
        ".balign 16\n"
        "airlock_seccomp_program_begin:\n"
        ".incbin \"" AIRLOCK_SECCOMP_PROGRAM_FILE "\"\n"
        "airlock_seccomp_program_end:\n"
        ".previous\n");
extern "C" const char airlock_seccomp_program_begin[];
extern "C" const char airlock_seccomp_program_end[];

namespace airlock::sandbox::detail {

std::vector<sock_filter> embedded_seccomp_program() {
  const auto size = static_cast<std::size_t>(airlock_seccomp_program_end - airlock_seccomp_program_begin);
  if (size == 0 || size % sizeof(sock_filter) != 0) throw SandboxError("the embedded seccomp program is damaged");
  std::vector<sock_filter> program(size / sizeof(sock_filter));
  std::memcpy(program.data(), airlock_seccomp_program_begin, size);
  return program;
}

}  // namespace airlock::sandbox::detail
