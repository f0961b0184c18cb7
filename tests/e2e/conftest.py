"""Keeps secret values out of pytest's failure reports.

Long tracebacks (pytest's default) print the arguments of every frame, and --showlocals every
local: in these tests those hold secret values (fake ones, and still never to be printed). Short
tracebacks print the failing lines and messages only; the tests' messages never hold a value.
"""


def pytest_configure(config):
    if config.option.tbstyle in ("auto", "long"):
        config.option.tbstyle = "short"
    config.option.showlocals = False
