// Diagnostic for docs/performance.md (seventh round, kamode): appends 213-byte lines to a file at a
// fixed rate, as airlock's gateway appends one audit record per request on its event loop, and
// counts the appends that blocked (a voluntary context switch during write(); a preemption is
// involuntary and not counted) and how long they took. Usage, pinned like the gateway:
//   cc -O2 -o /tmp/append_probe bench/topology/append_probe.c
//   taskset -c 1 /tmp/append_probe FILE SECONDS RATE     (e.g. FILE on the audit log's file system, 100, 30000)
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char **argv) {
  if (argc != 4) { fprintf(stderr, "usage: append_probe FILE SECONDS RATE\n"); return 2; }
  const char *path = argv[1]; double secs = atof(argv[2]); long rate = atol(argv[3]);
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  char line[213]; memset(line, 'x', sizeof line); line[212] = '\n';
  double t0 = now(), next = t0; long n = 0, blocked = 0; double worst = 0, sum_blocked = 0; int last_report = 0;
  struct rusage ru; getrusage(RUSAGE_THREAD, &ru); long vcsw = ru.ru_nvcsw;
  while (now() - t0 < secs) {
    getrusage(RUSAGE_THREAD, &ru); vcsw = ru.ru_nvcsw;
    double a = now();
    if (write(fd, line, sizeof line) != sizeof line) return 1;
    double d = now() - a; n++;
    getrusage(RUSAGE_THREAD, &ru);
    if (ru.ru_nvcsw != vcsw) { blocked++; sum_blocked += d; if (d > worst) worst = d; vcsw = ru.ru_nvcsw; }
    if ((int)(a - t0) / 10 != last_report) { last_report = (int)(a - t0) / 10;
      printf("t=%3.0f s writes %ld blocked %ld (total %.1f ms, worst %.2f ms)\n", a - t0, n, blocked, sum_blocked * 1e3, worst * 1e3); fflush(stdout); }
    if (n % 300 == 0) { next += 300.0 / rate; double w = next - now(); if (w > 0) { struct timespec ts = {0, (long)(w * 1e9)}; nanosleep(&ts, 0); } }
  }
  printf("end: writes %ld blocked %ld (total %.1f ms, worst %.2f ms)\n", n, blocked, sum_blocked * 1e3, worst * 1e3);
  return 0;
}
