"""Wheel tags for the shoal package, whose wheels carry a native binary (shoal/bin/shoal and
shoal/bin/libshoalcoll.so). pyproject.toml holds everything else.

The package has no Python extension module, so one wheel serves every Python 3 (py3-none), but it
is not pure: it is built per platform. scripts/release.sh sets SHOAL_WHEEL_PLATFORM (for
instance manylinux2014_x86_64) to the platform its binaries were built for; without it the wheel
is tagged for this machine (linux_x86_64), which is what a binary from `make build` needs.
"""
import os

from setuptools import setup
from setuptools.dist import Distribution

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel


class BinaryDistribution(Distribution):
    """Installs into platlib (the binaries are platform code) and makes the wheel non-pure."""

    def has_ext_modules(self):
        return True


class PlatformWheel(bdist_wheel):
    def finalize_options(self):
        plat = os.environ.get("SHOAL_WHEEL_PLATFORM")
        if plat:
            self.plat_name = plat
        super().finalize_options()

    def get_tag(self):
        _, _, plat = super().get_tag()
        return "py3", "none", plat


setup(distclass=BinaryDistribution, cmdclass={"bdist_wheel": PlatformWheel})
