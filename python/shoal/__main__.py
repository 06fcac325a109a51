"""The `shoal` command of a pip-installed shoal (pyproject.toml's [project.scripts]), and
`python -m shoal`: replaces this process with the shoal binary the wheel carries in shoal/bin/,
with the same arguments, environment and exit status."""
import os
import sys


def binary():
    """The shoal binary beside this package (shoal/bin/shoal), or None."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", "shoal")
    return path if os.access(path, os.X_OK) else None


def main():
    path = binary()
    if path is None:
        sys.stderr.write(
            "shoal: this install of the shoal Python package has no binary at %s; install a wheel "
            "built for this platform (pip install shoal, Linux x86_64 or aarch64), or build one "
            "from a checkout with `make build`\n" % os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", "shoal"))
        return 127
    try:
        os.execv(path, [path] + sys.argv[1:])
    except OSError as e:
        sys.stderr.write("shoal: cannot run %s: %s\n" % (path, e))
        return 126


if __name__ == "__main__":
    sys.exit(main())
