"""The package's version, in a module of its own at the bottom of the layers.

Modules that record which chexpert wrote something (the store, the run folder, the report page,
the Hugging Face export) import it from here: ``from chexpert import __version__`` would import
the package's front door (``chexpert/__init__.py``) from below it, and fails with a partly
initialised package if the front door ever imports that module before setting its version.

>>> from chexpert.version import __version__
>>> __version__.count(".")
2
"""

from __future__ import annotations

__all__ = ["__version__"]

#: Also in pyproject.toml's ``version``; ``chexpert --version`` prints it.
__version__ = "0.1.0"
