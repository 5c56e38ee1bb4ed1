"""Build the native Rabin chunker extension; everything else lives in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "dfms.chunking._rabin",
            sources=["src/dfms/chunking/_rabin.c"],
            extra_compile_args=["-O3"],
        )
    ]
)
