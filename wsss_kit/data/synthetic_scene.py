"""Procedural outdoor scenes for the embedded demo dataset (numpy only, a few ms per image).

A scene is a sky with clouds above a horizon, an optional water band, and grass or sand ground
with a few grey rocks; 1-3 objects of five classes stand in it. Every class comes in two
visually distinct subtypes (:data:`SUBTYPES`), so that a subtype's word names something one can
see (the captions of :mod:`wsss_kit.data.captions` use them):

=====  =============  =================================================================
ball   beach ball     a red/orange disc with spherical shading and a pale band
       football       a white disc with dark spots
box    crate          a rotated rectangle with wood grain and dark edges, yellow-brown
       cardboard box  a plain light-brown rectangle with a pale tape stripe
kite   diamond kite   a pink/purple quadrilateral with a dark cross and a thin wavy tail
       delta kite     a yellow triangle with a green keel and a thin wavy tail
boat   sailboat       a red or blue hull with a mast and a cream sail
       rowboat        a wide wooden hull with plank lines and two oars, no sail
tree   oak            a brown trunk under a dark green, leafy crown made of 2-3 discs
       pine           a short trunk under a tall, tiered blue-green cone
=====  =============  =================================================================

Boats nearly always float on water and water rarely appears without a boat, so a classifier
learns "water" as evidence of "boat" (the co-occurrence problem CLIMS addresses); water is
background (0) in the mask. Objects are painted with hard edges, so mask boundaries follow colour
edges, while the textures, clutter and noise keep CAMs from being exact.
"""

from __future__ import annotations

import colorsys
import functools
from dataclasses import dataclass, field

import numpy as np

CLASS_NAMES: tuple[str, ...] = ("ball", "box", "kite", "boat", "tree")
BALL, BOX, KITE, BOAT, TREE = 1, 2, 3, 4, 5
"""Mask values of the classes (0 is background)."""

P_BOAT = 0.35
P_WATER_WITH_BOAT = 0.95
P_WATER_WITHOUT_BOAT = 0.05
MIN_VISIBLE = 0.5
"""An instance whose visible part would fall below this fraction of its area is left out."""

SUBTYPES: dict[str, tuple[str, str]] = {
    "ball": ("beach ball", "football"),
    "box": ("crate", "cardboard box"),
    "kite": ("diamond kite", "delta kite"),
    "boat": ("sailboat", "rowboat"),
    "tree": ("oak", "pine"),
}
"""Each class's two subtypes (the first is the look the world had before subtypes existed)."""


@dataclass(frozen=True)
class SceneObject:
    """One object drawn in a scene (at least :data:`MIN_VISIBLE` of it visible).

    Attributes:
        kind: mask value, 1..5 (``CLASS_NAMES[kind - 1]`` is its class).
        subtype: one of ``SUBTYPES[class]``.
        colour: its main colour as a word (``"red"``, ``"white"``...).
        area: visible pixels (its pixels in the mask).
    """

    kind: int
    subtype: str
    colour: str
    area: int

    @property
    def class_name(self) -> str:
        return CLASS_NAMES[self.kind - 1]


@dataclass
class Scene:
    """One rendered scene.

    Attributes:
        image: ``float32 (H, W, 3)`` RGB in [0, 1].
        mask: ``uint8 (H, W)``: 0 background (sky, water, ground, clutter), 1..5 objects.
        classes: sorted mask values of the objects present.
        has_water: whether the background has a water band.
        ground: ``"grass"`` or ``"sand"``.
        objects: the visible objects, farthest first.
        cloud_cover: fraction of the sky under clouds, in [0, 1].
        rocks: grey rocks visible on the ground.
        water: ``bool (H, W)``: background pixels showing water (none without a water band); the
            pixels a classifier that takes water for boat evidence wrongly marks as boat.
    """

    image: np.ndarray
    mask: np.ndarray
    classes: list[int]
    has_water: bool
    ground: str
    objects: list[SceneObject] = field(default_factory=list)
    cloud_cover: float = 0.0
    rocks: int = 0
    water: np.ndarray | None = None


@functools.lru_cache(maxsize=16)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return yy + 0.5, xx + 0.5


@functools.lru_cache(maxsize=32)
def _interp_matrix(n: int, cells: int) -> np.ndarray:
    """``(n, cells + 1)`` linear interpolation weights from a coarse grid to ``n`` samples."""
    pos = (np.arange(n, dtype=np.float32) + 0.5) / n * cells
    lo = np.minimum(pos.astype(int), cells - 1)
    frac = pos - lo
    m = np.zeros((n, cells + 1), dtype=np.float32)
    m[np.arange(n), lo] = 1 - frac
    m[np.arange(n), lo + 1] = frac
    return m


def smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Value noise in about [-1, 1]: a random ``cells x cells`` lattice, bilinearly interpolated."""
    lattice = rng.uniform(-1, 1, size=(cells + 1, cells + 1)).astype(np.float32)
    return _interp_matrix(h, cells) @ lattice @ _interp_matrix(w, cells).T


def _uniform_field(rng: np.random.Generator, lo: float, hi: float, shape: tuple[int, ...]) -> np.ndarray:
    """Per-pixel uniform noise in [lo, hi), float32 (drawn in float32: half the time of float64)."""
    field = rng.random(shape, dtype=np.float32)
    field *= hi - lo
    field += lo
    return field


def jitter_colour(rng: np.random.Generator, rgb: tuple[float, float, float], hue: float = 0.03,
                  sat: float = 0.15, val: float = 0.15) -> np.ndarray:
    """``rgb`` with its hue, saturation and value moved at random, as a ``float32 (3,)`` array."""
    h, s, v = colorsys.rgb_to_hsv(*rgb)
    h = (h + rng.uniform(-hue, hue)) % 1.0
    s = float(np.clip(s * rng.uniform(1 - sat, 1 + sat), 0, 1))
    v = float(np.clip(v * rng.uniform(1 - val, 1 + val), 0, 1))
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32)


def _rotated(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = xx - cx, yy - cy
    return dx * c + dy * s, -dx * s + dy * c


class _Painter:
    """Draws one scene into shared image/mask buffers."""

    def __init__(self, rng: np.random.Generator, h: int, w: int) -> None:
        self.rng, self.h, self.w = rng, h, w
        self.s = float(min(h, w))
        self.yy, self.xx = _grid(h, w)
        self.rocks: list[np.ndarray] = []
        self.water = np.zeros((h, w), dtype=bool)
        self.cloud_cover = 0.0

    # ------------------------------------------------------------------ background
    def background(self, has_water: bool, ground: str) -> tuple[np.ndarray, float, float]:
        rng, h, w, yy = self.rng, self.h, self.w, self.yy
        horizon = rng.uniform(0.3, 0.5) * h
        water_bottom = horizon + (rng.uniform(0.18, 0.3) * h if has_water else 0.0)
        img = np.empty((h, w, 3), dtype=np.float32)
        t = np.clip(yy / max(horizon, 1.0), 0, 1)[..., None]
        top = jitter_colour(rng, (0.25, 0.45, 0.85), 0.02, 0.2, 0.1)
        low = jitter_colour(rng, (0.72, 0.83, 0.95), 0.02, 0.2, 0.05)
        sky = top * (1 - t) + low * t
        clouds = np.clip(smooth_noise(rng, h, w, 6) * 1.6 - 0.4, 0, 1)[..., None]
        in_sky = yy[:, 0] < horizon
        self.cloud_cover = float((clouds[in_sky] > 0.5).mean()) if in_sky.any() else 0.0
        sky = sky * (1 - clouds) + np.float32(0.95) * clouds
        if ground == "grass":
            base = jitter_colour(rng, (0.36, 0.6, 0.2), 0.03, 0.15, 0.1)
            fine = _uniform_field(rng, 0.7, 1.15, (h, w, 1))
        else:
            base = jitter_colour(rng, (0.82, 0.72, 0.5), 0.02, 0.1, 0.08)
            fine = _uniform_field(rng, 0.88, 1.08, (h, w, 1))
        ground_img = base * fine * (0.9 + 0.12 * smooth_noise(rng, h, w, 4))[..., None]
        img[:] = np.where((yy < horizon)[..., None], sky, ground_img)
        if has_water:
            band = (yy >= horizon) & (yy < water_bottom)
            self.water = band
            colour = jitter_colour(rng, (0.1, 0.36, 0.58), 0.03, 0.15, 0.1)
            waves = 0.85 + 0.15 * np.sin(yy * rng.uniform(0.9, 1.5) + 5.0 * smooth_noise(rng, h, w, 5))
            depth = 1.0 - 0.25 * np.clip((yy - horizon) / max(water_bottom - horizon, 1.0), 0, 1)
            water = colour * (waves * depth)[..., None]
            img[band] = water[band]
        ground_top = water_bottom
        self._clutter(img, ground_top)
        return img, horizon, ground_top

    def _clutter(self, img: np.ndarray, ground_top: float) -> None:
        """Grey rocks on the ground: background objects with edges, so not every edge is an object."""
        rng = self.rng
        for _ in range(int(rng.integers(0, 4))):
            cx = rng.uniform(0, self.w)
            cy = rng.uniform(ground_top + 0.05 * self.s, self.h + 0.05 * self.s)
            rx, ry = rng.uniform(0.02, 0.05) * self.s, rng.uniform(0.015, 0.035) * self.s
            rock = ((self.xx - cx) / rx) ** 2 + ((self.yy - cy) / ry) ** 2 < 1
            img[rock] = jitter_colour(rng, (0.5, 0.5, 0.48), 0.05, 0.3, 0.2) * rng.uniform(0.85, 1.0)
            if rock.any():
                self.rocks.append(rock)

    # ------------------------------------------------------------------ objects
    def ball(self, ground_top: float, subtype: int) -> tuple[np.ndarray, np.ndarray, str]:
        rng, xx, yy, s = self.rng, self.xx, self.yy, self.s
        r = rng.uniform(0.07, 0.14) * s
        cx = rng.uniform(0.1, 0.9) * self.w
        cy = rng.uniform(ground_top, self.h + 0.3 * r) - 0.6 * r
        d2 = (xx - cx) ** 2 + (yy - cy) ** 2
        shape = d2 < r * r
        hx, hy = cx - 0.35 * r, cy - 0.35 * r
        shade = np.clip(1.15 - 0.55 * np.sqrt((xx - hx) ** 2 + (yy - hy) ** 2) / r, 0.45, 1.15)
        if subtype == 0:  # beach ball
            red = rng.random() < 0.5
            colour = jitter_colour(rng, (0.9, 0.2, 0.1) if red else (0.95, 0.5, 0.1), 0.02, 0.1, 0.1)
            u, v = _rotated(xx, yy, cx, cy, rng.uniform(0, np.pi))
            band = (np.abs(v) < 0.22 * r)[..., None]
            pix = np.where(band, np.float32(0.95), colour) * shade[..., None]
            return shape, pix, "red" if red else "orange"
        # football: white leather with dark patches (a centre spot and a ring of five)
        white = jitter_colour(rng, (0.93, 0.93, 0.9), 0.02, 0.3, 0.05)
        spots = (xx - cx) ** 2 + (yy - cy) ** 2 < (0.28 * r) ** 2
        turn = rng.uniform(0, 2 * np.pi)
        for k in range(5):
            a = turn + 2 * np.pi * k / 5
            spots |= (xx - cx - 0.72 * r * np.cos(a)) ** 2 + (yy - cy - 0.72 * r * np.sin(a)) ** 2 < (0.2 * r) ** 2
        pix = np.where(spots[..., None], np.float32(0.12), white) * shade[..., None]
        return shape, pix, "white"

    def box(self, ground_top: float, subtype: int) -> tuple[np.ndarray, np.ndarray, str]:
        rng, s = self.rng, self.s
        a, b = rng.uniform(0.08, 0.15) * s, rng.uniform(0.07, 0.13) * s
        cx = rng.uniform(0.1, 0.9) * self.w
        cy = rng.uniform(ground_top + 0.3 * b, self.h)
        u, v = _rotated(self.xx, self.yy, cx, cy, rng.uniform(-0.5, 0.5))
        shape = (np.abs(u) < a) & (np.abs(v) < b)
        if subtype == 0:  # crate
            colour = jitter_colour(rng, (0.78, 0.55, 0.22), 0.03, 0.15, 0.12)
            grain = 0.82 + 0.14 * np.sin(v * rng.uniform(0.8, 1.4) + 2.0 * np.sin(u * 0.15))
            edge = np.minimum(a - np.abs(u), b - np.abs(v)) < 0.08 * min(a, b) + 0.8
            shade = np.where(edge, np.float32(0.45), grain)
            return shape, colour * shade[..., None], "yellow"
        # cardboard box: flat light brown, a pale tape stripe down the middle, a darker flap line
        colour = jitter_colour(rng, (0.66, 0.5, 0.34), 0.02, 0.1, 0.08)
        pix = np.broadcast_to(colour, shape.shape + (3,)).copy()
        pix[np.abs(u) < 0.12 * a + 0.6] = np.float32(0.92) * colour / colour.max()
        pix[np.abs(v + 0.45 * b) < 0.04 * b + 0.5] *= np.float32(0.7)
        return shape, pix, "brown"

    def kite(self, horizon: float, subtype: int) -> tuple[np.ndarray, np.ndarray, str]:
        rng, xx, yy, s = self.rng, self.xx, self.yy, self.s
        a, b = rng.uniform(0.06, 0.1) * s, rng.uniform(0.09, 0.14) * s
        cx = rng.uniform(0.12, 0.88) * self.w
        cy = rng.uniform(0.6 * b, max(horizon - 0.3 * b, 0.6 * b + 1))
        u, v = _rotated(xx, yy, cx, cy, rng.uniform(-0.5, 0.5))
        tail_len = rng.uniform(0.6, 1.2) * b
        wiggle = 0.15 * a * np.sin((v - b) * rng.uniform(0.3, 0.5))
        tail = (v > b - 1) & (v < b + tail_len) & (np.abs(u - wiggle) < 0.9)
        if subtype == 0:  # diamond kite
            v_scaled = np.where(v < 0, v / (0.55 * b), v / b)
            body = np.abs(u) / a + np.abs(v_scaled) < 1
            colour = jitter_colour(rng, (0.78, 0.2, 0.7), 0.05, 0.1, 0.1)
            second = jitter_colour(rng, (0.55, 0.2, 0.8), 0.05, 0.1, 0.1)
            pix = np.where((u < 0)[..., None], colour, second)
            cross = ((np.abs(u) < 0.8) | (np.abs(v) < 0.8)) & body
            pix = np.where((cross | tail)[..., None], np.float32(0.15), pix)
            return body | tail, pix, "pink"
        # delta kite: a wide triangle, apex up, with a green keel down its middle
        t = np.clip((v + 0.6 * b) / (1.6 * b), 0, 1)
        body = (v > -0.6 * b) & (v < b) & (np.abs(u) < 1.3 * a * t)
        colour = jitter_colour(rng, (0.95, 0.82, 0.12), 0.02, 0.1, 0.08)
        keel = jitter_colour(rng, (0.15, 0.6, 0.25), 0.03, 0.1, 0.1)
        pix = np.where((np.abs(u) < 0.12 * a + 0.7)[..., None], keel, colour)
        pix = np.where(tail[..., None], np.float32(0.15), pix)
        return body | tail, pix, "yellow"

    def boat(self, horizon: float, ground_top: float, on_water: bool,
             subtype: int) -> tuple[np.ndarray, np.ndarray, str]:
        rng, xx, yy, s = self.rng, self.xx, self.yy, self.s
        half = rng.uniform(0.12, 0.2) * s
        depth = rng.uniform(0.25, 0.4) * half
        cx = rng.uniform(0.12, 0.88) * self.w
        if on_water:
            bottom = rng.uniform(horizon + 0.5 * (ground_top - horizon), ground_top)
        else:
            bottom = rng.uniform(horizon + 0.2 * s, self.h)
        top = bottom - depth
        t = np.clip((yy - top) / depth, 0, 1)
        hull = (yy >= top) & (yy < bottom) & (np.abs(xx - cx) < half * (1 - 0.35 * t))
        if subtype == 1:
            return self._rowboat(cx, top, bottom, half, depth)
        side = rng.choice([-1.0, 1.0])
        mast_x = cx - side * 0.1 * half
        sail_top = top - rng.uniform(1.0, 1.6) * half
        frac = np.clip((yy - sail_top) / max(top - sail_top, 1.0), 0, 1)
        reach = (xx - mast_x) * side
        sail = (yy >= sail_top) & (yy < top - 1) & (reach > 0.8) & (reach < frac * 0.85 * half)
        mast = (yy >= sail_top) & (yy < top) & (np.abs(xx - mast_x) < 0.8)
        red = rng.random() < 0.5
        hull_colour = jitter_colour(rng, (0.45, 0.1, 0.1) if red else (0.12, 0.12, 0.3), 0.03, 0.1, 0.15)
        sail_colour = jitter_colour(rng, (0.95, 0.92, 0.82), 0.02, 0.3, 0.04) * (0.85 + 0.15 * frac)[..., None]
        stripe = (np.abs(yy - (top + 0.3 * depth)) < 0.12 * depth + 0.5)[..., None]
        pix = np.where(hull[..., None], np.where(stripe, np.float32(0.9), hull_colour), sail_colour)
        pix = np.where(mast[..., None], np.float32(0.2), pix)
        return hull | sail | mast, pix, "red" if red else "blue"

    def _rowboat(self, cx: float, top: float, bottom: float, half: float,
                 depth: float) -> tuple[np.ndarray, np.ndarray, str]:
        """A wide, open wooden hull with plank lines and an oar on each side; no mast, no sail."""
        rng, xx, yy = self.rng, self.xx, self.yy
        top = bottom - 1.3 * depth
        t = np.clip((yy - top) / (bottom - top), 0, 1)
        hull = (yy >= top) & (yy < bottom) & (np.abs(xx - cx) < half * (1 - 0.45 * t * t))
        oars = np.zeros_like(hull)
        for side in (-1.0, 1.0):
            x0, y0 = cx + side * 0.55 * half, top + 0.2 * (bottom - top)
            x1, y1 = cx + side * 1.25 * half, bottom + 0.35 * (bottom - top)
            along = np.clip(((xx - x0) * (x1 - x0) + (yy - y0) * (y1 - y0)) / ((x1 - x0) ** 2 + (y1 - y0) ** 2), 0, 1)
            dist2 = (xx - x0 - along * (x1 - x0)) ** 2 + (yy - y0 - along * (y1 - y0)) ** 2
            oars |= dist2 < 0.8 ** 2
        wood = jitter_colour(rng, (0.55, 0.35, 0.18), 0.02, 0.1, 0.1)
        planks = 0.8 + 0.2 * (np.sin((yy - top) * 2.2) > 0)
        pix = wood * planks[..., None]
        pix = np.where(oars[..., None] & ~hull[..., None], np.float32(0.35) * wood / wood.max(), pix)
        return hull | oars, pix, "brown"

    def tree(self, ground_top: float, subtype: int) -> tuple[np.ndarray, np.ndarray, str]:
        rng, xx, yy, s = self.rng, self.xx, self.yy, self.s
        cx = rng.uniform(0.1, 0.9) * self.w
        base = rng.uniform(ground_top + 0.08 * s, self.h + 0.05 * s)
        if subtype == 1:
            return self._pine(cx, base)
        trunk_h, trunk_w = rng.uniform(0.12, 0.2) * s, rng.uniform(0.018, 0.03) * s
        crown_r = rng.uniform(0.08, 0.13) * s
        crown_y = base - trunk_h - 0.5 * crown_r
        trunk = (np.abs(xx - cx) < trunk_w) & (yy < base) & (yy > crown_y)
        crown = np.zeros_like(trunk)
        for _ in range(int(rng.integers(2, 4))):
            ox, oy = rng.uniform(-0.6, 0.6) * crown_r, rng.uniform(-0.4, 0.3) * crown_r
            r = crown_r * rng.uniform(0.7, 1.0)
            crown |= (xx - cx - ox) ** 2 + (yy - crown_y - oy) ** 2 < r * r
        leaves = jitter_colour(rng, (0.1, 0.32, 0.12), 0.03, 0.15, 0.15)
        leaf_tex = _uniform_field(rng, 0.65, 1.25, (self.h, self.w, 1))
        bark = jitter_colour(rng, (0.4, 0.26, 0.13), 0.02, 0.1, 0.1)
        pix = np.where(crown[..., None], leaves * leaf_tex, bark)
        return crown | trunk, pix, "green"

    def _pine(self, cx: float, base: float) -> tuple[np.ndarray, np.ndarray, str]:
        """A short trunk under a tall cone of three stacked tiers, blue-green."""
        rng, xx, yy, s = self.rng, self.xx, self.yy, self.s
        height, width = rng.uniform(0.25, 0.38) * s, rng.uniform(0.08, 0.12) * s
        trunk_h, trunk_w = rng.uniform(0.04, 0.07) * s, rng.uniform(0.015, 0.025) * s
        trunk = (np.abs(xx - cx) < trunk_w) & (yy < base) & (yy > base - trunk_h - 2)
        apex = base - trunk_h - height
        crown = np.zeros_like(trunk)
        for k in range(3):  # tiers overlap; each widens downwards
            t_top = apex + k * 0.28 * height
            t_bottom = t_top + 0.44 * height
            frac = np.clip((yy - t_top) / (t_bottom - t_top), 0, 1)
            crown |= (yy >= t_top) & (yy < t_bottom) & (np.abs(xx - cx) < width * (0.45 + 0.2 * k) * frac + 0.5)
        needles = jitter_colour(rng, (0.06, 0.3, 0.24), 0.02, 0.15, 0.15)
        tex = _uniform_field(rng, 0.75, 1.2, (self.h, self.w, 1))
        bark = jitter_colour(rng, (0.35, 0.22, 0.12), 0.02, 0.1, 0.1)
        pix = np.where(crown[..., None], needles * tex, bark)
        return crown | trunk, pix, "dark green"


def render_scene(rng: np.random.Generator, height: int, width: int) -> Scene:
    """Draw one random scene (see the module docstring) with the generator ``rng``."""
    has_boat = rng.random() < P_BOAT
    has_water = rng.random() < (P_WATER_WITH_BOAT if has_boat else P_WATER_WITHOUT_BOAT)
    ground = "grass" if rng.random() < 0.6 else "sand"
    n_objects = int(rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25]))
    others = [BALL, BOX, KITE, TREE]
    kinds = ([BOAT] if has_boat else []) + [int(rng.choice(others)) for _ in range(n_objects - int(has_boat))]

    painter = _Painter(rng, height, width)
    image, horizon, ground_top = painter.background(has_water, ground)
    instances = []
    for kind in kinds:
        sub = int(rng.integers(0, 2))
        if kind == BALL:
            shape, pix, colour = painter.ball(ground_top, sub)
        elif kind == BOX:
            shape, pix, colour = painter.box(ground_top, sub)
        elif kind == KITE:
            shape, pix, colour = painter.kite(horizon, sub)
        elif kind == BOAT:
            shape, pix, colour = painter.boat(horizon, ground_top, has_water, sub)
        else:
            shape, pix, colour = painter.tree(ground_top, sub)
        area = int(shape.sum())
        if area >= 12:
            instances.append((float(painter.yy[shape].max()), kind, shape, pix, area, sub, colour))
    # Nearer objects (lower in the picture) are drawn last, so they occlude farther ones.
    instances.sort(key=lambda item: item[0])
    owner = np.full((height, width), -1, dtype=np.int16)
    for i, (_, _, shape, *_) in enumerate(instances):
        owner[shape] = i
    # The front object is always fully visible, so at least one object is kept.
    keep = [np.count_nonzero(owner == i) >= MIN_VISIBLE * inst[4] for i, inst in enumerate(instances)]
    if not instances:
        return render_scene(rng, height, width)

    mask = np.zeros((height, width), dtype=np.uint8)
    painted = np.full((height, width), -1, dtype=np.int16)
    for i, ((_, kind, shape, pix, *_), kept) in enumerate(zip(instances, keep)):
        if kept:
            image[shape] = pix[shape]
            mask[shape] = kind
            painted[shape] = i
    objects = [SceneObject(kind, SUBTYPES[CLASS_NAMES[kind - 1]][sub], colour, int(np.count_nonzero(painted == i)))
               for i, ((_, kind, _, _, _, sub, colour), kept) in enumerate(zip(instances, keep)) if kept]
    rocks = sum(np.count_nonzero(rock & (mask == 0)) >= MIN_VISIBLE * np.count_nonzero(rock) for rock in painter.rocks)
    image += _uniform_field(rng, -0.045, 0.045, image.shape)  # sensor-like noise; uniform is 10x cheaper than normal
    np.clip(image, 0.0, 1.0, out=image)
    classes = sorted({int(v) for v in np.unique(mask) if v})
    return Scene(image=image, mask=mask, classes=classes, has_water=has_water, ground=ground, objects=objects,
                 cloud_cover=painter.cloud_cover, rocks=int(rocks), water=painter.water & (mask == 0))
