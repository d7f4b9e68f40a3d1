"""Per-frame output: the filled panorama warped into the frame's widened view, joined to
the untouched original picture.

Only the two side strips (each plus ``band`` columns under the original, used for colour
matching) are warped, each with one ``cv2.warpPerspective``. The strip is matched in
colour to the current frame: the mean difference between frame and panorama in the band,
per row (smoothed vertically) and per channel, is added to the strip, fully at the seam
and fading to the band's global offset towards the outer edge, which follows film
flicker and exposure changes without shifting the far side.

Seam: the original picture stays pixel-exact everywhere; in the first ``fade`` columns
outside it, the original mirrored across its edge is cross-faded (smoothstep) into the
panorama, so texture and colour continue with no step. Mirrored pixels flagged unreliable
(film-gate corners, edge margin) are not used, so dark gate corners never print outwards.

A character crossing the original frame edge: the panorama never contains foreground,
so the part outside the frame is not generated (a per-frame guess would flicker). Its
edge continues outwards as a mirrored reflection that fades out over ``fade`` columns,
a soft dissolve instead of a hard cut at the frame edge.
"""

from __future__ import annotations

import cv2
import numpy as np

from stages.gate import GatePatch

# colour difference (levels, largest channel, after the band's median difference) under
# which a seam-band pixel of the panorama agrees with the frame: tight enough that an
# unrelated panorama rarely agrees by chance, loose enough for grain and compression
AGREE_LEVELS = 12
# columns inside the picture next to each seam on which the panorama's rendering is
# aligned to the frame, as a share of its width: 64 px at 640, enough for a clear
# phase-correlation peak, near enough to the seam to stand for the side
ALIGN_SHARE = 0.1
ALIGN_MAX = 3.0  # px: a larger shift is a character at the edge or a wrong peak
ALIGN_RESPONSE = 0.1  # phase-correlation peak under which the shift is not trusted


def warp_area(
    panorama: np.ndarray,
    view: np.ndarray,
    rows: slice,
    cols: slice,
    falloff: np.ndarray | None = None,
) -> np.ndarray:
    """The panorama warped into the output frame's ``rows`` x ``cols`` (``view``: output
    pixels -> panorama pixels), times the falloff there when given."""
    shift = np.array([[1, 0, cols.start], [0, 1, rows.start], [0, 0, 1.0]])
    size = (cols.stop - cols.start, rows.stop - rows.start)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    area = cv2.warpPerspective(
        panorama, view @ shift, size, flags=flags, borderMode=cv2.BORDER_REPLICATE
    )
    if falloff is not None:
        area = cv2.multiply(area, falloff[rows, cols], dtype=cv2.CV_8U)
    return area


def largest_channel(a: np.ndarray) -> np.ndarray:
    """The largest of the three channels of ``a`` (h, w, 3), pairwise: numpy's reduction
    over a trailing axis of 3 (``a.max(2)``) is several times slower."""
    return np.maximum(np.maximum(a[..., 0], a[..., 1]), a[..., 2])


def box_rows(a: np.ndarray, k: int) -> np.ndarray:
    """Mean over ``k`` (odd, < 2 * len(a)) neighbouring rows of a 2-D array, borders
    reflected as ``cv2.blur`` does; a cumulative sum, several times faster than
    ``cv2.blur`` on such thin arrays."""
    p = k // 2
    padded = np.concatenate([a[p:0:-1], a, a[-2 : -p - 2 : -1]])
    c = np.cumsum(padded, 0, dtype=np.float64)
    c = np.concatenate([np.zeros((1, *a.shape[1:])), c])
    return ((c[k:] - c[:-k]) / k).astype(a.dtype)


class Resampler:
    """Renders widened frames for one output geometry."""

    def __init__(
        self,
        in_width: int,
        out_width: int,
        height: int,
        band: int | None = None,
        fade: int | None = None,
    ):
        if in_width <= 0 or height <= 0 or out_width < in_width:
            raise ValueError(f"bad geometry: in {in_width}, out {out_width}, height {height}")
        self.in_width, self.out_width, self.height = in_width, out_width, height
        self.offset = (out_width - in_width) // 2
        # colour-matching band: 8 px at 640 wide (narrower follows local colour better)
        self.band = band if band is not None else max(2, round(in_width * 0.0125))
        if not 1 <= self.band <= in_width // 2:
            raise ValueError(f"band must be in [1, {in_width // 2}], got {self.band}")
        # the mirrored original moves against the pan: keep its cross-fade short (4 px at
        # 640 wide)
        self.fade = fade if fade is not None else min(self.band, max(1, round(in_width * 0.006)))
        if not 0 <= self.fade <= self.band:
            raise ValueError(f"fade must be in [0, {self.band}], got {self.fade}")
        t = (np.arange(self.fade, dtype=np.float32) + 0.5) / max(self.fade, 1)
        self._fade = 1.0 - t * t * (3 - 2 * t)  # 1 at the frame edge -> 0 outside
        self._spread: dict[tuple[int, bool], np.ndarray] = {}
        # (band * 3, 3): a product with it sums a band row's columns per channel
        self._per_channel = np.tile(np.eye(3, dtype=np.float32), (self.band, 1))
        self.align = max(8, round(in_width * ALIGN_SHARE))
        self._window = cv2.createHanningWindow((self.align, height), cv2.CV_32F)

    def render(
        self,
        frame: np.ndarray,
        panorama: np.ndarray,
        view: np.ndarray,
        unreliable: np.ndarray | None = None,
        falloff: np.ndarray | None = None,
        gate: GatePatch | None = None,
        sides: tuple[np.ndarray, np.ndarray] | None = None,
        mirror: bool = True,
    ) -> np.ndarray:
        """Widened frame. ``view`` maps output pixels to ``panorama`` pixels
        (:func:`stages.regions.view_to_canvas`), ``sides`` those of the left and right
        side (:meth:`side_views`; ``view`` when None); ``unreliable`` (bool, frame size) marks
        frame pixels that must not be mirrored outwards; ``falloff`` ((h, out_width, 3)
        float32) multiplies the panorama where it is rendered (the lens's vignetting,
        :mod:`stages.vignette`); ``gate``: the film gate inside the picture, which the
        panorama then covers, feathered (the rest of the original stays exact);
        ``mirror`` False leaves the seam's cross-fade to the caller (:meth:`mirror`)."""
        h, w = self.height, self.in_width
        if frame.shape != (h, w, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame must be uint8 {(h, w, 3)}, got {frame.dtype} {frame.shape}")
        if gate is not None:
            frame = self.repair(frame, panorama, view, gate, unreliable, falloff)
        out = np.empty((h, self.out_width, 3), np.uint8)
        ox, b = self.offset, self.band
        out[:, ox : ox + w] = frame
        right = self.out_width - ox - w
        moved = sides or (view, view)
        for is_left, width, side_view in zip((True, False), (ox, right), moved, strict=True):
            if width <= 0:
                continue
            # the side plus the band under the original (for the colour match), warped at once
            x0 = 0 if is_left else ox + w - b
            cols = slice(x0, x0 + width + b)
            strip = warp_area(panorama, side_view, slice(0, h), cols, falloff)
            fcols = slice(0, b) if is_left else slice(w - b, w)
            if is_left:
                band, side = strip[:, width:], strip[:, :width]
            else:
                band, side = strip[:, :b], strip[:, b:]
            orig = frame[:, fcols]
            bad = np.zeros((h, b), bool) if unreliable is None else unreliable[:, fcols]
            offset = self._colour_offset(orig, band, ~bad, is_left, width)
            # one saturating, rounding add: uint8 + float32 offset -> uint8
            side = cv2.add(side, offset, dtype=cv2.CV_8U)
            if is_left:
                out[:, :ox] = side
            else:
                out[:, ox + w :] = side
        if mirror:
            self.mirror(out, unreliable)
        return out

    def mirror(self, out: np.ndarray, unreliable: np.ndarray | None = None) -> None:
        """In place: in the first ``fade`` columns outside the original (``out``'s
        centre), cross-fade the original mirrored across its edge into what is there
        (smoothstep, fully the mirror at the edge); ``unreliable`` pixels of the original
        are not mirrored."""
        h, w, ox, b = self.height, self.in_width, self.offset, self.band
        for is_left, width in ((True, ox), (False, self.out_width - ox - w)):
            bo = min(self.fade, width)
            if bo <= 0:
                continue
            fade = self._fade[:bo]  # 1 at the edge -> 0 after bo columns
            fcols = slice(0, b) if is_left else slice(w - b, w)
            orig = out[:, ox + fcols.start : ox + fcols.stop]
            bad = np.zeros((h, b), bool) if unreliable is None else unreliable[:, fcols]
            if is_left:
                mirror, mbad = orig[:, :bo][:, ::-1], bad[:, :bo][:, ::-1]
                fade, cols = fade[::-1], slice(ox - bo, ox)
            else:
                mirror, mbad = orig[:, b - bo :][:, ::-1], bad[:, b - bo :][:, ::-1]
                cols = slice(ox + w, ox + w + bo)
            alpha = np.where(mbad, np.float32(0), fade[None, :])
            out[:, cols] = cv2.blendLinear(
                np.ascontiguousarray(mirror), out[:, cols], alpha, 1 - alpha
            )

    def look(
        self,
        frame: np.ndarray,
        panorama: np.ndarray,
        view: np.ndarray,
        unreliable: np.ndarray | None = None,
        falloff: np.ndarray | None = None,
        levels: float = AGREE_LEVELS,
        align: bool = True,
    ) -> tuple[tuple[float, float], tuple[np.ndarray, np.ndarray]]:
        """What a frame's rendering needs to know first, from the panorama warped into the
        ``align`` columns inside each seam: how well it agrees with the frame in the seam
        bands, the ``band`` outermost columns of the original (left, right; see
        :meth:`_agree`), and the view of each side (:meth:`side_views`; ``view`` itself
        without ``align``, for a frame that will not be drawn from the panorama)."""
        h, w, ox, s, b = self.height, self.in_width, self.offset, self.align, self.band
        shares, views = [], []
        for cols, band in ((slice(0, s), slice(0, b)), (slice(w - s, w), slice(s - b, s))):
            out_cols = slice(ox + cols.start, ox + cols.stop)
            pano = warp_area(panorama, view, slice(0, h), out_cols, falloff)
            bad = None if unreliable is None else unreliable[:, cols]
            in_band = None if bad is None else bad[:, band]
            shares.append(self._agree(frame[:, cols][:, band], pano[:, band], in_band, levels))
            views.append(self._align(frame[:, cols], pano, view, bad) if align else view)
        return (shares[0], shares[1]), (views[0], views[1])

    def side_views(
        self,
        frame: np.ndarray,
        panorama: np.ndarray,
        view: np.ndarray,
        unreliable: np.ndarray | None = None,
        falloff: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``view`` for the left and the right side, each moved by the sub-pixel shift that
        aligns the panorama's rendering of the ``align`` columns inside its seam with the
        frame there (phase correlation): registration runs at a reduced width and errs
        most at the frame's edges, where the sides join, and its error changes from frame
        to frame (flicker in the sides). Unmoved where the match is weak or the shift
        large. ``unreliable`` pixels (film gate) count as black in both."""
        return self.look(frame, panorama, view, unreliable, falloff)[1]

    def _align(
        self, frame: np.ndarray, pano: np.ndarray, view: np.ndarray, bad: np.ndarray | None
    ) -> np.ndarray:
        """``view`` moved by the phase-correlation shift of ``pano`` against ``frame``
        (the align columns), or as it is (see :meth:`side_views`)."""
        a = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
        b = cv2.cvtColor(pano, cv2.COLOR_RGB2GRAY).astype(np.float32)
        if bad is not None:
            a[bad] = b[bad] = 0
        (dx, dy), response = cv2.phaseCorrelate(a, b, self._window)
        if not (response >= ALIGN_RESPONSE and max(abs(dx), abs(dy)) <= ALIGN_MAX):
            return view
        # the panorama showed what the frame has at +(dx, dy): look there
        return view @ np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])

    def repair(
        self,
        frame: np.ndarray,
        panorama: np.ndarray,
        view: np.ndarray,
        gate: GatePatch,
        unreliable: np.ndarray | None = None,
        falloff: np.ndarray | None = None,
    ) -> np.ndarray:
        """The frame with the panorama feathered in under the film gate, each patch
        matched to the frame's colour (the median difference over the patch's pixels off
        the gate and reliable)."""
        out = frame.copy()
        ox = self.offset
        for rows, cols in gate.rects:
            out_cols = slice(ox + cols.start, ox + cols.stop)
            patch = warp_area(panorama, view, rows, out_cols, falloff)
            context = gate.alpha[rows, cols] == 0
            if unreliable is not None:
                context &= ~unreliable[rows, cols]
            if np.count_nonzero(context) >= 16:
                diff = cv2.subtract(frame[rows, cols], patch, dtype=cv2.CV_16S)[context]
                b, g, r = (float(v) for v in np.median(diff, 0))
                patch = cv2.add(patch, (b, g, r, 0.0), dtype=cv2.CV_8U)
            out[rows, cols] = gate.blend(frame, patch, (rows, cols))
        return out

    def _agree(
        self, frame: np.ndarray, pano: np.ndarray, bad: np.ndarray | None, levels: float
    ) -> float:
        """How well the panorama agrees with the frame in one seam band (``frame`` and
        ``pano`` there): the share of the band's usable pixels whose largest channel
        difference, after the band's mean colour difference, is under ``levels``; 1 with
        too few usable pixels to say."""
        h, b = frame.shape[:2]
        ok8 = np.ones((h, b), np.uint8)
        if bad is not None:
            ok8[bad] = 0
        n = int(np.count_nonzero(ok8))
        if n < 4 * b:
            return 1.0
        diff = cv2.subtract(frame, pano, dtype=cv2.CV_16S)
        dev = cv2.absdiff(diff, cv2.mean(diff, ok8))  # off the band's colour difference
        close = (largest_channel(dev) < levels) & (ok8 > 0)
        return float(np.count_nonzero(close)) / n

    def _colour_offset(
        self, orig: np.ndarray, pano: np.ndarray, ok: np.ndarray, is_left: bool, width: int
    ) -> np.ndarray:
        """(h, width, 3) float32 additive correction of the side towards the frame's colours:
        the per-row (smoothed) band difference at the seam, fading to the band's global
        difference at the outer edge."""
        h, b = ok.shape
        diff = cv2.subtract(orig, pano, dtype=cv2.CV_32F)
        # exposure drift is small; big differences are characters or occlusions: skip them
        ok = ok & (largest_channel(np.abs(diff)) < 32)
        n = int(np.count_nonzero(ok))
        if n < 4:
            return np.zeros((h, width, 3), np.float32)
        wgt = ok.astype(np.float32)
        diff *= cv2.merge([wgt, wgt, wgt])
        # per row: the band's summed difference per channel and its count, smoothed
        rows = np.empty((h, 4), np.float32)
        rows[:, :3] = diff.reshape(h, -1) @ self._per_channel
        rows[:, 3] = wgt.sum(1)
        glob = rows[:, :3].sum(0, dtype=np.float64) / n
        rows = box_rows(rows, max(3, (h // 6) | 1))
        row_d, row_w = rows[:, :3], rows[:, 3:]
        a = np.clip(row_w / max(1.0, 0.5 * b), 0, 1)
        local = a * row_d / np.maximum(row_w, 1e-3) + (1 - a) * glob
        # glob + (local - glob) * fade(x) as one product (h, 4) @ (4, width * 3): numpy
        # broadcasting over a trailing axis of 3 is many times slower here
        spread = self._spread.get((width, is_left))
        if spread is None:
            x = np.linspace(0.0, 1.0, width, dtype=np.float32)
            fade = x if is_left else x[::-1]
            spread = np.zeros((3, width, 3), np.float32)
            for c in range(3):
                spread[c, :, c] = fade
            spread = self._spread[(width, is_left)] = spread.reshape(3, -1)
        rhs = np.empty((4, width * 3), np.float32)
        rhs[:3], rhs[3] = spread, np.tile(glob.astype(np.float32), width)
        lhs = np.ones((h, 4), np.float32)
        lhs[:, :3] = local - glob
        return (lhs @ rhs).reshape(h, width, 3)
