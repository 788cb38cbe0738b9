"""Only what pyproject.toml cannot say: the kernel library ships inside the package.

The repository's `kernels/` folder (the one source of the `.tile` files) is mapped to the
data-only package `tilelang._kernels`, so a wheel carries the files at
`tilelang/_kernels/*.tile`, where `tilelang.kernels.library_dir()` finds them.
"""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["tilelang", "tilelang.*"]) + ["tilelang._kernels"],
    package_dir={"tilelang._kernels": "kernels"},
)
