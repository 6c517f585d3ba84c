"""weakalign: align a language model with feedback from a weak LLM, beside human labels.

Implements the framework of Tao & Li, "Your Weak LLM is Secretly a Strong Teacher for Alignment" (ICLR 2025) as a
DVC pipeline. The library lives here; `stages/` holds one thin entry point per DVC stage.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("weakalign")  # pyproject.toml's, the one place it is written
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "unknown"
