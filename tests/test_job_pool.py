"""The main job's task pool: values come back in submission order whatever the worker count, exceptions surface."""
import operator

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


def test_worker_count_from_the_environment(monkeypatch):
    monkeypatch.setenv("INTERP_JOB_WORKERS", "3")
    assert default_workers() == 3
    monkeypatch.setenv("INTERP_JOB_WORKERS", "0")
    with pytest.raises(ValueError, match="at least 1"):
        default_workers()
