// PID 1 of the guest, as a freestanding program (no libc, a few KB): the sandbox embeds it and
// executes it from a memfd once the command is forked. Executing it costs a fraction of a
// millisecond where re-executing airlock cost milliseconds of dynamic linking on every run, and
// like that re-exec it leaves none of airlock's memory (which held secret values) in the guest.
//
// `airlock-sandbox-init PID`: reaps every orphan, passes the forwarded signals to the command's
// process group (else the command), and exits with the command's status (128+N when signal N
// ended it). When it exits, the kernel kills whatever else still runs in the PID namespace.
// The same loop as run_init() in guest_init.cpp, which runs when this program cannot.
#include <asm/unistd.h>
#include <errno.h>
#include <signal.h>

#if !defined(__x86_64__) && !defined(__aarch64__)
#error "the freestanding guest init supports x86_64 and aarch64"
#endif

#define EXIT_SETUP_FAILED 3  // kExitSetupFailed
#define WAIT_NOHANG 1

static long sys(long nr, long a, long b, long c, long d) {
#if defined(__x86_64__)
  long ret;
  register long r10 __asm__("r10") = d;
  __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
  return ret;
#else
  register long x8 __asm__("x8") = nr;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c;
  register long x3 __asm__("x3") = d;
  __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
  return x0;
#endif
}

static void __attribute__((noreturn)) exit_with(int code) {
  for (;;) sys(__NR_exit_group, code, 0, 0, 0);
}

static int same(const char* a, const char* b) {
  while (*a && *a == *b) ++a, ++b;
  return *a == *b;
}

void __attribute__((noreturn, used)) init_main(long* stack) {
  const long argc = stack[0];
  char** argv = (char**)(stack + 1);
  long command = 0;
  if (argc == 2 && same(argv[0], "airlock-sandbox-init")) {
    for (const char* p = argv[1]; *p >= '0' && *p <= '9' && command < (1L << 30); ++p) {
      command = command * 10 + (*p - '0');
    }
  }
  if (command <= 1 || sys(__NR_getpid, 0, 0, 0, 0) != 1) exit_with(EXIT_SETUP_FAILED);

  // SIGCHLD and the signals airlock forwards (its SignalForwarder's set); blocked, then waited for.
  const int signals[] = {SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
  unsigned long set = 0;
  for (unsigned i = 0; i < sizeof signals / sizeof signals[0]; ++i) set |= 1UL << (signals[i] - 1);
  sys(__NR_rt_sigprocmask, SIG_BLOCK, (long)&set, 0, sizeof set);
  for (;;) {
    int status = 0;
    long pid;
    while ((pid = sys(__NR_wait4, -1, (long)&status, WAIT_NOHANG, 0)) > 0) {
      if (pid == command) {
        const int signal = status & 0x7f;
        exit_with(signal == 0 ? (status >> 8) & 0xff : 128 + signal);
      }
    }
    if (pid == -ECHILD) exit_with(EXIT_SETUP_FAILED);
    const long sig = sys(__NR_rt_sigtimedwait, (long)&set, 0, 0, sizeof set);
    if (sig > 0 && sig != SIGCHLD) {
      if (sys(__NR_kill, -command, sig, 0, 0) != 0) sys(__NR_kill, command, sig, 0, 0);
    }
  }
}

// The kernel's entry: the stack holds argc, then argv.
#if defined(__x86_64__)
__asm__(".text\n.global _start\n_start:\n xor %ebp, %ebp\n mov %rsp, %rdi\n and $-16, %rsp\n call init_main\n hlt\n");
#else
__asm__(".text\n.global _start\n_start:\n mov x29, #0\n mov x0, sp\n bl init_main\n brk #0\n");
#endif
