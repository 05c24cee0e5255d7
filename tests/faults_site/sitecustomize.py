"""Loaded at start-up by every Python process whose PYTHONPATH holds this folder (tests/faults.py `env`):
installs the fault named by INTERP_TEST_FAIL. Test-only; never on a user's path."""
import os
import sys

if os.environ.get("INTERP_TEST_FAIL"):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from faults import install

    install(os.environ["INTERP_TEST_FAIL"])
