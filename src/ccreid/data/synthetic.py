"""The embedded synthetic cloth-changing re-ID data set, written in PRCC's published layout.

Procedurally drawn little people (numpy + PIL ImageDraw). The design (docs/datasets.md) is a faithful
miniature of the CC-ReID problem:

- **Identity lives in body traits** that never change for a person: height, build (shoulder
  width), hip width, leg/torso proportion, head size and shape, skin tone, hair colour, hair
  style and volume, beard, posture (lean). They cover a small part of the pixels.
- **Clothes are a tempting shortcut**: every identity wears two outfits drawn from a *shared*
  palette (top colour, bottom colour, torso pattern with an accent colour, sleeve length,
  trousers/shorts/skirt, shoes), colours jittered slightly per person (σ 0.02). Outfits cover
  most body pixels.
  Cameras A and B show outfit 1, camera C outfit 2 — as in PRCC — so a model keyed on clothes
  scores high in `sc` (B vs A) and near chance in `cc` (C vs A), since other people wear the
  query's clothes.
- **Cameras differ** in light (gain), colour cast, background (colour and texture), viewpoint
  (frontal / side / more back views), scale, position, lean, blur and occlusion frequency.
- **Per-image noise**: arm and leg pose, position and scale jitter, back views, occluding
  bars, sensor noise and JPEG compression.

Layout under `root` (PRCC as published; `ccreid.data.layouts.prcc.parse_prcc` reads it)::

    rgb/train/<pid>/<CAM>_<n>.jpg      CAM in A, B, C (first letter of the file name)
    rgb/val/<pid>/<CAM>_<n>.jpg
    rgb/test/{A,B,C}/<pid>/<n>.jpg     A = gallery, B = same-clothes query, C = clothes-changing
    synth_meta.csv                     one row per image: path, split, pid, camera, outfit
                                       (palette index), slot, back_view, occluded, trait_*, outfit_*

`<pid>` folders are zero-padded integers; train ids come first, then val, then test (disjoint).

Configuration (every key required; extra keys, e.g. a data set's `layout`/`root`/`size`, are
ignored), with the demo's values (params.yaml `datasets.synthetic.synth`; why each: docs/demo.md)::

    seed: 0                # any int >= 0
    train_ids: 240         # many people with few images each
    val_ids: 10            # >= 0 (PRCC has a val split; nothing needs it)
    test_ids: 71           # PRCC's number of test people
    images_per_camera: 2   # per identity per camera
    height: 96             # drawn image size; `prepare` resizes to the data set's `size`
    width: 48
    jpeg_quality: 90
    palette_size: 4        # outfits in the shared palette (< number of ids: people share clothes)

The drawing strengths (`DRAWING`: per-person outfit colour jitter, head size, body spread, dyed
hair) are module constants, recorded in the set's fingerprint; benchmarks/demo_frontier.py varies
them. Heads are drawn 1.5× and body proportions spread 1.5× around their centres: at the demo's
64×32 a head at 1× is about 5 px tall. What that changed, and what stronger signals (dyed hair,
head 1.75×, spread 2×) did: docs/demo.md, "Why each choice".

More training ids make identity easier to learn across outfits, and a larger palette makes
clothes a stronger shortcut in training (docs/demo.md). A PRCC-sized set (train_ids 150, val_ids
0, test_ids 71, images_per_camera 51: 33,813 images) is drawn at 128×64 in under a minute on one
core (benchmarks/log/2026-11-25-preparation.md).

Determinism: every random draw comes from a numpy Generator seeded by `[seed, tag, ...]` — the
palette by (seed, palette_size), an identity by (seed, pid), an image by (seed, pid, camera, n) —
so a pid's traits depend on nothing but (seed, pid), and the same cfg gives byte-identical
files (fixed JPEG quality and subsampling, no optimize/progressive flags).

Writing is atomic: the set is generated into the fixed sibling `.<root name>.synth-tmp` (a stale
one from a killed run is removed first) and renamed to `root` at the end, replacing an old set.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import TypedDict

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ccreid.core.paths import SYNTH_META
from ccreid.core.schema import SynthCfg
from ccreid.data.layouts.prcc import CAMERAS as PRCC_CAMERAS

CAMERAS = tuple(PRCC_CAMERAS)  # PRCC's camera folders: A and B outfit 1, C outfit 2
_SS = 2  # supersampling factor: drawn at 2x, box-reduced (cheap anti-aliasing)

# Seed-sequence tags, so that the streams of palette, identities, cameras and images never collide.
_TAG_PALETTE, _TAG_ID, _TAG_OUTFIT, _TAG_CAM, _TAG_IMG = 101, 102, 103, 104, 105


# ---------------------------------------------------------------- cameras (fixed design)
# gain: brightness; cast: RGB multipliers; scale: body size; shift: mean x shift (fraction of W);
# view_w: body width factor (1 frontal, < 1 side view); back_p: probability of a back view;
# lean: mean lean (rad); occl_p: probability of an occluding bar; blur: Gaussian radius (px).
class CameraSpec(TypedDict):
    gain: float
    cast: tuple[float, float, float]
    scale: float
    shift: float
    view_w: float
    back_p: float
    lean: float
    occl_p: float
    blur: float


_CAMERA_SPECS: dict[str, CameraSpec] = {
    "A": CameraSpec(
        gain=1.06,
        cast=(1.00, 1.00, 1.00),
        scale=1.00,
        shift=-0.02,
        view_w=1.00,
        back_p=0.10,
        lean=0.00,
        occl_p=0.06,
        blur=0.0,
    ),
    "B": CameraSpec(
        gain=0.94,
        cast=(0.92, 1.00, 1.10),
        scale=0.93,
        shift=0.06,
        view_w=0.70,
        back_p=0.25,
        lean=-0.03,
        occl_p=0.12,
        blur=0.0,
    ),
    "C": CameraSpec(
        gain=0.80,
        cast=(1.12, 0.98, 0.82),
        scale=0.87,
        shift=-0.05,
        view_w=0.88,
        back_p=0.40,
        lean=0.04,
        occl_p=0.22,
        blur=0.6,
    ),
}

_HAIR_COLOURS = np.array(
    [
        (0.07, 0.06, 0.06),  # black
        (0.22, 0.13, 0.07),  # dark brown
        (0.42, 0.27, 0.13),  # brown
        (0.83, 0.70, 0.40),  # blonde
        (0.58, 0.22, 0.08),  # red
        (0.62, 0.62, 0.60),  # grey
    ]
)
_DYED_HAIR = np.array(
    [
        (0.15, 0.35, 0.85),  # blue
        (0.90, 0.30, 0.60),  # pink
        (0.20, 0.70, 0.30),  # green
        (0.55, 0.20, 0.75),  # purple
    ]
)
_HAIR_STYLES = 5  # 0 short, 1 long, 2 buzz/bald, 3 bun, 4 bob
_SKIN_LIGHT = np.array([0.96, 0.82, 0.70])
_SKIN_DARK = np.array([0.30, 0.19, 0.12])


class Drawing(TypedDict):
    outfit_jitter: float  # σ of the per-person colour jitter of a shared palette outfit
    head_scale: float  # head and hair size
    body_spread: float  # spread of height, build, hip and leg length around their centres
    hair_dyes: bool  # vivid dyed hair colours added to the natural ones


# How strong each signal is drawn; recorded in the set's fingerprint (benchmarks/demo_frontier.py
# varies them to measure what the demo's cc mAP follows).
DRAWING = Drawing(outfit_jitter=0.02, head_scale=1.5, body_spread=1.5, hair_dyes=False)

TRAIT_COLUMNS = (
    "trait_height",
    "trait_build",
    "trait_hip",
    "trait_leg",
    "trait_head_size",
    "trait_head_aspect",
    "trait_skin_r",
    "trait_skin_g",
    "trait_skin_b",
    "trait_hair_r",
    "trait_hair_g",
    "trait_hair_b",
    "trait_hair_style",
    "trait_hair_volume",
    "trait_lean",
    "trait_beard",
)
OUTFIT_COLUMNS = (
    "outfit_top_r",
    "outfit_top_g",
    "outfit_top_b",
    "outfit_bottom_r",
    "outfit_bottom_g",
    "outfit_bottom_b",
    "outfit_accent_r",
    "outfit_accent_g",
    "outfit_accent_b",
    "outfit_shoe_r",
    "outfit_shoe_g",
    "outfit_shoe_b",
    "outfit_pattern",
    "outfit_sleeve",
    "outfit_bottom_style",
)


# ---------------------------------------------------------------- configuration
def synth_section(synth: SynthCfg) -> dict:
    """What synthesis reads: the data set's `synth:` (core/schema.py checks it) and the drawing
    strengths, which are code."""
    return synth.model_dump(mode="json") | {"drawing": dict(DRAWING)}


# ---------------------------------------------------------------- random people and clothes
def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def _cloth_colour(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.3:  # neutrals: black, greys, white, beige
        v = rng.uniform(0.08, 0.95)
        return np.clip(v + rng.normal(0, 0.03, 3), 0, 1)
    return _hsv_to_rgb(rng.random(), rng.uniform(0.35, 0.9), rng.uniform(0.25, 0.95))


def _palette(seed: int, size: int) -> list[dict]:
    rng = np.random.default_rng([seed, _TAG_PALETTE, size])
    palette = []
    for _ in range(size):
        palette.append(
            dict(
                top=_cloth_colour(rng),
                bottom=_cloth_colour(rng),
                accent=_cloth_colour(rng),
                shoe=np.clip(rng.uniform(0.05, 0.9) + rng.normal(0, 0.05, 3), 0, 1),
                pattern=int(rng.choice(4, p=[0.4, 0.25, 0.2, 0.15])),  # plain, stripes, logo, 2-tone
                sleeve=int(rng.random() < 0.5),  # 0 short, 1 long
                bottom_style=int(rng.choice(3, p=[0.6, 0.2, 0.2])),  # trousers, shorts, skirt
            )
        )
    return palette


def _identity(seed: int, pid: int) -> dict:
    rng = np.random.default_rng([seed, _TAG_ID, pid])
    tone = rng.random()
    skin = np.clip(_SKIN_LIGHT * (1 - tone) + _SKIN_DARK * tone + rng.normal(0, 0.02, 3), 0, 1)
    colours = np.concatenate([_HAIR_COLOURS, _DYED_HAIR]) if DRAWING["hair_dyes"] else _HAIR_COLOURS
    hair = np.clip(colours[rng.integers(len(colours))] + rng.normal(0, 0.04, 3), 0, 1)
    spread = DRAWING["body_spread"]

    def body(low: float, high: float) -> float:
        centre = (low + high) / 2
        return centre + spread * (rng.uniform(low, high) - centre)

    return dict(
        height=min(body(0.78, 0.97), 0.99),
        build=max(body(0.15, 0.33), 0.08),
        hip=max(body(0.68, 1.08), 0.4),
        leg=body(0.40, 0.55),
        head_size=rng.uniform(0.125, 0.185) * DRAWING["head_scale"],
        head_aspect=rng.uniform(0.66, 0.98),
        skin=skin,
        hair=hair,
        hair_style=int(rng.integers(_HAIR_STYLES)),
        hair_volume=rng.random(),
        lean=rng.normal(0, 0.035),
        beard=int(rng.random() < 0.25),
    )


def _outfits(seed: int, pid: int, palette: list[dict]) -> list[tuple[int, dict]]:
    """Two distinct palette outfits for one person, colours jittered slightly per person."""
    rng = np.random.default_rng([seed, _TAG_OUTFIT, pid, len(palette)])
    chosen = rng.choice(len(palette), size=2, replace=False)
    outfits = []
    for index in chosen:
        base = palette[int(index)]
        outfit = dict(base)
        for key in ("top", "bottom", "accent", "shoe"):
            outfit[key] = np.clip(base[key] + rng.normal(0, DRAWING["outfit_jitter"], 3), 0, 1)
        outfits.append((int(index), outfit))
    return outfits


def _trait_values(t: dict) -> list[float]:
    return [
        t["height"],
        t["build"],
        t["hip"],
        t["leg"],
        t["head_size"],
        t["head_aspect"],
        *t["skin"],
        *t["hair"],
        t["hair_style"],
        t["hair_volume"],
        t["lean"],
        t["beard"],
    ]


def _outfit_values(o: dict) -> list[float]:
    return [*o["top"], *o["bottom"], *o["accent"], *o["shoe"], o["pattern"], o["sleeve"], o["bottom_style"]]


# ---------------------------------------------------------------- camera backgrounds
def _smooth_noise(rng, h, w, cells) -> np.ndarray:
    """Low-frequency noise in [-1, 1] (h × w), bilinear upsampling of a coarse grid."""
    gh, gw = max(2, h // cells), max(2, w // cells)
    grid = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    img = Image.fromarray(grid, mode="F").resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def _backgrounds(seed: int, h: int, w: int) -> dict[str, np.ndarray]:
    """One base background per camera, float32 RGB in [0, 1], twice the width (for shifts)."""
    out = {}
    ww = 2 * w
    ys = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    xs = np.arange(ww)[None, :, None]
    for c, cam in enumerate(CAMERAS):
        rng = np.random.default_rng([seed, _TAG_CAM, c])
        if cam == "A":  # bright beige wall, vertical gradient, grey floor, faint tile lines
            wall = np.array([0.80, 0.76, 0.66]) + rng.normal(0, 0.03, 3)
            floor = np.array([0.55, 0.55, 0.57]) + rng.normal(0, 0.03, 3)
            bg = wall * (1.05 - 0.15 * ys) * np.ones((1, ww, 1))
            bg = np.where(ys > 0.86, floor, bg)
            bg = bg * (1 - 0.06 * ((xs % max(4, w // 3)) == 0))
            bg = bg + 0.03 * _smooth_noise(rng, h, ww, 12)[..., None]
        elif cam == "B":  # blue-grey panels (doors/lockers), darker floor
            c1 = np.array([0.45, 0.52, 0.62]) + rng.normal(0, 0.03, 3)
            c2 = np.array([0.62, 0.66, 0.70]) + rng.normal(0, 0.03, 3)
            floor = np.array([0.35, 0.33, 0.32]) + rng.normal(0, 0.03, 3)
            panel = max(6, w // 4)
            bg = np.where(((xs // panel) % 2) == 0, c1, c2) * np.ones((h, 1, 1))
            bg = bg * (1 - 0.25 * ((xs % panel) < 1))
            bg = np.where(ys > 0.82, floor, bg)
        else:  # C: dim textured green-brown wall, a railing bar, blotchy noise
            base = np.array([0.42, 0.40, 0.28]) + rng.normal(0, 0.03, 3)
            bg = base * np.ones((h, ww, 1))
            bg = bg + 0.10 * _smooth_noise(rng, h, ww, 5)[..., None]
            bg = bg + 0.05 * _smooth_noise(rng, h, ww, 2)[..., None] * np.array([1.0, 0.6, 0.2])
            bar = (ys > 0.40) & (ys < 0.44)
            bg = np.where(bar, np.array([0.25, 0.22, 0.20]), bg)
            bg = np.where(ys > 0.88, np.array([0.30, 0.27, 0.22]), bg)
        out[cam] = np.clip(bg, 0, 1).astype(np.float32)
    return out


# ---------------------------------------------------------------- drawing one person
def _ellipse(cx, cy, rx, ry, n=18):
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], axis=1)


def _limb(x0, y0, x1, y1, w0, w1):
    """A tapered bar from (x0, y0) to (x1, y1) as a quadrilateral."""
    dx, dy = x1 - x0, y1 - y0
    n = math.hypot(dx, dy) or 1.0
    px, py = -dy / n, dx / n
    return np.array(
        [
            (x0 + px * w0 / 2, y0 + py * w0 / 2),
            (x1 + px * w1 / 2, y1 + py * w1 / 2),
            (x1 - px * w1 / 2, y1 - py * w1 / 2),
            (x0 - px * w0 / 2, y0 - py * w0 / 2),
        ]
    )


def _colour(rgb) -> tuple[int, int, int]:
    red, green, blue = (int(v) for v in np.clip(np.round(np.asarray(rgb) * 255), 0, 255))
    return red, green, blue


def _draw_person(
    draw: ImageDraw.ImageDraw, h: int, w: int, t: dict, o: dict, cam: CameraSpec, rng: np.random.Generator
) -> bool:
    """Draw one person on the supersampled canvas (_SS*h × _SS*w); True if it is a back view."""
    back = bool(rng.random() < cam["back_p"])
    view_w = cam["view_w"] * rng.uniform(0.93, 1.05)
    hb = t["height"] * cam["scale"] * rng.uniform(0.95, 1.03) * h
    top = (h - hb) / 2 + rng.normal(0, 0.015 * h)
    yf = top + hb
    cx = w / 2 + (cam["shift"] + rng.normal(0, 0.05)) * w
    lean = t["lean"] + cam["lean"] + rng.normal(0, 0.02)
    cos_l, sin_l = math.cos(lean), math.sin(lean)

    def shape(points, colour):
        p = np.asarray(points, dtype=np.float64)
        x = cx + (p[:, 0] - cx) * cos_l - (p[:, 1] - yf) * sin_l
        y = yf + (p[:, 0] - cx) * sin_l + (p[:, 1] - yf) * cos_l
        draw.polygon([(float(a), float(b)) for a, b in zip(x * _SS, y * _SS)], fill=colour)

    skin, hair = _colour(t["skin"]), _colour(t["hair"])
    top_c, bottom_c = _colour(o["top"]), _colour(o["bottom"])
    accent_c, shoe_c = _colour(o["accent"]), _colour(o["shoe"])

    head_h = t["head_size"] * hb
    head_w = head_h * t["head_aspect"]
    hcy = top + head_h / 2
    ys = top + head_h * 1.12  # shoulders
    leg_len = t["leg"] * hb
    yh = yf - leg_len  # hips
    sw = t["build"] * hb * view_w
    hw = max(sw * t["hip"], 0.1 * hb * view_w)
    torso_len = yh - ys
    style, vol = t["hair_style"], t["hair_volume"]

    # long hair behind the body (front view)
    if style == 1 and not back:
        hl = ys + torso_len * (0.15 + 0.25 * vol)
        shape(
            [(cx - head_w * 0.62, hcy), (cx + head_w * 0.62, hcy), (cx + head_w * 0.70, hl), (cx - head_w * 0.70, hl)],
            hair,
        )

    # legs (pose: spread and stride), shoes
    spread = rng.uniform(0.0, 0.14)
    stride = rng.uniform(-0.10, 0.10) * (1.0 - view_w) * 3  # side views show stride
    leg_w = hw * 0.46
    legs = []
    for side in (-1, 1):
        x0 = cx + side * hw / 4
        x1 = x0 + side * leg_len * math.sin(spread) + side * leg_len * stride
        legs.append((x0, x1))
    for x0, x1 in legs:
        if o["bottom_style"] == 0:  # trousers
            shape(_limb(x0, yh, x1, yf, leg_w, leg_w * 0.8), bottom_c)
        else:
            shape(_limb(x0, yh, x1, yf, leg_w * 0.85, leg_w * 0.7), skin)
            if o["bottom_style"] == 1:  # shorts
                xm = x0 + (x1 - x0) * 0.42
                shape(_limb(x0, yh, xm, yh + leg_len * 0.42, leg_w * 1.05, leg_w), bottom_c)
        shape(
            _ellipse(x1 + (0 if view_w > 0.8 else 0.25 * leg_w), yf - 0.015 * hb, leg_w * 0.62, 0.028 * hb, 10), shoe_c
        )
    # pelvis / skirt
    if o["bottom_style"] == 2:
        sk = yh + leg_len * rng.uniform(0.38, 0.48)
        shape(
            [(cx - hw / 2, yh - 0.03 * hb), (cx + hw / 2, yh - 0.03 * hb), (cx + hw * 0.72, sk), (cx - hw * 0.72, sk)],
            bottom_c,
        )
    else:
        shape(
            [
                (cx - hw / 2, yh - 0.03 * hb),
                (cx + hw / 2, yh - 0.03 * hb),
                (cx + hw / 2, yh + 0.06 * hb),
                (cx - hw / 2, yh + 0.06 * hb),
            ],
            bottom_c,
        )

    # arms: a shoulder point, a swing angle; sleeves cover the upper arm or all of it
    arm_w = max(sw * 0.22, 0.035 * hb)
    arm_len = torso_len * 1.05 + 0.02 * hb
    arms = []
    for side in (-1, 1):
        sx = cx + side * (sw / 2 - arm_w * 0.35)
        sy = ys + arm_w * 0.5
        if view_w > 0.8:  # frontal: arms hang slightly outwards
            ang = side * rng.uniform(0.03, 0.20)
        else:  # side view: swing forward/back, arms over the torso
            ang = side * rng.uniform(0.05, 0.35) * (1 if rng.random() < 0.5 else -1)
        ex, ey = sx + arm_len * math.sin(ang), sy + arm_len * math.cos(ang)
        arms.append((sx, sy, ex, ey))

    def draw_arm(sx, sy, ex, ey):
        if o["sleeve"] == 1:
            shape(_limb(sx, sy, ex, ey, arm_w, arm_w * 0.85), top_c)
        else:
            shape(_limb(sx, sy, ex, ey, arm_w * 0.85, arm_w * 0.75), skin)
            mx, my = sx + (ex - sx) * 0.38, sy + (ey - sy) * 0.38
            shape(_limb(sx, sy, mx, my, arm_w * 1.05, arm_w * 0.95), top_c)
        shape(_ellipse(ex, ey + arm_w * 0.2, arm_w * 0.5, arm_w * 0.6, 10), skin)

    side_view = view_w <= 0.8
    if side_view:
        draw_arm(*arms[0])

    # torso with its pattern
    torso = [
        (cx - sw / 2, ys + 0.02 * hb),
        (cx - sw / 2 + 0.03 * hb, ys),
        (cx + sw / 2 - 0.03 * hb, ys),
        (cx + sw / 2, ys + 0.02 * hb),
        (cx + hw / 2, yh + 0.005 * hb),
        (cx - hw / 2, yh + 0.005 * hb),
    ]
    shape(torso, top_c)

    def half_width(y):
        f = (y - ys) / max(torso_len, 1e-6)
        return (sw + (hw - sw) * f) / 2

    if o["pattern"] == 1:  # horizontal stripes
        band = torso_len / 8
        for k in range(1, 8, 2):
            y0, y1 = ys + k * band, ys + (k + 1) * band * 0.97
            shape(
                [
                    (cx - half_width(y0), y0),
                    (cx + half_width(y0), y0),
                    (cx + half_width(y1), y1),
                    (cx - half_width(y1), y1),
                ],
                accent_c,
            )
    elif o["pattern"] == 2 and not back:  # chest logo
        y0, y1 = ys + torso_len * 0.22, ys + torso_len * 0.48
        bw = sw * 0.22
        shape([(cx - bw, y0), (cx + bw, y0), (cx + bw, y1), (cx - bw, y1)], accent_c)
    elif o["pattern"] == 3:  # two-tone: right half
        shape(
            [
                (cx, ys),
                (cx + sw / 2 - 0.03 * hb, ys),
                (cx + sw / 2, ys + 0.02 * hb),
                (cx + hw / 2, yh + 0.005 * hb),
                (cx, yh + 0.005 * hb),
            ],
            accent_c,
        )

    if side_view:
        draw_arm(*arms[1])
    else:
        for arm in arms:
            draw_arm(*arm)

    # neck, head, hair
    shape(_limb(cx, hcy + head_h * 0.3, cx, ys + 0.01 * hb, head_w * 0.42, head_w * 0.45), skin)
    cap_rx = head_w / 2 * (1.04 + 0.14 * vol)
    if back and style != 2:
        shape(_ellipse(cx, hcy - head_h * 0.02, cap_rx, head_h / 2 * 1.04), hair)
        if style == 1:
            hl = ys + torso_len * (0.15 + 0.25 * vol)
            shape(
                [
                    (cx - head_w * 0.62, hcy),
                    (cx + head_w * 0.62, hcy),
                    (cx + head_w * 0.66, hl),
                    (cx - head_w * 0.66, hl),
                ],
                hair,
            )
        elif style == 4:
            shape(_ellipse(cx, hcy + head_h * 0.06, cap_rx * 1.15, head_h / 2 * 1.05), hair)
    else:
        if style == 4:  # bob: hair frames the face down to the chin
            shape(_ellipse(cx, hcy + head_h * 0.04, cap_rx * 1.18, head_h / 2 * 1.06), hair)
        if style == 2:  # buzz cut: a thin rim
            shape(_ellipse(cx, hcy - head_h * 0.03, head_w / 2 * 1.01, head_h / 2 * 1.0), hair)
        elif style != 4:
            shape(_ellipse(cx, hcy - head_h * (0.10 + 0.06 * vol), cap_rx, head_h / 2 * (0.72 + 0.15 * vol)), hair)
        shape(_ellipse(cx, hcy + head_h * 0.07, head_w / 2, head_h / 2 * 0.9), skin)
        if t["beard"]:  # lower face in the hair colour
            beard = [(-0.48, 0.16), (-0.30, 0.26), (0.30, 0.26), (0.48, 0.16), (0.28, 0.50), (-0.28, 0.50)]
            shape([(cx + head_w * bx, hcy + head_h * by) for bx, by in beard], hair)
        if style == 1:  # long hair falls over the shoulders in front
            hl = ys + torso_len * (0.15 + 0.25 * vol)
            for side in (-1, 1):
                shape(
                    [
                        (cx + side * head_w * 0.35, hcy - head_h * 0.2),
                        (cx + side * head_w * 0.62, hcy - head_h * 0.1),
                        (cx + side * head_w * 0.78, hl),
                        (cx + side * head_w * 0.45, hl),
                    ],
                    hair,
                )
    if style == 3:  # bun on top
        shape(_ellipse(cx, top - head_h * 0.08, head_w * 0.24, head_h * 0.2, 10), hair)
    return back


def _render(
    h: int, w: int, t: dict, o: dict, cam_name: str, bg: np.ndarray, rng: np.random.Generator, quality: int
) -> tuple[bytes, bool, bool]:
    cam = _CAMERA_SPECS[cam_name]
    off = int(rng.integers(0, w))
    back_img = bg[:, off : off + w] * rng.uniform(0.92, 1.08)
    back_img = back_img + rng.normal(0, 0.02, 3).astype(np.float32)
    canvas = np.clip(back_img * 255, 0, 255).astype(np.uint8)
    canvas = canvas.repeat(_SS, axis=0).repeat(_SS, axis=1)
    img = Image.fromarray(canvas, "RGB")
    draw = ImageDraw.Draw(img)
    back = _draw_person(draw, h, w, t, o, cam, rng)
    occluded = bool(rng.random() < cam["occl_p"])
    if occluded:  # something in front: a vertical pole or a low horizontal bar (desk, railing)
        grey = rng.uniform(0.15, 0.6)
        col = _colour(np.clip(grey + rng.normal(0, 0.06, 3) + np.array([0.06, 0.02, -0.04]), 0, 1))
        if rng.random() < 0.5:
            bw = rng.uniform(0.10, 0.22) * w
            x0 = rng.uniform(-0.05, 0.95) * w
            draw.rectangle([x0 * _SS, 0, (x0 + bw) * _SS, h * _SS], fill=col)
        else:
            y0 = rng.uniform(0.62, 0.82) * h
            draw.rectangle([0, y0 * _SS, w * _SS, h * _SS], fill=col)
    img = img.reduce(_SS)
    if cam["blur"] > 0:
        img = img.filter(ImageFilter.GaussianBlur(cam["blur"]))
    arr = np.asarray(img, dtype=np.float32)
    light = cam["gain"] * rng.uniform(0.88, 1.12)
    cast = np.asarray(cam["cast"], dtype=np.float32) * (1 + rng.normal(0, 0.025, 3))
    arr = arr * (light * cast).astype(np.float32) + rng.normal(0, 3.0, arr.shape).astype(np.float32)
    out = Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    out.save(buf, format="JPEG", quality=quality, subsampling=2, optimize=False, progressive=False)
    return buf.getvalue(), back, occluded


# ---------------------------------------------------------------- the data set
def generate(tmp: Path, c: SynthCfg):
    seed, h, w, n_img = c.seed, c.height, c.width, c.images_per_camera
    palette = _palette(seed, c.palette_size)
    backgrounds = _backgrounds(seed, h, w)
    splits = []
    next_pid = 1
    for split, count in (("train", c.train_ids), ("val", c.val_ids), ("test", c.test_ids)):
        splits.append((split, list(range(next_pid, next_pid + count))))
        next_pid += count
    width_pid = max(3, len(str(next_pid - 1)))
    width_n = max(3, len(str(n_img)))

    header = [
        "path",
        "split",
        "pid",
        "camera",
        "outfit",
        "slot",
        "back_view",
        "occluded",
        *TRAIT_COLUMNS,
        *OUTFIT_COLUMNS,
    ]
    rows = []
    counts = {"train": 0, "val": 0, "gallery": 0, "query_sc": 0, "query_cc": 0}
    for split, pids in splits:
        split_dir = tmp / "rgb" / split
        if split == "test":
            for cam in CAMERAS:
                (split_dir / cam).mkdir(parents=True)
        else:
            split_dir.mkdir(parents=True)
        for pid in pids:
            traits = _identity(seed, pid)
            outfits = _outfits(seed, pid, palette)
            trait_vals = _trait_values(traits)
            pid_name = f"{pid:0{width_pid}d}"
            for ci, cam in enumerate(CAMERAS):
                slot = 1 if cam == "C" else 0
                palette_index, outfit = outfits[slot]
                outfit_vals = _outfit_values(outfit)
                if split == "test":
                    folder = split_dir / cam / pid_name
                    role = {"A": "gallery", "B": "query_sc", "C": "query_cc"}[cam]
                else:
                    folder = split_dir / pid_name
                    role = split
                folder.mkdir(exist_ok=True)
                for n in range(1, n_img + 1):
                    rng = np.random.default_rng([seed, _TAG_IMG, pid, ci, n])
                    data, back, occluded = _render(h, w, traits, outfit, cam, backgrounds[cam], rng, c.jpeg_quality)
                    name = f"{n:0{width_n}d}.jpg"
                    if split != "test":
                        name = f"{cam}_{name}"
                    path = folder / name
                    path.write_bytes(data)
                    counts[role] += 1
                    rows.append(
                        [
                            path.relative_to(tmp).as_posix(),
                            split,
                            pid,
                            cam,
                            palette_index,
                            slot + 1,
                            int(back),
                            int(occluded),
                            *(f"{v:.6f}" for v in trait_vals),
                            *(f"{v:.6f}" for v in outfit_vals),
                        ]
                    )
    with open(tmp / SYNTH_META, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return rows, counts, splits
