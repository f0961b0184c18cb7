"""The soak harness (tests/e2e/soak.py) in its short mode: one round of 2,000 new connections
with substitutions, upstream resets, stalls, bad certificates, garbage and slow heads against
`airlock gateway`; descriptors and memory must come back to their baseline. The long mode
(`soak.py --long`) is run by hand; see its docstring.
"""
import os

import soak

AIRLOCK = os.environ.get("AIRLOCK_BIN", "")
assert os.geteuid() == 0 and AIRLOCK, "these tests need root and AIRLOCK_BIN"


def test_soak_short():
    results, problems = soak.run(os.path.abspath(AIRLOCK))
    assert not problems, problems
    assert results and results[0]["churn"]["ok"] == soak.SHORT["churn"]
