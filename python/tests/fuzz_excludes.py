"""Fuzz target for runtime_env's gitignore-style `excludes` (patterns a user writes, and the
.gitignore of a shipped working_dir). Run with atheris (pip install atheris):

    PYTHONPATH=python python python/tests/fuzz_excludes.py CORPUS_COPY -max_total_time=30

An input is patterns, a NUL, a path, a NUL and "1" for a directory. The target fails only when
something other than a clean ValueError (a pattern that is not gitignore syntax) comes out, or
when matching does not answer a bool. test_runtime_env.py replays the committed corpus."""
import os
import sys

from shoal._runtime_env import Excludes

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "testdata", "fuzz_excludes")


def one(data):
    text = data.decode("utf-8", "replace")
    pats, _, rest = text.partition("\0")
    path, _, isdir = rest.partition("\0")
    try:
        ex = Excludes(pats.splitlines())
    except ValueError:
        return
    got = ex.excluded(path, isdir == "1")
    assert got is True or got is False


def main():
    import atheris
    atheris.instrument_all()
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
