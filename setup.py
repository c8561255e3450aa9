"""The one compiled part: etl.parse._transcode (two-byte CJK pages to UTF-8 for lexbor, etl/parse/transcode.py).

Everything else is declared in pyproject.toml. The extension is optional: where no C compiler is found the
install goes on without it and pages are decoded with Python's codecs, as before (same rows, more CPU).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("etl.parse._transcode", ["etl/parse/_transcode.c"], optional=True)])
