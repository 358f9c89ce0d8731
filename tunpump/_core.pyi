# The compiled binding (tunpump/_core.pyx). It is internal: the typed API is
# in the Python modules; here every name is Any.
from typing import Any

def __getattr__(name: str) -> Any: ...
