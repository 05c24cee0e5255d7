"""The main job's task pool: values come back in submission order whatever the worker count, exceptions surface."""
import operator
import os

import pytest

from interp.report.job_pool import default_workers, run_tasks


def test_values_in_submission_order_on_two_workers_and_inline():
    tasks = [(operator.mul, (i, i + 1)) for i in range(7)] + [(pow, (2, 10))]
    seen = []
    two = run_tasks(tasks, workers=2, on_done=lambda i, v, cpu: seen.append(i))
    assert two == [i * (i + 1) for i in range(7)] + [1024] == run_tasks(tasks, workers=1)
    assert sorted(seen) == list(range(len(tasks)))


def test_a_failing_task_raises_its_error():
    with pytest.raises(ZeroDivisionError):
        run_tasks([(operator.add, (1, 2)), (operator.truediv, (1, 0))], workers=2)


def touch_then_wait(folder: str, i: int) -> int:
    """A slow task that leaves a trace: the file `folder`/i."""
    import time
    open(os.path.join(folder, str(i)), "w").close()
    time.sleep(0.5)
    return i


def test_a_failing_task_stops_the_queued_ones(tmp_path):
    """The queued tasks used to run to the end (minutes in the main job) before the error surfaced."""
    tasks = [(operator.truediv, (1, 0))] + [(touch_then_wait, (str(tmp_path), i)) for i in range(20)]
    with pytest.raises(ZeroDivisionError):
        run_tasks(tasks, workers=2)
    assert len(list(tmp_path.iterdir())) <= 6  # those in flight or already handed to a worker, not all 20


def test_worker_count_from_the_environment(monkeypatch):
    monkeypatch.setenv("INTERP_JOB_WORKERS", "3")
    assert default_workers() == 3
    monkeypatch.setenv("INTERP_JOB_WORKERS", "0")
    with pytest.raises(ValueError, match="at least 1"):
        default_workers()


def test_a_task_pool_stays_up_for_work_submitted_after_the_tasks():
    from interp.report.job_pool import task_pool
    tasks = [(operator.mul, (i, 3)) for i in range(5)]
    with task_pool(2) as pool:
        assert run_tasks(tasks, workers=2, pool=pool) == [0, 3, 6, 9, 12]
        later = pool.submit(pow, 3, 4)                     # e.g. the claims, while the parent renders
        assert later.result() == 81
    with task_pool(1) as inline:                           # one worker: no pool, tasks run in this process
        assert inline is None and run_tasks(tasks, workers=1, pool=inline) == [0, 3, 6, 9, 12]


def hf_progress_bars_enabled() -> bool:
    """In a worker: would transformers draw its progress bars (e.g. "Loading weights")?"""
    from transformers.utils import logging
    return logging.is_progress_bar_enabled()


def test_workers_draw_no_hugging_face_progress_bars(monkeypatch):
    """Two workers loading models would draw their bars over each other and over the job's log lines."""
    from interp.report.job_pool import task_pool
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    with task_pool(2) as pool:
        assert pool.submit(hf_progress_bars_enabled).result() is False
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "0")  # a user's own choice stands
    with task_pool(2) as pool:
        assert pool.submit(hf_progress_bars_enabled).result() is True


def killed_worker(_: int) -> None:
    """A task whose worker process is killed (as the OOM killer would)."""
    import signal
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_worker_is_one_error_saying_what_to_do():
    """A worker killed mid-task gave BrokenProcessPool: 'A process in the process pool was terminated abruptly ...',
    saying neither what it means for the job nor what to do."""
    with pytest.raises(RuntimeError, match=r"worker process died abruptly .*INTERP_JOB_WORKERS=1") as e:
        run_tasks([(operator.add, (1, 2)), (killed_worker, (0,))], workers=2)
    assert "\n" not in str(e.value)


def test_a_killed_worker_names_the_callers_own_remedy():
    """`interp sweep --jobs` runs on this pool; its user sets --jobs, not INTERP_JOB_WORKERS, which it never reads."""
    with pytest.raises(RuntimeError, match=r"died abruptly .*\(--jobs 1 uses the least memory\)$") as e:
        run_tasks([(killed_worker, (0,)), (operator.add, (1, 2))], workers=2, fewer="--jobs 1 uses the least memory")
    assert "INTERP_JOB_WORKERS" not in str(e.value)


FORK_CHECK = """
import sys, threading
import interp.report.job_pool as jp
def mark():
    return getattr(jp, "MARK_SET_IN_PARENT", False)
if __name__ == "__main__":
    jp.MARK_SET_IN_PARENT = True  # run-time state of the parent: only a forked worker sees it
    if len(sys.argv) > 1:  # another Python thread is running: a fork could inherit a lock it holds
        ev = threading.Event()
        threading.Thread(target=ev.wait, daemon=True).start()
    how = jp.start_method(1)
    with jp.task_pool(2, threads=1) as pool:
        print(how, pool.submit(mark).result())
"""


def worker_sees_parent(tmp_path, *args: str, **env: str) -> str:
    """In a fresh interpreter (one Python thread, as `interp report --default` runs): start a two-worker pool and
    say how its workers started and whether one sees what the parent set at run time."""
    import subprocess
    import sys
    script = tmp_path / "fork_check.py"
    script.write_text(FORK_CHECK)
    base = {k: v for k, v in os.environ.items() if k != "INTERP_JOB_START"}
    out = subprocess.run([sys.executable, str(script), *args], env={**base, **env}, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_one_thread_workers_are_forked_and_start_with_the_parents_modules(tmp_path, monkeypatch):
    """Spawned workers imported torch, transformers and interp again, several CPU seconds each before any work."""
    from interp.report.job_pool import start_method
    assert worker_sees_parent(tmp_path) == "fork True"
    assert worker_sees_parent(tmp_path, "thread") == "spawn False"  # another thread: forking could hang
    assert worker_sees_parent(tmp_path, INTERP_JOB_START="spawn") == "spawn False"  # the escape hatch
    monkeypatch.delenv("INTERP_JOB_START", raising=False)
    assert start_method(2) == "spawn"                               # several torch threads per worker
    monkeypatch.setenv("INTERP_JOB_START", "frok")
    with pytest.raises(ValueError, match=r"INTERP_JOB_START='frok' must be 'spawn'"):
        start_method(1)
