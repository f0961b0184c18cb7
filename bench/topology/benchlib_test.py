"""Unit tests for the bench report: medians with each run's range, the other-load column and
the issue's targets, from a hand-written results file."""
import contextlib
import io
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

META = {"date": "2026-12-01", "machine": "test", "placement": "test", "runs": 3, "duration": 10, "cap_pct": 25,
        "versions": "test", "commit": "abc", "variants": ["direct", "airlock"], "idle_conns": 1000}


def report(tmp_path, lines, failed=(), variants=("direct", "airlock")):
    tsv, meta = tmp_path / "results.tsv", tmp_path / "meta.json"
    ok = [f"status\t{v}\t{r}\t{'failed' if (v, r) in failed else 'ok'}\tchecked"
          for v in variants for r in (1, 2, 3)]
    tsv.write_text("\n".join(ok + lines) + "\n")
    meta.write_text(json.dumps(dict(META, variants=list(variants))))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        benchlib.cmd_report(str(tsv), str(meta))
    return out.getvalue()


def values(variant, metric, *xs):
    return [f"value\t{variant}\t{run}\t{metric}\t{x}" for run, x in enumerate(xs, 1)]


def row(text, label):
    return next(line for line in text.splitlines() if line.startswith(f"| {label} |"))


def test_cells_show_median_and_range_and_the_ratio_of_medians(tmp_path):
    text = report(tmp_path, values("direct", "ka_rps", 100, 120, 110) +
                  values("airlock", "ka_rps", 90, 99, 70))
    cells = row(text, "Keep-alive small requests").split("|")
    assert "110<br>100–120" in cells[3]
    assert "90<br>70–99<br>(0.82× direct)" in cells[4]
    assert "keep-alive small requests: 82 % of direct (target ≥ 90 %): **not met**" in text


def test_other_load_column_is_the_worst_run_of_the_scenario(tmp_path):
    text = report(tmp_path, values("direct", "dl_mibps", 100, 100, 100) +
                  values("airlock", "dl_mibps", 95, 95, 95) +
                  values("direct", "dl_foreign_pct", 0, 1, 0) +
                  values("airlock", "dl_foreign_pct", 2, 7, 0))
    assert row(text, "1 MiB downloads").endswith(" ≤ 7 % |")
    assert row(text, "Memory per idle connection (1000 held)").endswith(" n/a |")
    assert "1 MiB downloads: 95 % of direct (target ≥ 90 %): met" in text


def test_targets_use_the_issue_thresholds(tmp_path):
    text = report(tmp_path, values("direct", "newconn_rps", 100, 100, 100) +
                  values("airlock", "newconn_rps", 85, 85, 85) +
                  values("direct", "ka_p99_ms", 0.7, 0.7, 0.7) +
                  values("airlock", "ka_p99_ms", 1.0, 1.1, 0.9) +
                  values("airlock", "idle_kib", 32.0, 32.0, 32.0))
    assert "new TLS connection per request: 85 % of direct (target ≥ 90 %): **not met**" in text
    assert "keep-alive p99 latency: 1.00 ms, direct 0.70 ms (target ≤ direct + 0.30 ms): met" in text
    assert "memory per idle intercepted connection: 32.0 KiB (target ≤ 32 KiB): met" in text


def test_a_run_that_failed_its_check_does_not_count(tmp_path):
    lines = values("direct", "ka_rps", 100, 100, 100) + values("airlock", "ka_rps", 90, 80, 10)
    cells = row(report(tmp_path, lines, failed={("airlock", 3)}), "Keep-alive small requests")
    assert "85<br>80–90 (2 of 3 runs)<br>(0.85× direct)" in cells


# A figure rounded for the report must not read as the other verdict: 79.8 % against a target of
# 80 % was shown as "80 % ... not met" (and 89.96 % as "90 %"). Where rounding would flip the
# reading, the figure gets as many decimals as it takes; elsewhere it stays as it was.
def test_a_rounded_figure_never_reads_as_the_other_verdict(tmp_path):
    text = report(tmp_path, values("direct", "ul_mibps", 1000, 1000, 1000) +
                  values("airlock", "ul_mibps", 798, 798, 798) +
                  values("direct", "ka_rps", 10000, 10000, 10000) +
                  values("airlock", "ka_rps", 8996, 8996, 8996) +
                  values("direct", "dl_mibps", 1000, 1000, 1000) +
                  values("airlock", "dl_mibps", 904, 904, 904) +
                  values("direct", "ka_p99_ms", 0.7, 0.7, 0.7) +
                  values("airlock", "ka_p99_ms", 1.003, 1.003, 1.003) +
                  values("airlock", "idle_kib", 32.04, 32.04, 32.04))
    assert "64 KiB uploads with body substitution: 79.8 % of direct (target ≥ 80 %): **not met**" in text
    assert "keep-alive small requests: 89.96 % of direct (target ≥ 90 %): **not met**" in text
    assert "1 MiB downloads: 90 % of direct (target ≥ 90 %): met" in text  # 90.4: rounding agrees
    assert "keep-alive p99 latency: 1.003 ms, direct 0.70 ms (target ≤ direct + 0.30 ms): **not met**" in text
    assert "memory per idle intercepted connection: 32.04 KiB (target ≤ 32 KiB): **not met**" in text


def test_figure_adds_decimals_only_where_rounding_flips_the_verdict():
    def at_least(floor):
        return lambda x: x >= floor
    assert benchlib._figure(79.8, 0, at_least(80)) == "79.8"
    assert benchlib._figure(79.96, 0, at_least(80)) == "79.96"
    assert benchlib._figure(80.0, 0, at_least(80)) == "80"
    assert benchlib._figure(80.4, 0, at_least(80)) == "80"
    assert benchlib._figure(79.4, 0, at_least(80)) == "79"
    assert benchlib._figure(1.7996, 2, at_least(1.8)) == "1.7996"


# The zero-logic TLS relay is the floor any intercepting proxy pays: each throughput and latency
# target says how far the floor itself gets against direct and where airlock stands against it.
def test_targets_show_the_tls_relay_floor(tmp_path):
    variants = ("direct", "airlock", "tls-relay")
    text = report(tmp_path, values("direct", "ka_rps", 1000, 1000, 1000) +
                  values("airlock", "ka_rps", 770, 770, 770) +
                  values("tls-relay", "ka_rps", 810, 800, 820) +
                  values("direct", "dl_mibps", 1000, 1000, 1000) +
                  values("airlock", "dl_mibps", 820, 820, 820) +
                  values("tls-relay", "dl_mibps", 950, 950, 950) +
                  values("direct", "ul_mibps", 100, 100, 100) +
                  values("airlock", "ul_mibps", 78, 78, 78) +
                  values("direct", "ka_p99_ms", 0.5, 0.5, 0.5) +
                  values("airlock", "ka_p99_ms", 1.2, 1.2, 1.2) +
                  values("tls-relay", "ka_p99_ms", 0.9, 0.9, 0.9), variants=variants)
    assert ("keep-alive small requests: 77 % of direct (target ≥ 90 %): **not met**; the TLS relay "
            "floor reaches 81 % of direct (below the target itself), airlock 0.95× the floor") in text
    assert ("1 MiB downloads: 82 % of direct (target ≥ 90 %): **not met**; the TLS relay floor "
            "reaches 95 % of direct, airlock 0.86× the floor") in text
    assert ("64 KiB uploads with body substitution: 78 % of direct (target ≥ 80 %): **not met**; "
            "the TLS relay floor: not measured") in text
    assert ("keep-alive p99 latency: 1.20 ms, direct 0.50 ms (target ≤ direct + 0.30 ms): **not met**; "
            "the TLS relay floor's p99 is 0.90 ms (direct + 0.40 ms, over the target itself), "
            "airlock's +0.30 ms against it") in text
    # The table has the relay as a column and, for airlock, the ratio against it.
    cells = row(text, "Keep-alive small requests").split("|")
    assert "810<br>800–820<br>(0.81× direct)" in cells[5]
    assert "(0.77× direct, 0.95× tls-relay)" in cells[4]


def test_no_floor_clause_when_the_relay_failed(tmp_path):
    variants = ("direct", "airlock", "tls-relay")
    text = report(tmp_path, values("direct", "ka_rps", 1000, 1000, 1000) +
                  values("airlock", "ka_rps", 950, 950, 950) +
                  values("tls-relay", "ka_rps", 990, 990, 990), variants=variants,
                  failed={("tls-relay", r) for r in (1, 2, 3)})
    assert "keep-alive small requests: 95 % of direct (target ≥ 90 %): met\n" in text
    assert "× tls-relay)" not in text and "floor reaches" not in text


def test_perrequest_splits_user_and_system_and_counts_syscalls(tmp_path, capsys):
    wrk = tmp_path / "ka.out"
    wrk.write_text("  100000 requests in 5.00s, 30.00MB read\nRequests/sec:  20000.00\n")
    stat = tmp_path / "ka.stat"
    stat.write_text("# started on Tue Dec  1\n\n700000,,raw_syscalls:sys_enter,5000000,100.00,,\n"
                    "12000,,context-switches,5000000,100.00,,\n")
    # 1 s user + 2 s system at 100 ticks per second over 100,000 requests
    assert benchlib.cmd_perrequest("ka", str(wrk), "1000 500", "1100 700", "100", str(stat)) == 0
    out = capsys.readouterr().out
    assert "100000 requests; proxy CPU per request: 10.0 µs user + 20.0 µs system = 30.0 µs (67 % system)" in out
    assert "; 7.00 syscalls, 0.12 context switches per request" in out


def test_proxy_cpu_rows_compare_airlock_with_the_floor(tmp_path):
    variants = ("direct", "airlock", "tls-relay")
    text = report(tmp_path, values("airlock", "dl_cpu_us", 1800, 1800, 1800) +
                  values("tls-relay", "dl_cpu_us", 2000, 2000, 2000) +
                  values("airlock", "ka_cpu_us", 36, 36, 36) +
                  values("tls-relay", "ka_cpu_us", 30, 30, 30), variants=variants)
    assert "| 1,800<br>1,800–1,800<br>(1.11× tls-relay) | 2,000<br>2,000–2,000 |" in row(text, "Proxy CPU per 1 MiB download")
    assert "(0.83× tls-relay)" in row(text, "Proxy CPU per keep-alive request")


# The capped scaling scenario (scenario 6): airlock-2t against airlock, each event loop CPU-capped.
def test_capstat_reports_each_loops_share_of_its_cap_and_the_client_side(tmp_path):
    tsv = tmp_path / "results.tsv"
    # Loop 0 on CPU 1 used 2.5 s of 10 s (its whole 25 % cap) and was throttled in 480 of 500
    # periods; loop 1 on CPU 0 used 2.0 s over two threads, one of them new in the run (counted
    # from zero), throttled in 250 of 500. CPU 0 was 70 % busy (700 of 1000 ticks at 100 Hz).
    before = [{"loop": 0, "cpu": 1, "runtime_ns": {"11": 1_000_000_000}, "nr_periods": 100, "nr_throttled": 90},
              {"loop": 1, "cpu": 0, "runtime_ns": {"12": 500_000_000}, "nr_periods": 100, "nr_throttled": 0}]
    after = [{"loop": 0, "cpu": 1, "runtime_ns": {"11": 3_500_000_000}, "nr_periods": 600, "nr_throttled": 570},
             {"loop": 1, "cpu": 0, "runtime_ns": {"12": 2_000_000_000, "13": 500_000_000},
              "nr_periods": 600, "nr_throttled": 250}]
    assert benchlib.cmd_capstat("kacap", "airlock-2t", "1", str(tsv), "25", "0", "1000 0", "1700 0",
                                json.dumps(before), json.dumps(after), "10", "100", "3.5") == 0
    lines = tsv.read_text().splitlines()
    assert "value\tairlock-2t\t1\tkacap_clientown_pct\t35.0000" in lines   # wrk and nginx: 3.5 s of 10
    assert "value\tairlock-2t\t1\tkacap_capuse_pct\t80.0000" in lines      # the lower loop: 20 % of 25 %
    assert "value\tairlock-2t\t1\tkacap_throttled_pct\t50.0000" in lines
    assert "value\tairlock-2t\t1\tkacap_client_pct\t50.0000" in lines      # 70 % less loop 1's 20 %
    note = next(line for line in lines if line.startswith("note"))
    assert "loop 0 on CPU 1: 25.0 % CPU (100 % of its cap), throttled in 480 of 500 periods" in note
    assert "loop 1 on CPU 0: 20.0 % CPU (80 % of its cap), throttled in 250 of 500 periods" in note
    assert "CPU 0 70 % busy, 50 % without the gateway (the client tool and nginx themselves: 35 %)" in note


def test_capstat_refuses_snapshots_that_do_not_match(tmp_path):
    tsv = tmp_path / "results.tsv"
    one = [{"loop": 0, "cpu": 1, "runtime_ns": {"11": 1}}]
    two = one + [{"loop": 1, "cpu": 0, "runtime_ns": {"12": 1}}]
    assert benchlib.cmd_capstat("kacap", "airlock", "1", str(tsv), "25", "0", "0 0", "1 0",
                                json.dumps(one), json.dumps(two), "10", "100") == 1
    empty = [{"loop": 0, "cpu": 1, "runtime_ns": {}}]
    assert benchlib.cmd_capstat("kacap", "airlock", "1", str(tsv), "25", "0", "0 0", "1 0",
                                json.dumps(one), json.dumps(empty), "10", "100") == 1
    assert not tsv.exists()


def test_cap_snapshot_reads_the_groups_threads_and_cfs_counters(tmp_path):
    group = tmp_path / "grp"
    group.mkdir()
    (group / "tasks").write_text(f"{os.getpid()}\n")
    (group / "cpu.stat").write_text("nr_periods 7\nnr_throttled 3\nthrottled_time 12345\n")
    snap = benchlib.cap_snapshot([f"0:1:{group}"])
    assert snap[0]["loop"] == 0 and snap[0]["cpu"] == 1
    assert snap[0]["nr_periods"] == 7 and snap[0]["nr_throttled"] == 3
    assert snap[0]["runtime_ns"][str(os.getpid())] > 0


def test_capped_rows_compare_two_loops_with_one_and_the_target_says_what_it_shows(tmp_path):
    variants = ("direct", "airlock", "airlock-2t")
    text = report(tmp_path, values("direct", "kacap_rps", 9, 9, 9) +   # never a ratio against direct
                  values("airlock", "kacap_rps", 5000, 5100, 4900) +
                  values("airlock-2t", "kacap_rps", 9500, 9800, 9700) +
                  values("airlock", "kacap_capuse_pct", 99, 98, 99) +
                  values("airlock-2t", "kacap_capuse_pct", 97, 95, 99) +
                  values("airlock-2t", "kacap_client_pct", 40, 55, 45) +
                  values("airlock", "kacap_cpu_us", 50, 50, 50) +
                  values("airlock-2t", "kacap_cpu_us", 51, 51, 51) +
                  values("airlock", "ka_rps", 20000, 20000, 20000) +
                  values("airlock", "ka_cpu_us", 50, 50, 50) +
                  values("airlock", "newconncap_rps", 200, 200, 200) +
                  values("airlock-2t", "newconncap_rps", 340, 350, 360), variants=variants)
    cells = row(text, "Keep-alive, gateway CPU-capped at 25 % per thread (1 thread; airlock-2t: 2)").split("|")
    assert cells[3].strip() == "9<br>9–9"
    assert cells[4].strip() == "5,000<br>4,900–5,100"
    assert cells[5].strip() == "9,700<br>9,500–9,800<br>(1.94× 1 thread)"
    assert ("two event-loop threads against one, each CPU-capped at 25 % of a CPU (scenario 6), keep-alive: "
            "1.94× one thread at the same cap (target ≥ 1.8×): met; the least busy loop used ≥ 95 % of its "
            "cap in every run, the client's core without the gateway was ≤ 55 % busy with two loops; "
            "gateway CPU per request 50.0 → 51.0 µs (1.02×); one capped loop made 1.00× its cap over the "
            "uncapped CPU per request (50.0 µs) and 1.00× 25 % of the uncapped one-thread rate. Shows:") in text
    assert "not: 1.8× the uncapped one-thread figure on this 2-core machine" in text
    assert ("each CPU-capped at 25 % of a CPU (scenario 6), new connections: 1.75× one thread at the same cap "
            "(target ≥ 1.8×): **not met**") in text


def test_no_capped_target_without_both_loops_measured(tmp_path):
    text = report(tmp_path, values("airlock", "kacap_rps", 5000, 5000, 5000),
                  variants=("direct", "airlock", "airlock-2t"))
    assert "CPU-capped at 25 % of a CPU (scenario 6)" not in text
