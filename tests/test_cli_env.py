"""What the `interp` command sets in its environment before torch is imported."""
import os
import subprocess
import sys


def env_after_cli_import(**env: str) -> str:
    """THP_MEM_ALLOC_ENABLE as a fresh `interp.cli` import leaves it (with `env` set before), and whether that import
    loaded torch (it must not: torch reads the variable once, at its first allocation)."""
    base = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    out = subprocess.run([sys.executable, "-c", "import os, sys, interp.cli; "
                          "print(os.environ.get('THP_MEM_ALLOC_ENABLE'), 'torch' in sys.modules)"],
                         env={**base, **env}, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_the_cli_turns_on_torch_huge_page_allocation_unless_the_user_chose():
    """A Gemma-3 forward's 262k-wide logits were faulted in 4 KB at a time, every batch (0.4-0.9 s of system time)."""
    assert env_after_cli_import() == "1 False"
    assert env_after_cli_import(THP_MEM_ALLOC_ENABLE="0") == "0 False"
