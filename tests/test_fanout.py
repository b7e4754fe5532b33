"""gradcli batch over worker processes: the input's order, streaming, reuse, failures, Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from gradcli.warm import fanout
from tests.helpers import gradcli_executable

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux only")


@pytest.fixture
def gradcli_exe():
    return gradcli_executable()


def _slow_for_odd(item):
    number, _key = item
    time.sleep(0.004 if number % 2 else 0)  # results finish out of order; they must come out in order
    return number, os.getpid()


def _lost(item, why):
    return item[0], f"lost: {why}"


def test_results_keep_the_input_order_and_a_key_stays_on_its_worker():
    items = [(n, f"expr{n % 7}") for n in range(300)]
    results = list(fanout.ordered_map(_slow_for_odd, items, jobs=3, key=lambda item: item[1], lost=_lost))
    assert [n for n, _ in results] == list(range(300))
    workers_of_key = {}
    for (_, key), (_, pid) in zip(items, results, strict=True):
        workers_of_key.setdefault(key, set()).add(pid)
    assert all(len(pids) == 1 for pids in workers_of_key.values())  # its caches are where it ran before
    assert len({pid for _, pid in results}) > 1 and os.getpid() not in {pid for _, pid in results}


def _dies_on_13(item):
    if item[0] == 13:
        os._exit(7)  # as a crash in a native library would end it
    return item[0], "ok"


def test_a_worker_that_dies_loses_its_lines_only():
    items = [(n, str(n)) for n in range(60)]
    results = list(fanout.ordered_map(_dies_on_13, items, jobs=2, key=lambda item: item[1], lost=_lost))
    assert [n for n, _ in results] == list(range(60))
    assert results[13][1].startswith("lost: its worker process died")
    assert all(status == "ok" for _, status in results[:13])  # run before the crash, by either worker
    after = [status for _, status in results[14:]]
    assert all(s == "ok" or s.startswith("lost: its worker process died") for s in after)
    assert "ok" in after  # the other worker goes on


def test_an_error_escaping_the_handler_is_that_items_result():
    def handle(item):
        if item[0] == 2:
            raise ValueError("bad luck")
        return item[0], "ok"
    results = list(fanout.ordered_map(handle, [(n, "k") for n in range(5)], jobs=2, key=lambda i: i[1], lost=_lost))
    assert results[2] == (2, "lost: internal error: ValueError: bad luck")
    assert [status for _, status in results[:2] + results[3:]] == ["ok"] * 4


def test_an_input_that_fails_to_read_raises_here():
    def items():
        yield 1, "a"
        raise OSError("the disk went away")
    with pytest.raises(OSError, match="disk went away"):
        list(fanout.ordered_map(lambda item: item, items(), jobs=2, key=lambda i: i[1], lost=_lost))


def test_one_job_runs_here():
    assert list(fanout.ordered_map(lambda item: (item[0], os.getpid()), [(1, "a")], jobs=1, key=str, lost=_lost)) \
        == [(1, os.getpid())]


LINES = "\n".join([
    'grad "x**2" x=3',
    'jacobian "[x*y, x+y]" x=1 y=2',
    'grad "x.y" x=1',
    '{"command": "grad", "expr": "sin(x)", "values": {"x": 0.5}, "options": {"dtype": "float64"}}',
    'grad "mean((t - p)**2)" "p=[1,2,3]" "t=[2,3,4]" --wrt p --dtype float16 --rtol 0 --atol 0',
    'hessian "x**2*y" x=1 y=2',
    'grad "x**2" x=4',
] * 5) + "\n"


def test_batch_gives_the_same_lines_with_workers_and_without(sh):
    alone = sh("batch", "--jobs", "1", input=LINES)
    shared = sh("batch", "--jobs", "3", input=LINES)
    assert alone.returncode == shared.returncode == 2
    assert shared.stdout == alone.stdout and len(alone.stdout.splitlines()) == 35


def test_batch_refuses_no_jobs(sh):
    result = sh("batch", "--jobs", "0", input='grad "x" x=1\n')
    assert result.returncode == 2 and "--jobs" in result.stderr


def test_batch_answers_each_line_before_the_next_arrives(gradcli_exe):
    """A script that writes a request and waits for its answer (a co-process) is not kept waiting."""
    proc = subprocess.Popen([gradcli_exe, "batch", "--jobs", "2"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1)
    try:
        for x in (1, 2, 3):
            proc.stdin.write(f'grad "x**3" x={x}\n')
            proc.stdin.flush()
            answer = json.loads(proc.stdout.readline())  # would hang if results waited for more input
            assert answer["gradient"]["x"]["data"] == 3.0 * x * x
        proc.stdin.close()
        assert proc.wait(timeout=120) == 0
    finally:
        proc.kill()


def test_ctrl_c_stops_the_batch_and_its_workers(gradcli_exe, tmp_path):
    requests = tmp_path / "many-requests-for-ctrl-c.txt"
    requests.write_text("".join(f'grad "sin(x)*y**{k} + {k}*x" x=0.5 y=1.5\n' for k in range(20000)))
    proc = subprocess.Popen([gradcli_exe, "batch", "--jobs", "2", str(requests)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    proc.stdout.readline()
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal sends the foreground job
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and b"Traceback" not in err
    deadline = time.time() + 10
    while time.time() < deadline:
        left = subprocess.run(["pgrep", "-f", str(requests)], capture_output=True, text=True).stdout.split()
        if not left:
            break
        time.sleep(0.2)
    assert not left, "worker processes outlived the batch"


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_line_that_is_not_utf8_is_its_own_error(gradcli_exe, tmp_path, jobs):
    requests = tmp_path / "requests.txt"
    requests.write_bytes(b'\xef\xbb\xbfgrad "x**2" x=3\r\ngrad "x" x=\xff1\ngrad "x**3" x=2\n')
    result = subprocess.run([gradcli_exe, "batch", "--jobs", jobs, str(requests)], capture_output=True, timeout=120)
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 2 and result.stderr == b""
    assert [d["exit_status"] for d in docs] == [0, 2, 0]
    assert docs[0]["gradient"]["x"]["data"] == 6.0 and docs[2]["gradient"]["x"]["data"] == 12.0
    assert docs[1]["error"]["message"] == "this line is not UTF-8 text"


def test_requests_that_cannot_be_read_are_one_error(sh, tmp_path):
    result = sh("batch", str(tmp_path))
    assert result.returncode == 2 and result.stderr.startswith("error: cannot read")
    assert "Traceback" not in result.stderr


def test_a_containers_cpu_quota_bounds_the_default_workers(tmp_path):
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")
    assert fanout.cpu_quota(str(quota)) == 2  # 1.5 CPUs' worth of time: two workers
    quota.write_text("max 100000\n")
    assert fanout.cpu_quota(str(quota)) is None
    assert fanout.cpu_quota(str(tmp_path / "absent")) is None
    assert 1 <= fanout.default_jobs() <= fanout.MAX_JOBS


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_workers_die_with_a_batch_killed_outright(gradcli_exe, tmp_path, how):
    """No cleanup runs in a killed parent: its workers must still go, and the reader of the
    pipeline must see the end of its input (the workers hold the same standard output)."""
    requests = tmp_path / f"requests-killed-by-{int(how)}.txt"
    requests.write_text("".join(f'grad "sin(x)*y**{k} + {k}*x" x=0.5 y=1.5\n' for k in range(20000)))
    proc = subprocess.Popen([gradcli_exe, "batch", "--jobs", "2", str(requests)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env={**os.environ, "GRADCLI_SERVER": "off"})
    proc.stdout.readline()
    proc.send_signal(how)
    proc.communicate(timeout=60)  # returns at the end of the pipe: no worker left holding it
    deadline = time.time() + 10
    while (left := subprocess.run(["pgrep", "-f", str(requests)], capture_output=True, text=True).stdout.split()) \
            and time.time() < deadline:
        time.sleep(0.2)
    assert not left, "worker processes outlived the batch"


OPENMP_USED_BEFORE_THE_FORK = """
import sys, torch
from typer.testing import CliRunner
from gradcli.cli.app import app
torch.set_num_threads(2)
x = torch.rand(4_000_000)
for _ in range(3):
    torch.exp(x).sum()  # torch's OpenMP pool has run: a fork of this process must not use it
result = CliRunner().invoke(app, ["batch", "--jobs", "2", "--allow-files", sys.argv[1]])
print(result.exit_code, len(result.stdout.splitlines()))
"""


def test_batch_in_a_process_that_used_torchs_threads_does_not_hang(tmp_path):
    np = pytest.importorskip("numpy")
    np.save(tmp_path / "big.npy", np.linspace(0, 1, 300_000))
    requests = tmp_path / "requests.txt"
    requests.write_text("".join(f'grad "sum(x**2)*{k}" x=@{tmp_path / "big.npy"}\n' for k in range(1, 5)))
    result = subprocess.run([sys.executable, "-c", OPENMP_USED_BEFORE_THE_FORK, str(requests)],
                            capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["0", "4"], result.stderr


def test_batch_called_twice_in_one_process_reads_standard_input_each_time(run):
    first = run("batch", "--jobs", "1", input='grad "x**2" x=3\n')
    second = run("batch", "--jobs", "1", input='grad "x**2" x=4\n')
    assert first.exit_code == second.exit_code == 0
    assert json.loads(second.stdout)["gradient"]["x"]["data"] == 8.0


def test_a_process_running_threads_forks_no_workers():
    import threading

    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert fanout.default_jobs() == 1
    finally:
        stop.set()
        other.join()
