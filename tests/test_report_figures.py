"""The report's figures show what their titles and axes say (checked on hand-made tables)."""
import pandas as pd

from interp.report import figures as F


def test_lr_sweep_marks_diverged_runs_just_above_the_finished_ones():
    """A blow-up's final loss (100 nats) must not set the height of the × markers: they sit at 1.05 × the largest
    finished run's loss (mean over seeds 4.0 and 4.1 → 4.05, × at 4.2525), so the curves keep their scale."""
    d = pd.DataFrame([dict(model=m, lr=lr, seed=s, diverged=lr > 1, final_loss=100.0 if lr > 1 else 4.0 + 0.1 * s)
                      for m in ("pre-ln", "post-ln") for lr in (0.1, 1.0, 3.0) for s in (0, 1)])
    fig = F.lr_sweep({"sweep": d}, {})
    marks = [tr for tr in fig.data if tr.name.endswith("diverged")]
    assert len(marks) == 2 and all(list(tr.x) == [3.0] for tr in marks)
    assert all(abs(tr.y[0] - 4.05 * 1.05) < 1e-12 for tr in marks)
