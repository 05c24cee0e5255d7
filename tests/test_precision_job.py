"""The main job's precision runs (interp/precision/job.py): the line it logs says what each run did."""
import interp
from interp.precision.job import job_runs

from faults import broken_format  # noqa: E402

KW = {"n_layers": 2, "d_model": 32, "n_heads": 4, "d_mlp": 64, "n_ctx": 16, "d_vocab": 256}
DATA = [[5, 17, 33, 2, 90, 41, 7], [8, 3, 250, 11], [60, 61, 62, 63, 64, 65, 66, 67, 68]]


def test_a_failed_run_is_logged_as_failed(monkeypatch):
    """A bf16 forward that raises was logged 'bf16 error at the output' (as if it had overflowed there) and the
    token count was read off that failed row (0). The line now gives the error and the runs' token count."""
    broken_format(monkeypatch, "bf16", "bf16 kernel missing\nsecond line")
    lines: list[str] = []
    out = job_runs(interp.zoo.build("pre-ln", **KW).eval(), DATA, lines.append)
    runs = out["precision_runs"].set_index("format")
    assert runs.loc["bf16", "status"] == "error" and runs.loc["fp16", "status"] == "ok"
    n = sum(len(s) - 1 for s in DATA)  # next-token predictions
    assert int(runs.loc["fp16", "n_tokens"]) == n
    (line,) = lines
    assert f"runs on {n} tokens" in line and "bf16 forward failed: bf16 kernel missing" in line
    assert "at the output" not in line and "second line" not in line
