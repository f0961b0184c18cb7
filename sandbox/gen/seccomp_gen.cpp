// Build step: writes the guest's seccomp program (build_seccomp_program(), classic BPF) to
// argv[1] as C initialisers, for seccomp_image.cpp to #include; airlock then never runs
// libseccomp's compiler at start (~0.5 ms of CPU per sandbox). Text, not .incbin: the compiler
// (and ccache) then see the program as part of the source.
#include "sandbox/internal.hpp"

#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTPUT\n", argv[0]);
    return 2;
  }
  try {
    const std::vector<sock_filter> program = airlock::sandbox::detail::build_seccomp_program();
    std::FILE* out = std::fopen(argv[1], "wb");
    if (out == nullptr) throw std::runtime_error(std::string("cannot write ") + argv[1]);
    bool ok = true;
    for (const sock_filter& f : program) {
      ok = ok && std::fprintf(out, "{0x%04x, %u, %u, 0x%08x},\n", f.code, f.jt, f.jf, f.k) > 0;
    }
    if (std::fclose(out) != 0 || !ok) throw std::runtime_error(std::string("cannot write ") + argv[1]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "seccomp_gen: %s\n", e.what());
    return 1;
  }
  return 0;
}
