"""Build the compiled order-book core (exchange/_book_core.pyx); metadata is in pyproject.toml."""

import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

# The core must compute every price key and quantity with the reference's own IEEE double
# operations: no fused multiply-add contraction (gcc contracts by default where the CPU has FMA,
# e.g. aarch64) and no fast-math. No -march=native: the wheel must run on any x86-64/arm64 VPS.
_STRICT_FLOAT = [] if sys.platform == "win32" else ["-ffp-contract=off", "-fno-fast-math"]

setup(
    ext_modules=cythonize(
        [
            Extension(
                "exchange._book_core",
                ["exchange/_book_core.pyx"],
                extra_compile_args=_STRICT_FLOAT,
            )
        ],
        compiler_directives={"language_level": "3"},
    ),
)
