"""``warn_user`` skips madspatial's frames and those of the libraries that call back into it."""

from __future__ import annotations

import functools
import warnings

import pytest

from madspatial._warnings import user_stacklevel, warn_user


def _as_module(name: str, source: str, **names):
    """Functions of ``source`` whose frames report ``__name__ == name`` (a fake library)."""
    scope = {"__name__": name, **names}
    exec(compile(source, f"<{name}>", "exec"), scope)
    return scope


def _raised(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    (w,) = [w for w in caught if "from deep inside" in str(w.message)]
    return w


# madspatial code called back by anndata's writer registry (through functools.partial),
# itself called by spatialdata, zarr and h5py: every one of them is the library side
_HOOK = _as_module(
    "madspatial.io._fake",
    "def hook():\n    warn_user('from deep inside', RuntimeWarning)\n",
    warn_user=warn_user,
)
_CALLERS = {
    lib: _as_module(lib, "def call(fn):\n    return fn()\n")
    for lib in ("anndata._io.specs.registry", "h5py._hl.group", "zarr.core", "spatialdata._io")
}


def _through_libraries():
    fn = functools.partial(_HOOK["hook"])
    for lib in ("anndata._io.specs.registry", "h5py._hl.group", "zarr.core", "spatialdata._io"):
        fn = functools.partial(_CALLERS[lib]["call"], fn)
    fn()


def test_the_warning_points_at_the_users_line_through_the_io_libraries():
    w = _raised(_through_libraries)
    assert w.filename == __file__
    assert w.lineno == _through_libraries.__code__.co_firstlineno + 4  # its ``fn()``
    assert w.category is RuntimeWarning


def test_the_first_frame_outside_the_libraries_is_the_users():
    # a user callback handed to anndata is the user's frame, even with anndata above it
    def user_callback():
        _HOOK["hook"]()

    w = _raised(lambda: _CALLERS["anndata._io.specs.registry"]["call"](user_callback))
    assert w.filename == __file__
    assert w.lineno == user_callback.__code__.co_firstlineno + 1


def test_a_call_from_user_code_points_at_that_call():
    assert user_stacklevel() == 1  # asked from here: this frame is already the user's
    with pytest.warns(UserWarning, match=r"^plain$") as rec:
        warn_user("plain")
    (w,) = rec
    assert w.filename == __file__
    assert w.lineno == test_a_call_from_user_code_points_at_that_call.__code__.co_firstlineno + 3
