"""Build the one compiled extension, pstream._core.

Compiler errors are never hidden: if Cython or the C compiler fails, `pip install .`
fails. There is no pure-Python fallback for the core.
"""

import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
DEBUG = os.environ.get("PSTREAM_DEBUG_BUILD") == "1"

extra_compile_args = ["-O3", "-fno-strict-aliasing", "-Wno-unused-function"]
define_macros = [("_GNU_SOURCE", "1"), ("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
if DEBUG:   # also checks the lock contract: who holds each shard mutex (include/ps_lock.h)
    extra_compile_args = ["-O0", "-g3", "-Wno-unused-function"]
    define_macros.append(("PS_DEBUG_LOCKS", "1"))

extensions = [
    Extension(
        "pstream._core",
        sources=["pstream/_core.pyx"],
        include_dirs=[os.path.join(HERE, "include"), os.path.join(HERE, "pstream", "_corelib"), numpy.get_include()],
        define_macros=define_macros,
        extra_compile_args=extra_compile_args,
        libraries=["pthread"],
        depends=[os.path.join("include", name) for name in os.listdir(os.path.join(HERE, "include"))]
        + [os.path.join("pstream", "_corelib", name) for name in os.listdir(os.path.join(HERE, "pstream", "_corelib"))]
        + [os.path.join("pstream", "storage", name) for name in os.listdir(os.path.join(HERE, "pstream", "storage"))
           if name.endswith((".pxi", ".pxd"))],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
        annotate=os.environ.get("PSTREAM_ANNOTATE") == "1",
    ),
)
