// Build step: writes the guest's seccomp program (build_seccomp_program(), classic BPF) to
// argv[1], for seccomp_image.cpp to embed; airlock then never runs libseccomp's compiler at
// start (~0.5 ms of CPU per sandbox).
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
    const bool ok = std::fwrite(program.data(), sizeof(sock_filter), program.size(), out) == program.size();
    if (std::fclose(out) != 0 || !ok) throw std::runtime_error(std::string("cannot write ") + argv[1]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "seccomp_gen: %s\n", e.what());
    return 1;
  }
  return 0;
}
