"""Tools apart from the library: the bench (`python -m tunpump bench`), its
pure-Python baseline (pyforward), bounded traffic generators (traffic) and the
C generator and kernel micro-benchmark loops (the `_tools` extension).

`import tunpump` never imports this package; the CLI imports it only for
`tunpump bench`."""
from .runner import (BY_NAME, SCENARIOS, SCHEMA, BenchError, Scenario, build_parser, format_table, main,
                     run, run_scenario)
# The private helpers benchmarks/e2e.py and the tests use.
from .runner import _check_environment, _ratios  # noqa: F401

__all__ = ["BY_NAME", "SCENARIOS", "SCHEMA", "BenchError", "Scenario", "build_parser", "format_table",
           "main", "run", "run_scenario"]
