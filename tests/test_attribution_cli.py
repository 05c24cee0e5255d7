"""CLI: `interp attribute`, `interp convert`, `interp remove-ln` write their outputs, and bad input gets one line."""
import pandas as pd
import pytest
import torch

import interp
from interp.cli import main


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("ck")
    kw = dict(n_layers=2, d_model=32, n_heads=4, d_mlp=64, d_vocab=50, n_ctx=12)
    interp.zoo.build("pre-ln", **kw).save(d / "pre")
    interp.zoo.build("post-ln", **kw).save(d / "post")
    return d


def test_attribute_writes_tables(ckpts, tmp_path, capsys):
    rc = main(["attribute", str(ckpts / "pre"), "--tokens", "1,2,3,4,5", "--target-id", "7", "--contrast-id", "8",
               "--neurons", "1", "--lens", "--out", str(tmp_path / "o")])
    assert rc == 0
    df = pd.read_csv(tmp_path / "o" / "dla.csv")
    m = interp.zoo.load(ckpts / "pre")
    with torch.no_grad():
        lg = m(torch.tensor([[1, 2, 3, 4, 5]]))[0, -1]
    assert df.dla.sum() == pytest.approx(float(lg[7] - lg[8]), abs=1e-4)
    assert "L1.N63" in set(df.component)
    assert set(pd.read_csv(tmp_path / "o" / "logit_lens.csv").layer) == {0, 1, 2}
    assert (tmp_path / "o" / "dla_summary.csv").is_file()


@pytest.mark.parametrize("argv,msg", [
    (["--tokens", "1,2", "--target-id", "50"], "not in the vocabulary"),
    (["--tokens", "1,2", "--target-id", "3", "--component", "L7.H0"], "unknown component"),
    (["--tokens", "1,x", "--target-id", "3"], "comma-separated"),
])
def test_attribute_bad_input(ckpts, tmp_path, capsys, argv, msg):
    assert main(["attribute", str(ckpts / "pre"), *argv, "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "dla.csv").exists()


def test_convert_and_remove_ln_cli(ckpts, tmp_path, capsys):
    assert main(["convert", str(ckpts / "pre"), "--to", "crmsnorm", "--out", str(tmp_path / "c")]) == 0
    c = interp.zoo.load(tmp_path / "c")
    assert c.cfg.norm == "crmsnorm" and c.cfg.d_model == 31
    assert main(["convert", str(ckpts / "post"), "--to", "rmsnorm", "--out", str(tmp_path / "x")]) == 1
    assert main(["remove-ln", str(ckpts / "post"), "--out", str(tmp_path / "y")]) == 1
    err = capsys.readouterr().err
    assert "Post-LN" in err and not (tmp_path / "y").exists()


def test_attribute_force_replaces_the_whole_folder(ckpts, tmp_path, capsys):
    """--force replaces an earlier output as one folder: a logit_lens.csv of the earlier run (with --lens) does
    not survive a run without --lens, and no temp or .old folder is left beside it."""
    argv = ["attribute", str(ckpts / "pre"), "--tokens", "1,2,3", "--target-id", "7", "--out", str(tmp_path / "o")]
    assert main([*argv, "--lens"]) == 0
    assert (tmp_path / "o" / "logit_lens.csv").is_file()
    assert main([*argv, "--force"]) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [".interp-output", "dla.csv", "dla_summary.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]


def test_attribute_bad_neurons_is_named_before_the_model_loads(tmp_path, capsys):
    (tmp_path / "not-a-model").mkdir()  # loading it would fail: the --neurons error must come first
    for bad in ("x", "1,,2", "-1"):
        assert main(["attribute", str(tmp_path / "not-a-model"), "--tokens", "1,2", "--target-id", "3",
                     "--neurons", bad, "--out", str(tmp_path / "o")]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--neurons must be comma-separated layer numbers" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-model"]
