"""gradcli's version: a leaf module that imports nothing, so any module may read it without a circle.

pyproject.toml's [tool.setuptools.dynamic] reads it from here; gradcli/__init__.py re-exports it.
"""

__version__ = "0.1.0"
