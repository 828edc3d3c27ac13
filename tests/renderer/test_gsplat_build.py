"""gaussian_renderer.gsplat_backend.load_extension: the one-time CUDA build is announced, a failure is one line.

gsplat's real build needs CUDA and nvcc; these tests stand a fake ``gsplat.cuda._backend`` module in for it,
so they never start a compiler.
"""

from __future__ import annotations

import sys
import types

import pytest

from gaussian_renderer import gsplat_backend
from utils.errors import UserError


@pytest.fixture
def fake_backend(monkeypatch):
    def install(c_value=None, error: Exception | None = None, built: bool = False):
        gsplat_backend.load_extension.cache_clear()
        monkeypatch.setattr(gsplat_backend, "extension_built", lambda: built)
        if error is not None:
            monkeypatch.delitem(sys.modules, "gsplat.cuda._backend", raising=False)
            finder = types.ModuleType("gsplat.cuda._backend")

            def fail(name):
                raise error

            finder.__getattr__ = fail  # "from ... import _C" then raises the build's error
            monkeypatch.setitem(sys.modules, "gsplat.cuda._backend", finder)
        else:
            module = types.ModuleType("gsplat.cuda._backend")
            module._C = c_value
            monkeypatch.setitem(sys.modules, "gsplat.cuda._backend", module)

    yield install
    gsplat_backend.load_extension.cache_clear()


def test_a_needed_build_is_announced_in_one_line(fake_backend, capsys):
    fake_backend(c_value=object())
    gsplat_backend.load_extension()
    err = capsys.readouterr().err
    assert "building gsplat's CUDA extension" in err and "scripts/setup.sh" in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1


def test_a_built_extension_is_loaded_silently(fake_backend, capsys):
    fake_backend(c_value=object(), built=True)
    gsplat_backend.load_extension()
    assert "building" not in capsys.readouterr().err


@pytest.mark.parametrize("error", [None, RuntimeError("Error building extension 'gsplat_cuda'\nninja: build stopped")])
def test_a_failed_build_is_one_line_naming_the_fix(fake_backend, error):
    fake_backend(c_value=None, error=error)
    with pytest.raises(UserError, match=r"could not be built or loaded") as err:
        gsplat_backend.load_extension()
    assert "\n" not in str(err.value) and "--device cpu" in str(err.value)
