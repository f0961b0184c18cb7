// The guest's seccomp program as compiled at build time (gen/seccomp_gen.cpp runs
// build_seccomp_program()), embedded in this library. A unit test checks that it equals what
// build_seccomp_program() compiles now.
#include "sandbox/internal.hpp"

namespace airlock::sandbox::detail {
namespace {

constexpr sock_filter kProgram[] = {
#include AIRLOCK_SECCOMP_PROGRAM_FILE
};

}  // namespace

std::vector<sock_filter> embedded_seccomp_program() {
  return std::vector<sock_filter>(std::begin(kProgram), std::end(kProgram));
}

}  // namespace airlock::sandbox::detail
