"""Unit tests for the bench's diagnostics: speednorm (each keep-alive run against the client
core's cost in the same run) and counters (the BENCH_COUNTERS summary), from hand-written files."""
import contextlib
import io
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402


def run(fn, *args):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert fn(*args) in (0, None)
    return out.getvalue()


def results_file(tmp_path):
    """A results file as cmd_report writes it, with two airlock runs at different speeds."""
    tsv, meta = tmp_path / "results.tsv", tmp_path / "meta.json"
    lines = [f"status\t{v}\t{r}\tok\tchecked" for v in ("direct", "airlock", "tls-relay") for r in (1, 2)]
    per_run = {("direct", "ka_rps"): (40000, 32000), ("direct", "ka_load_pct"): (74, 74),
               ("direct", "ka_p50_ms"): (0.3, 0.37), ("direct", "ka_p99_ms"): (0.7, 0.9),
               # run 2 is the same work on a machine 1.5x slower: both cores' costs scale
               ("airlock", "ka_rps"): (30000, 20000), ("airlock", "ka_load_pct"): (69, 69),
               ("airlock", "ka_cpu_us"): (32.0, 48.0), ("airlock", "ka_p50_ms"): (0.49, 0.74),
               ("airlock", "ka_p99_ms"): (1.1, 1.6),
               # 25 / (0.75 / 34000 s) = 1.133
               ("tls-relay", "ka_rps"): (34000, 34000), ("tls-relay", "ka_load_pct"): (75, 75),
               ("tls-relay", "ka_cpu_us"): (25.0, 25.0)}
    for (v, metric), xs in per_run.items():
        lines += [f"value\t{v}\t{r}\t{metric}\t{x}" for r, x in enumerate(xs, 1)]
    tsv.write_text("\n".join(lines) + "\n")
    meta.write_text(json.dumps({"date": "2026-12-02", "machine": "test", "placement": "test", "runs": 2,
                                "duration": 10, "versions": "test", "commit": "abc",
                                "variants": ["direct", "airlock", "tls-relay"], "idle_conns": 1000}))
    md = tmp_path / "results.md"
    md.write_text(run(benchlib.cmd_report, str(tsv), str(meta)))
    return md


def test_the_report_has_the_speed_normalised_keep_alive_cost_per_run(tmp_path):
    text = results_file(tmp_path).read_text()
    row = next(l for l in text.splitlines() if l.startswith("| Proxy CPU per keep-alive request ÷ client core"))
    cells = row.split("|")
    # direct has no proxy; airlock 1.39 in both runs although its raw cost differs 1.5x
    assert cells[3].strip() == "n/a" and cells[4].startswith(" 1.39<br>1.39–1.39") and "tls-relay" in cells[4]
    assert cells[5].startswith(" 1.13<br>")
    assert "| airlock | ka_cpu_norm | 1.39, 1.39 |" in text


def test_speednorm_divides_the_proxy_cost_by_the_client_cores_cost_in_the_same_run(tmp_path):
    text = run(benchlib.cmd_speednorm, str(results_file(tmp_path)))
    a1 = next(l for l in text.splitlines() if l.startswith("airlock run 1:"))
    a2 = next(l for l in text.splitlines() if l.startswith("airlock run 2:"))
    # client core: 0.69 / 30000 = 23.0 us, 0.69 / 20000 = 34.5 us; 32 / 23 = 48 / 34.5 = 1.39
    assert "client core 23.0 us/request" in a1 and "client core 34.5 us/request" in a2
    assert "proxy/client 1.39" in a1 and "proxy/client 1.39" in a2
    # mean latency 16 / rate: 0.533 ms and 0.8 ms
    assert "p99 2.06x the mean latency" in a1 and "p99 2.00x the mean latency" in a2
    d1 = next(l for l in text.splitlines() if l.startswith("direct run 1:"))
    assert "proxy/client" not in d1 and "client core 18.5 us/request" in d1


def write(path, text):
    path.write_text(text)
    return path


def proc_stat(cpu0, cpu1, res):
    return (f"cpu  0 0 0 0 0 0 0 0 0 0\ncpu0 {cpu0}\ncpu1 {cpu1}\n"
            f"           CPU0       CPU1\nRES: {res[0]} {res[1]} Rescheduling interrupts\n")


def test_counters_summarises_one_run(tmp_path):
    base = tmp_path / "airlock-1-ka"
    hz = os.sysconf("SC_CLK_TCK")
    # 10,000 requests in 2 s; 0.2 s user and 0.3 s system
    write(tmp_path / "airlock-1-ka.series",
          f"100.0 0 0 5000 5000\n101.0 {0.1 * hz:.0f} {0.15 * hz:.0f} 10000 10000\n"
          f"102.0 {0.2 * hz:.0f} {0.3 * hz:.0f} 15000 15000\n")
    write(tmp_path / "airlock-1-ka.proxy",
          "# started\n\n73000,,raw_syscalls:sys_enter,1,100.00,,\n3000,,syscalls:sys_enter_epoll_wait,1,100.00,,\n"
          "400,,context-switches,1,100.00,,\n")
    # cpu1: 90 busy, 5 idle, 5 softirq ticks; cpu0: 50 busy, 50 idle; 2,000 RES on CPU0
    write(tmp_path / "airlock-1-ka.tasks0.proc", proc_stat("0 0 0 0 0 0 0 0", "0 0 0 0 0 0 0 0", (100, 7)))
    write(tmp_path / "airlock-1-ka.tasks1.proc", proc_stat("40 0 10 50 0 0 0 0", "60 0 30 5 0 0 5 0", (2100, 7)))
    write(tmp_path / "airlock-1-ka.probe",
          "alu 1.300 l2 4.500 l3 150.0 tput 2.30 tput_paired 4.60 ratio 2.00\n"
          "alu 1.310 l2 4.600 l3 151.0 tput 2.31 tput_paired 2.33 ratio 1.01\n")
    write(tmp_path / "airlock-1-ka.client", "Running 5s test\ntail_us mean=530 stdev=200 max=9000 p50=490 p99=1100\n")
    text = run(benchlib.cmd_counters, str(tmp_path))
    assert text.startswith(f"{base.name}: 5,000 req/s; proxy 20.0 user + 30.0 system us/request")
    assert "sys_enter 7.30, epoll_wait 0.30, context-switches 0.04" in text
    assert "cpu0 busy 50 idle 50 irq+softirq 0 steal 0.0 %" in text
    assert "cpu1 busy 90 idle 5 irq+softirq 5 steal 0.0 %" in text
    assert "RES/request 0.20/0.00" in text
    assert "pair 2.00" in text and "latency us: mean=530" in text
