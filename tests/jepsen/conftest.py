"""pytest for the fault suite: test_checkers.py (the checkers on hand-written
histories, no broker) and test_scenarios.py (the short run against three
starlingd processes; root, for iptables)."""

import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def pytest_configure(config):
    import backend
    backend.exit_cleanly_on_sigterm()
