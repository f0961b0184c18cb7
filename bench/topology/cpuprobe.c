// CPU-speed probe: CPU time (not wall time) per operation of three fixed loops, so that time
// sharing with other processes does not count; what moves it is the core's speed (frequency,
// a busy SMT sibling on the host) and the caches.
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <time.h>
static double cpu_ns(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
static uint64_t alu(long n) { uint64_t a = 1, b = 2, c = 3, d = 4; for (long i = 0; i < n; i++) { a = a * 6364136223846793005ull + b; b ^= a >> 7; c = c * 2862933555777941757ull + d; d += c >> 5; } return a ^ b ^ c ^ d; }
static size_t *ring(size_t bytes) { size_t n = bytes / 64, *p = aligned_alloc(64, n * 64); size_t *idx = malloc(n * sizeof *idx);
  for (size_t i = 0; i < n; i++) idx[i] = i; srand(7); for (size_t i = n - 1; i > 0; i--) { size_t j = rand() % (i + 1), t = idx[i]; idx[i] = idx[j]; idx[j] = t; }
  for (size_t i = 0; i < n; i++) p[idx[i] * 8] = idx[(i + 1) % n] * 8; free(idx); return p; }
static size_t chase(size_t *p, long n) { size_t x = 0; for (long i = 0; i < n; i++) x = p[x]; return x; }
int main(int argc, char **argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 1;
  size_t *l2 = ring(256 << 10), *l3 = ring(8 << 20);
  volatile uint64_t sink = 0;
  for (int r = 0; r < reps; r++) {
    double t0 = cpu_ns(); sink += alu(20000000); double t1 = cpu_ns();
    sink += chase(l2, 4000000); double t2 = cpu_ns();
    sink += chase(l3, 2000000); double t3 = cpu_ns();
    printf("alu %.3f l2 %.3f l3 %.3f\n", (t1 - t0) / 20e6, (t2 - t1) / 4e6, (t3 - t2) / 2e6);
    fflush(stdout);
  }
  return (int)(sink & 0);
}
