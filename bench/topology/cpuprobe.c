// CPU-speed probe for scripts/bench (BENCH_COUNTERS): CPU time (not wall time) per operation of
// fixed loops, so that time sharing with other processes does not count; what moves the figures
// is the core's own speed (its clock, the caches, a busy SMT sibling on the host).
//   alu: a latency-bound multiply chain; l2 / l3: a pointer chase through 256 KiB / 8 MiB;
//   tput: eight independent multiply chains (throughput-bound), alone, then again while a child
//   process pinned to the other CPU runs the same loop: a ratio near 2 means the two vCPUs
//   share one physical core at that moment (they compete for its multiplier), near 1 that
//   they do not.
// Usage: cpuprobe REPS [OTHER_CPU]   (run it pinned to the CPU to probe)
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double cpu_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

static volatile uint64_t sink;

static void alu(long n) {
  uint64_t a = 1, b = 2, c = 3, d = 4;
  for (long i = 0; i < n; i++) {
    a = a * 6364136223846793005ull + b;
    b ^= a >> 7;
    c = c * 2862933555777941757ull + d;
    d += c >> 5;
  }
  sink += a ^ b ^ c ^ d;
}

static void tput(long n) {
  uint64_t x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  for (long i = 0; i < n; i++)
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) x[k] = x[k] * 6364136223846793005ull + 1442695040888963407ull;
  for (int k = 0; k < 8; k++) sink += x[k];
}

static size_t* ring(size_t bytes) {
  size_t n = bytes / 64, *p = aligned_alloc(64, n * 64), *idx = malloc(n * sizeof *idx);
  for (size_t i = 0; i < n; i++) idx[i] = i;
  srand(7);
  for (size_t i = n - 1; i > 0; i--) {
    size_t j = (size_t)rand() % (i + 1), t = idx[i];
    idx[i] = idx[j];
    idx[j] = t;
  }
  for (size_t i = 0; i < n; i++) p[idx[i] * 8] = idx[(i + 1) % n] * 8;
  free(idx);
  return p;
}

static void chase(const size_t* p, long n) {
  size_t x = 0;
  for (long i = 0; i < n; i++) x = p[x];
  sink += x;
}

static double timed(void (*f)(long), long n) {
  double t0 = cpu_ns();
  f(n);
  return (cpu_ns() - t0) / n;
}

// tput on this CPU while a child on `other` runs it too.
static double paired(int other) {
  pid_t child = fork();
  if (child == 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(other, &set);
    sched_setaffinity(0, sizeof set, &set);
    for (;;) tput(1000000);
  }
  usleep(20000);  // let the child start on its CPU
  double t = timed(tput, 20000000);
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  return t;
}

int main(int argc, char** argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 1, other = argc > 2 ? atoi(argv[2]) : -1;
  size_t *l2 = ring(256 << 10), *l3 = ring(8 << 20);
  for (int r = 0; r < reps; r++) {
    double a = timed(alu, 20000000);
    double t2 = cpu_ns();
    chase(l2, 4000000);
    double l2ns = (cpu_ns() - t2) / 4e6, t3 = cpu_ns();
    chase(l3, 2000000);
    double l3ns = (cpu_ns() - t3) / 2e6, alone = timed(tput, 20000000);
    printf("alu %.3f l2 %.3f l3 %.3f tput %.3f", a, l2ns, l3ns, alone);
    if (other >= 0) {
      double both = paired(other);
      printf(" tput_paired %.3f ratio %.2f", both, both / alone);
    }
    printf("\n");
    fflush(stdout);
  }
  return 0;
}
