"""A small procedural face renderer for the synthetic corpus.

The renderer draws a shaded frontal face (skin-tone ellipse with radial
shading, hair, neck and shoulders, dark eye sockets, eyes with lids, brows,
a nose shadow and a mouth) over a textured background. The face was designed
for OpenCV's ``haarcascade_frontalface_default.xml``: the light/dark layout of
a real face (bright forehead and cheeks, dark eye band and brows, bright nose
bridge, dark mouth) is what the cascade's Haar features test, so the drawn
face is detected without any photograph (see ``docs/synthetic.md`` for the
measured rate).

Expression follows two numbers in ``[-1, 1]``:

* ``valence``: mouth curvature (smile/frown), brow slant (inner ends lowered
  when negative), slightly wider mouth when positive;
* ``arousal``: mouth and eye openness and brow height.

``talk`` (0..1) opens the mouth with the syllables of the target's speech.
Besides the ``"frontal"`` pose the renderer draws the head turned away
(``"away"``: a profile seen from the side, which the frontal cascade does not
detect) and no head at all (``"absent"``: the person left the picture).

All randomness (skin and hair colours, background texture) is drawn once, in
the constructor, from the caller's :class:`numpy.random.Generator`; rendering
itself is deterministic.

The second half of the module draws *photographs* (the grey 48×48 FER+ faces
of the composite corpus) as a person in a scene: skin tints
(:func:`tint_face`), backgrounds (:func:`make_backdrop`), a moving head
(:class:`FacePose`, :func:`place_face`), occluders (:func:`draw_occluder`)
and lighting (:func:`apply_lighting`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

POSES = ("frontal", "away", "absent")
"""The head poses :meth:`FaceRenderer.render` can draw."""

# Canonical sprite geometry (pixels of the sprite, before scaling into the frame).
_SPRITE_W = 240
_SPRITE_H = 330
_FACE_C = (120.0, 130.0)  # face ellipse centre (x, y)
_FACE_AX = (62.0, 82.0)  # face ellipse half axes
_EYE_Y = 118.0
_EYE_DX = 27.0
_BROW_Y = 97.0
_NOSE_Y = 160.0
_MOUTH_Y = 182.0
_SHIFT = 4  # fixed-point bits for sub-pixel cv2 drawing
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class FaceParams:
    """What one video frame shows.

    ``valence``, ``arousal`` in [-1, 1] set the expression, ``talk`` in [0, 1]
    opens the mouth for speech, ``pose`` is one of :data:`POSES`.
    ``cx``, ``cy``: head (face ellipse) centre in frame pixels; ``scale``:
    sprite-to-frame scale (the face ellipse is ``164 * scale`` pixels high);
    ``roll``: in-plane head rotation in degrees; ``light_gain``: overall
    brightness factor; ``light_slope``: left-to-right brightness change
    (fraction of the gain across the frame width); ``flip``: the profile faces
    left instead of right (``"away"`` only).
    """

    valence: float = 0.0
    arousal: float = 0.0
    talk: float = 0.0
    cx: float = 160.0
    cy: float = 118.0
    scale: float = 0.68
    roll: float = 0.0
    pose: str = "frontal"
    light_gain: float = 1.0
    light_slope: float = 0.0
    flip: bool = False


_FEATURE_BOX = (62, 178, 68, 216)  # x0, x1, y0, y1 of the sprite region that expressions redraw


def _to_rgba(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Float RGB (0..255) and alpha (0..1) sprite → blurred uint8 RGBA sprite."""
    rgba = np.concatenate([rgb, alpha[..., None] * 255.0], axis=2)
    rgba = cv2.GaussianBlur(rgba, (5, 5), 1.1)
    return np.clip(np.round(rgba), 0, 255).astype(np.uint8)


def _c(rgb: tuple[float, ...] | np.ndarray) -> tuple[float, float, float, float]:
    """An opaque RGBA drawing colour for cv2 calls on RGBA sprites."""
    r, g, b = (float(c) for c in rgb)
    return (r, g, b, 255.0)


def _fix(v: float) -> int:
    """Fixed-point coordinate for cv2 drawing calls with ``shift=_SHIFT``."""
    return int(round(v * _ONE))


def _pts(xy: np.ndarray) -> np.ndarray:
    """(N, 2) float coordinates → int32 fixed-point polygon for cv2."""
    return np.round(np.asarray(xy, dtype=np.float64) * _ONE).astype(np.int32).reshape(-1, 1, 2)


def _ellipse_mask(shape: tuple[int, int], *, center: tuple[float, float], axes: tuple[float, float]) -> np.ndarray:
    """Float mask (1 inside) of an axis-aligned ellipse."""
    m = np.zeros(shape, np.uint8)
    cv2.ellipse(
        m, (_fix(center[0]), _fix(center[1])), (_fix(axes[0]), _fix(axes[1])), 0, 0, 360, 255, -1, cv2.LINE_AA, _SHIFT
    )
    return m.astype(np.float32) / 255.0


def _gauss_blob(shape: tuple[int, int], *, center: tuple[float, float], sigma: tuple[float, float]) -> np.ndarray:
    """Un-normalised 2-D Gaussian (peak 1)."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    return np.exp(-0.5 * (((xx - center[0]) / sigma[0]) ** 2 + ((yy - center[1]) / sigma[1]) ** 2))


def _smooth_noise(rng: np.random.Generator, *, height: int, width: int, cell: int) -> np.ndarray:
    """Smooth noise in about [-1, 1]: random values on a coarse grid, upsampled bicubically."""
    gh, gw = height // cell + 3, width // cell + 3
    coarse = rng.standard_normal((gh, gw)).astype(np.float32)
    up = cv2.resize(coarse, (gw * cell, gh * cell), interpolation=cv2.INTER_CUBIC)
    return np.clip(up[cell : cell + height, cell : cell + width] / 1.5, -1.0, 1.0)


def make_background(rng: np.random.Generator, *, width: int, height: int) -> np.ndarray:
    """A textured room-like background, (height, width, 3) uint8 RGB.

    A wall with a vertical colour gradient and blotchy texture, a door or
    shelf block, a picture frame and fine grain; no face-like structure.
    """
    wall = rng.uniform(110, 200, size=3).astype(np.float32)
    img = np.empty((height, width, 3), np.float32)
    grad = np.linspace(1.08, 0.85, height, dtype=np.float32)[:, None, None]
    img[:] = wall[None, None, :]
    img *= grad
    img += 18.0 * _smooth_noise(rng, height=height, width=width, cell=max(8, width // 10))[..., None]
    img += 6.0 * _smooth_noise(rng, height=height, width=width, cell=4)[..., None]
    # A shelf or door at one side, a framed picture on the other.
    side = int(rng.integers(0, 2))
    x0 = int(rng.uniform(0.0, 0.08) * width) if side == 0 else int(rng.uniform(0.78, 0.86) * width)
    x1 = x0 + int(rng.uniform(0.12, 0.2) * width)
    col = rng.uniform(50, 140, size=3)
    cv2.rectangle(img, (x0, int(0.15 * height)), (x1, height), tuple(float(c) for c in col), -1)
    for k in range(1, 4):
        y = int((0.15 + 0.22 * k) * height)
        cv2.line(img, (x0, y), (x1, y), tuple(float(c) * 0.6 for c in col), 3)
    px0 = int(rng.uniform(0.72, 0.8) * width) if side == 0 else int(rng.uniform(0.04, 0.12) * width)
    py0 = int(rng.uniform(0.08, 0.2) * height)
    pw, ph = int(0.13 * width), int(0.16 * height)
    cv2.rectangle(img, (px0, py0), (px0 + pw, py0 + ph), (60.0, 45.0, 30.0), -1)
    inner = rng.uniform(60, 220, size=3)
    cv2.rectangle(img, (px0 + 4, py0 + 4), (px0 + pw - 4, py0 + ph - 4), tuple(float(c) for c in inner), -1)
    return np.clip(img, 0, 255).astype(np.uint8)


class FaceRenderer:
    """Renders frames of one synthetic person in one room.

    ``rng`` chooses the person's appearance (skin, hair, clothes) and the
    background; :meth:`render` is then a pure function of :class:`FaceParams`.

    >>> r = FaceRenderer(width=320, height=240, rng=np.random.default_rng(0))
    >>> r.render(FaceParams()).shape
    (240, 320, 3)
    """

    def __init__(self, *, width: int, height: int, rng: np.random.Generator) -> None:
        self.width = int(width)
        self.height = int(height)
        self.background = make_background(rng, width=self.width, height=self.height)
        self._skin = np.array(
            [rng.uniform(200, 235), rng.uniform(150, 185), rng.uniform(115, 150)], dtype=np.float32
        )
        self._hair = rng.uniform(20, 80) * np.array([1.0, 0.8, 0.65], dtype=np.float32)
        self._shirt = rng.uniform(30, 200, size=3).astype(np.float32)
        self._iris = rng.uniform(40, 110) * np.array([0.7, 0.5, 0.35], dtype=np.float32)
        self._lip = np.array([rng.uniform(150, 185), rng.uniform(70, 95), rng.uniform(75, 95)], dtype=np.float32)
        self._frontal = _to_rgba(*self._build_frontal())
        self._away = _to_rgba(*self._build_away())
        self._away_flipped = np.ascontiguousarray(self._away[:, ::-1])
        self._xgrid = np.linspace(-0.5, 0.5, self.width, dtype=np.float32)

    # ------------------------------------------------------------------ sprites
    def _body(self, rgb: np.ndarray, alpha: np.ndarray) -> None:
        """Draw neck and shoulders (shared by both poses) into a sprite."""
        cx = _FACE_C[0]
        neck = np.array([[cx - 30, 170], [cx + 30, 170], [cx + 34, 262], [cx - 34, 262]])
        cv2.fillPoly(rgb, [_pts(neck)], tuple(float(c) * 0.78 for c in self._skin), cv2.LINE_AA, _SHIFT)
        cv2.fillPoly(alpha, [_pts(neck)], 1.0, cv2.LINE_AA, _SHIFT)
        cv2.ellipse(
            rgb, (_fix(cx), _fix(330)), (_fix(118), _fix(78)), 0, 180, 360, tuple(float(c) for c in self._shirt),
            -1, cv2.LINE_AA, _SHIFT,
        )
        cv2.ellipse(alpha, (_fix(cx), _fix(330)), (_fix(118), _fix(78)), 0, 180, 360, 1.0, -1, cv2.LINE_AA, _SHIFT)

    def _build_frontal(self) -> tuple[np.ndarray, np.ndarray]:
        """Static part of the frontal face: shaded skin, hair, sockets, nose, ears."""
        shape = (_SPRITE_H, _SPRITE_W)
        rgb = np.zeros(shape + (3,), np.float32)
        alpha = np.zeros(shape, np.float32)
        self._body(rgb, alpha)
        cx, cy = _FACE_C
        ax, ay = _FACE_AX
        # Hair behind and above the face.
        hair = _ellipse_mask(shape, center=(cx, cy - 14), axes=(ax + 9, ay + 6))
        rgb += (self._hair[None, None, :] - rgb) * hair[..., None]
        alpha = np.maximum(alpha, hair)
        # Ears.
        for sx in (-1, 1):
            ear = _ellipse_mask(shape, center=(cx + sx * (ax - 2), _EYE_Y + 22), axes=(9, 17))
            rgb += (self._skin[None, None, :] * 0.85 - rgb) * ear[..., None]
            alpha = np.maximum(alpha, ear)
        # Face ellipse with radial shading and light from above.
        face = _ellipse_mask(shape, center=(cx, cy), axes=(ax, ay))
        yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
        r2 = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2
        shade = 1.0 - 0.32 * np.clip(r2, 0, 1) ** 1.6 + 0.06 * np.clip((cy - yy) / ay, -1, 1)
        # Eye sockets, brow shadow, nose bridge highlight, nose and nostril shadow, chin shadow.
        for sx in (-1, 1):
            shade -= 0.30 * _gauss_blob(shape, center=(cx + sx * _EYE_DX, _EYE_Y), sigma=(17, 10))
            shade += 0.06 * _gauss_blob(shape, center=(cx + sx * 32, _NOSE_Y + 4), sigma=(14, 12))
            shade -= 0.16 * _gauss_blob(shape, center=(cx + sx * 9, _NOSE_Y - 8), sigma=(4, 14))
            shade -= 0.22 * _gauss_blob(shape, center=(cx + sx * 7, _NOSE_Y + 3), sigma=(4, 3))
        shade += 0.10 * _gauss_blob(shape, center=(cx, _NOSE_Y - 20), sigma=(5, 22))
        shade -= 0.16 * _gauss_blob(shape, center=(cx, _NOSE_Y + 9), sigma=(12, 3.5))
        shade -= 0.10 * _gauss_blob(shape, center=(cx, _MOUTH_Y + 22), sigma=(18, 5))
        skin = self._skin[None, None, :] * np.clip(shade, 0.3, 1.2)[..., None]
        rgb += (skin - rgb) * face[..., None]
        # Hair fringe over the forehead top.
        fringe = _ellipse_mask(shape, center=(cx, cy - ay + 4), axes=(ax - 4, 22))
        rgb += (self._hair[None, None, :] - rgb) * fringe[..., None]
        return rgb, np.clip(alpha + face, 0.0, 1.0)

    def _build_away(self) -> tuple[np.ndarray, np.ndarray]:
        """The head seen from the side, facing right: mostly hair, ear, nose and chin outline."""
        shape = (_SPRITE_H, _SPRITE_W)
        rgb = np.zeros(shape + (3,), np.float32)
        alpha = np.zeros(shape, np.float32)
        self._body(rgb, alpha)
        cx, cy = _FACE_C
        ax, ay = _FACE_AX
        head = _ellipse_mask(shape, center=(cx + 4, cy), axes=(ax + 4, ay))
        skin = self._skin * 0.92
        rgb += (skin[None, None, :] - rgb) * head[..., None]
        alpha = np.maximum(alpha, head)
        nose = np.array([[cx + ax - 2, _EYE_Y + 4], [cx + ax + 16, _NOSE_Y + 2], [cx + ax - 2, _NOSE_Y + 8]])
        cv2.fillPoly(rgb, [_pts(nose)], tuple(float(c) for c in skin), cv2.LINE_AA, _SHIFT)
        cv2.fillPoly(alpha, [_pts(nose)], 1.0, cv2.LINE_AA, _SHIFT)
        hair = _ellipse_mask(shape, center=(cx - 14, cy - 12), axes=(ax - 2, ay - 4))
        rgb += (self._hair[None, None, :] - rgb) * hair[..., None]
        ear = _ellipse_mask(shape, center=(cx + 6, _EYE_Y + 22), axes=(9, 16))
        rgb += (skin[None, None, :] * 0.8 - rgb) * ear[..., None]
        cv2.line(rgb, (_fix(cx + ax - 22), _fix(_EYE_Y)), (_fix(cx + ax - 8), _fix(_EYE_Y)), (40.0, 30.0, 30.0), 3,
                 cv2.LINE_AA, _SHIFT)
        cv2.line(rgb, (_fix(cx + ax - 24), _fix(_MOUTH_Y)), (_fix(cx + ax - 4), _fix(_MOUTH_Y - 2)),
                 tuple(float(c) for c in self._lip * 0.8), 3, cv2.LINE_AA, _SHIFT)
        return rgb, alpha

    # ------------------------------------------------------------- expression
    def _draw_expression(self, rgb: np.ndarray, p: FaceParams) -> None:
        """Draw eyes, brows and mouth for ``valence``/``arousal``/``talk`` into an RGBA sprite copy."""
        v = float(np.clip(p.valence, -1.0, 1.0))
        a = float(np.clip(p.arousal, -1.0, 1.0))
        talk = float(np.clip(p.talk, 0.0, 1.0))
        cx = _FACE_C[0]
        dark = _c((35.0, 25.0, 25.0))
        # Eyes: openness rises with arousal.
        eye_h = 5.0 + 2.5 * a
        for sx in (-1, 1):
            ex = cx + sx * _EYE_DX
            cv2.ellipse(rgb, (_fix(ex), _fix(_EYE_Y)), (_fix(12), _fix(eye_h)), 0, 0, 360, _c((235.0, 232.0, 225.0)),
                        -1, cv2.LINE_AA, _SHIFT)
            iris_r = min(6.0, eye_h + 0.5)
            cv2.circle(rgb, (_fix(ex), _fix(_EYE_Y)), _fix(iris_r), _c(self._iris), -1,
                       cv2.LINE_AA, _SHIFT)
            cv2.circle(rgb, (_fix(ex), _fix(_EYE_Y)), _fix(min(2.8, iris_r)), _c((10.0, 10.0, 10.0)), -1, cv2.LINE_AA,
                       _SHIFT)
            # Upper lid and lash line.
            cv2.ellipse(rgb, (_fix(ex), _fix(_EYE_Y)), (_fix(13), _fix(eye_h + 1)), 0, 180, 360, dark, 2,
                        cv2.LINE_AA, _SHIFT)
            # Brows: raised with arousal, inner end lowered with negative valence.
            lift = 4.0 * a + 1.5 * max(v, 0.0)
            inner_drop = -6.0 * v if v < 0 else -1.5 * v
            inner = (ex - sx * 14.0, _BROW_Y - lift + inner_drop)
            mid = (ex, _BROW_Y - lift - 3.0)
            outer = (ex + sx * 15.0, _BROW_Y - lift + 1.5)
            cv2.polylines(rgb, [_pts(np.array([inner, mid, outer]))], False, _c(self._hair * 0.7),
                          5, cv2.LINE_AA, _SHIFT)
        # Mouth: corner height follows valence, opening follows arousal and speech.
        half_w = 21.0 + 4.0 * v
        curve = 8.0 * v  # corners above the centre line when positive
        open_ = max(0.0, 1.5 + 3.5 * (a + 1.0) / 2.0 + 7.0 * talk)
        xs = np.linspace(-half_w, half_w, 17)
        u = xs / half_w
        base = _MOUTH_Y - curve * (u**2 - 0.35)
        upper = np.stack([cx + xs, base - 0.5 * open_ * (1 - u**2)], axis=1)
        lower = np.stack([cx + xs, base + 0.5 * open_ * (1 - u**2) + 3.5 * (1 - u**2)], axis=1)
        lip_col = _c(self._lip)
        outer_poly = np.concatenate(
            [np.stack([upper[:, 0], upper[:, 1] - 3.0 * (1 - u**2)], axis=1),
             np.stack([lower[::-1, 0], lower[::-1, 1] + 3.0 * (1 - u[::-1] ** 2)], axis=1)]
        )
        cv2.fillPoly(rgb, [_pts(outer_poly)], lip_col, cv2.LINE_AA, _SHIFT)
        inner_poly = np.concatenate([upper, lower[::-1]])
        cv2.fillPoly(rgb, [_pts(inner_poly)], _c((60.0, 20.0, 25.0)), cv2.LINE_AA, _SHIFT)
        cv2.polylines(rgb, [_pts(upper)], False, _c((90.0, 35.0, 40.0)), 2, cv2.LINE_AA, _SHIFT)

    # ------------------------------------------------------------------ frames
    def render(self, p: FaceParams) -> np.ndarray:
        """Render one frame, (height, width, 3) uint8 RGB."""
        if p.pose not in POSES:
            raise ValueError(f"unknown pose {p.pose!r}; expected one of {POSES}")
        frame = self.background.copy()
        if p.pose != "absent":
            if p.pose == "frontal":
                sprite = self._frontal.copy()
                self._draw_expression(sprite, p)
                x0, x1, y0, y1 = _FEATURE_BOX
                sprite[y0:y1, x0:x1] = cv2.GaussianBlur(sprite[y0:y1, x0:x1], (5, 5), 1.1)
            else:
                sprite = self._away_flipped if p.flip else self._away
            self._composite(frame, sprite, p)
        gain = p.light_gain * (1.0 + p.light_slope * self._xgrid)
        row = np.repeat(np.clip(np.round(gain * 128.0), 0, 255).astype(np.uint8)[None, :, None], 3, axis=2)
        gmap = cv2.resize(row, (self.width, self.height), interpolation=cv2.INTER_NEAREST)
        return cv2.multiply(frame, gmap, scale=1.0 / 128.0)

    def _composite(self, frame: np.ndarray, sprite: np.ndarray, p: FaceParams) -> None:
        """Warp the RGBA ``sprite`` by ``p``'s pose and alpha-blend it into ``frame`` in place."""
        m = cv2.getRotationMatrix2D(_FACE_C, p.roll, p.scale)
        m[0, 2] += p.cx - _FACE_C[0]
        m[1, 2] += p.cy - _FACE_C[1]
        corners = np.array([[0, 0, 1], [_SPRITE_W, 0, 1], [0, _SPRITE_H, 1], [_SPRITE_W, _SPRITE_H, 1]], np.float64)
        dst = corners @ m.T
        x0 = max(0, int(np.floor(dst[:, 0].min())))
        y0 = max(0, int(np.floor(dst[:, 1].min())))
        x1 = min(self.width, int(np.ceil(dst[:, 0].max())) + 1)
        y1 = min(self.height, int(np.ceil(dst[:, 1].max())) + 1)
        if x1 <= x0 or y1 <= y0:
            return
        m[0, 2] -= x0
        m[1, 2] -= y0
        warped = cv2.warpAffine(sprite, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        w1 = cv2.extractChannel(warped, 3).astype(np.float32) * (1.0 / 255.0)
        roi = frame[y0:y1, x0:x1]
        frame[y0:y1, x0:x1] = cv2.blendLinear(cv2.cvtColor(warped, cv2.COLOR_RGBA2RGB), roi, w1, 1.0 - w1)


def haar_detector() -> cv2.CascadeClassifier:
    """OpenCV's frontal face cascade (``haarcascade_frontalface_default.xml``)."""
    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    det = cv2.CascadeClassifier(path)
    if det.empty():
        raise RuntimeError(f"could not load the Haar cascade {path}")
    return det


def detect_faces(
    det: cv2.CascadeClassifier, frame: np.ndarray, *, detect_width: int = 320, min_face: float = 0.12,
    min_neighbors: int = 3,
) -> np.ndarray:
    """Run the cascade the way ``mmaffect prepare`` configures it by default.

    The RGB ``frame`` is downscaled to ``detect_width`` (never upscaled),
    converted to grey and searched for faces of at least ``min_face`` of the
    frame height. Returns (N, 4) boxes x, y, w, h in source pixels.
    """
    h, w = frame.shape[:2]
    f = min(1.0, detect_width / w)
    small = frame if f == 1.0 else cv2.resize(frame, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    side = max(1, int(round(min_face * small.shape[0])))
    boxes = det.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=min_neighbors, minSize=(side, side))
    if len(boxes) == 0:
        return np.zeros((0, 4), np.float64)
    return np.asarray(boxes, dtype=np.float64) / f


# --------------------------------------------------------------------------- photographed faces in a scene
# Used by the composite corpus (mmaffect.data.writers.composite) to draw grey 48×48 FER+ photographs as a talking
# face in a room: tinted skin, a varied background, slow head motion, occluders, blur and lighting.

SKIN_TONES: tuple[tuple[int, int, int], ...] = (
    (255, 224, 196), (241, 194, 167), (234, 192, 134), (224, 172, 138), (198, 134, 101),
    (181, 128, 94), (161, 102, 73), (141, 85, 60), (120, 78, 56),
)
"""RGB skin colours from light to dark; a grey face is tinted by one of them (per-channel gains)."""

BACKGROUND_KINDS = ("room", "gradient", "texture", "plain")
"""Kinds of scene background :func:`make_backdrop` draws."""


def skin_gains(tone: Sequence[float], *, jitter: np.ndarray | None = None) -> np.ndarray:
    """Per-channel gains (3,) that turn a grey photograph into skin of colour ``tone``.

    The grey level is multiplied per channel by ``tone / 235`` (so a light
    tone keeps the photograph's brightness and a dark one darkens it), times
    ``1 + jitter`` when given (small per-person variation).
    """
    gains = np.asarray(tone, dtype=np.float32) / 235.0
    if jitter is not None:
        gains = gains * (1.0 + np.asarray(jitter, dtype=np.float32))
    return np.clip(gains, 0.05, 1.2).astype(np.float32)


def tint_face(face: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """Grey face (H, W) uint8 → RGB (H, W, 3) uint8 with per-channel ``gains``."""
    rgb = face.astype(np.float32)[:, :, None] * np.asarray(gains, dtype=np.float32)[None, None, :]
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def make_backdrop(rng: np.random.Generator, *, kind: str, width: int, height: int) -> np.ndarray:
    """A scene background (height, width, 3) uint8 RGB of one of :data:`BACKGROUND_KINDS`.

    ``room``: :func:`make_background` (wall, shelf, picture); ``gradient``: a
    linear blend of two random colours in a random direction with fine grain;
    ``texture``: a random colour modulated by coarse and fine smooth noise
    (a curtain or a plastered wall); ``plain``: one random colour with grain.
    """
    if kind not in BACKGROUND_KINDS:
        raise ValueError(f"unknown background kind {kind!r}; expected one of {BACKGROUND_KINDS}")
    if kind == "room":
        return make_background(rng, width=width, height=height)
    base = _muted_colour(rng)
    img = np.empty((height, width, 3), np.float32)
    img[:] = base
    if kind == "gradient":
        other = _muted_colour(rng)
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        u = (xx / max(width - 1, 1) - 0.5) * np.cos(angle) + (yy / max(height - 1, 1) - 0.5) * np.sin(angle)
        w = np.clip(u / np.sqrt(0.5) + 0.5, 0.0, 1.0)[..., None]
        img = img * (1.0 - w) + other[None, None, :] * w
    elif kind == "texture":
        amp = rng.uniform(15, 40)
        img += amp * _smooth_noise(rng, height=height, width=width, cell=int(rng.integers(6, 24)))[..., None]
        stripes = rng.random() < 0.5  # folds of a curtain
        if stripes:
            period = rng.uniform(0.05, 0.15) * width
            xs = np.arange(width, dtype=np.float32)
            img *= (1.0 + 0.12 * np.sin(2 * np.pi * xs / period + rng.uniform(0, 2 * np.pi)))[None, :, None]
    img += rng.uniform(2, 7) * _smooth_noise(rng, height=height, width=width, cell=3)[..., None]
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _muted_colour(rng: np.random.Generator) -> np.ndarray:
    """A wall-like RGB colour: a grey level of 45-215 tinted by at most 35 % towards a random hue."""
    level = rng.uniform(45, 215)
    hue = rng.standard_normal(3)
    hue -= hue.mean()
    hue /= max(float(np.abs(hue).max()), 1e-6)
    return np.clip(level * (1.0 + rng.uniform(0.05, 0.35) * hue), 0, 255).astype(np.float32)


def feather_mask(size: int, *, feather: float) -> np.ndarray:
    """(size, size) float32 alpha of a square photograph whose border fades out over ``feather`` × size."""
    ramp = max(1.0, feather * size)
    d = np.minimum(np.arange(size), np.arange(size)[::-1]).astype(np.float32) + 0.5
    a = np.clip(d / ramp, 0.0, 1.0)
    a = a * a * (3 - 2 * a)  # smoothstep
    return np.outer(a, a).astype(np.float32)


@dataclass(frozen=True)
class FacePose:
    """Where a square face photograph lies in the frame: centre (px), side (px) and in-plane roll (degrees)."""

    cx: float
    cy: float
    size: float
    roll: float = 0.0

    def matrix(self, src_size: int) -> np.ndarray:
        """2×3 affine map from the ``src_size`` photograph's pixels to frame pixels."""
        c = (src_size - 1) / 2.0
        m = cv2.getRotationMatrix2D((c, c), self.roll, self.size / src_size)
        m[0, 2] += self.cx - c
        m[1, 2] += self.cy - c
        return m


@dataclass(frozen=True)
class Occluder:
    """Something in front of part of the face, in the face photograph's unit square (0–1 both ways).

    ``kind``: ``"hand"`` (a palm with four fingers, in ``color``) or ``"box"``
    (a rectangle: a mug, a phone, a microphone); ``box`` = x0, y0, x1, y1 of
    the covered region in face units; ``angle``: tilt of the fingers (degrees).
    """

    kind: str
    box: tuple[float, float, float, float]
    color: tuple[float, float, float]
    angle: float = 0.0


def _occluder_polygons(occ: Occluder) -> list[np.ndarray]:
    """Polygons (N, 2) in face units drawing ``occ``."""
    x0, y0, x1, y1 = occ.box
    if occ.kind == "box":
        return [np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)]
    if occ.kind != "hand":
        raise ValueError(f"unknown occluder kind {occ.kind!r}")
    w, h = x1 - x0, y1 - y0
    palm_c = (x0 + 0.5 * w, y0 + 0.62 * h)
    palm = cv2.ellipse2Poly((int(palm_c[0] * 1000), int(palm_c[1] * 1000)),
                            (int(0.5 * w * 1000), int(0.4 * h * 1000)), 0, 0, 360, 10).astype(np.float64) / 1000
    polys = [palm]
    t = np.deg2rad(occ.angle)
    for k in range(4):
        fx = x0 + (0.18 + 0.21 * k) * w
        half = 0.085 * w
        length = (0.55 + 0.12 * (1.5 - abs(k - 1.5))) * h
        base = np.array([fx, palm_c[1]])
        tip = base + length * np.array([np.sin(t), -np.cos(t)])
        side = half * np.array([np.cos(t), np.sin(t)])
        polys.append(np.array([base - side, tip - side, tip + side, base + side]))
    return polys


def draw_occluder(frame: np.ndarray, occ: Occluder, matrix: np.ndarray, *, src_size: int) -> None:
    """Draw ``occ`` (face units) into ``frame`` in place, mapped by the face's affine ``matrix``."""
    colour = tuple(float(c) for c in occ.color)
    shade = tuple(float(c) * 0.7 for c in occ.color)
    for poly in _occluder_polygons(occ):
        pts = np.c_[poly * (src_size - 1), np.ones(len(poly))] @ matrix.T
        cv2.fillPoly(frame, [_pts(pts)], colour, cv2.LINE_AA, _SHIFT)
        cv2.polylines(frame, [_pts(pts)], True, shade, 1, cv2.LINE_AA, _SHIFT)


def place_face(frame: np.ndarray, face: np.ndarray, alpha: np.ndarray, pose: FacePose) -> np.ndarray:
    """Blend the RGB photograph ``face`` (S, S, 3) with ``alpha`` (S, S) into ``frame`` at ``pose``; the 2×3 map.

    Bicubic warp; ``frame`` is changed in place.
    """
    s = face.shape[0]
    m = pose.matrix(s)
    h, w = frame.shape[:2]
    warped = cv2.warpAffine(face, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    a = cv2.warpAffine(alpha, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    frame[:] = cv2.blendLinear(warped, frame, a, 1.0 - a)
    return m


def apply_lighting(frame: np.ndarray, *, brightness: float, contrast: float, slope: float = 0.0) -> np.ndarray:
    """``frame`` with contrast (around grey 128), brightness and a left-to-right light ``slope`` applied."""
    h, w = frame.shape[:2]
    gain = brightness * (1.0 + slope * np.linspace(-0.5, 0.5, w, dtype=np.float32))[None, :, None]
    out = (frame.astype(np.float32) - 128.0) * contrast + 128.0
    return np.clip(np.round(out * gain), 0, 255).astype(np.uint8)
