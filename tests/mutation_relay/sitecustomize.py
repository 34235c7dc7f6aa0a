"""Imported at start-up by the processes tests start while mutmut records which tests run which functions.

mutmut counts a function call for the test running in the same process, so code that only runs in a stage's own
process (`python -m stages.train`, its forked child) would count for no test, and its mutants would never be tried.
tests/conftest.py puts this folder on PYTHONPATH during that run; each process appends the functions it calls to a
file that the test's teardown hands to mutmut. Outside that run this file does nothing.
"""

import os

if os.environ.get("MUTANT_UNDER_TEST") == "stats" and os.environ.get("FMNIST_MUTMUT_HITS"):
    import mutmut.mutation.trampoline

    _recorded: set[str] = set()

    def _record(name: str, **_caller: object) -> None:
        if name not in _recorded:
            _recorded.add(name)
            with open(os.path.join(os.environ["FMNIST_MUTMUT_HITS"], f"{os.getpid()}.hits"), "a") as hits:
                hits.write(name + "\n")

    mutmut.mutation.trampoline.record_trampoline_hit = _record
