// Rendering of the synthetic face scenes (see synthetic.ts for what the data set is): a scene is drawn
// from a seeded stream in normalised coordinates, then rasterised at any size with soft-edged ellipses,
// a low-frequency background texture and a simple lighting model.
import { resizePlanar } from "./image.js";
import { hashKey, mix32, Rng } from "./random.js";
export type RGB = [number, number, number];

export const lerp = (a: number, b: number, t: number): number => a + (b - a) * t;
export const clamp01 = (x: number): number => (x < 0 ? 0 : x > 1 ? 1 : x);
const mixRGB = (a: RGB, b: RGB, t: number): RGB => [lerp(a[0], b[0], t), lerp(a[1], b[1], t), lerp(a[2], b[2], t)];
export const scaleRGB = (a: RGB, f: number): RGB => [a[0] * f, a[1] * f, a[2] * f];

function hsv(h: number, s: number, v: number): RGB {
  const i = Math.floor(h * 6);
  const f = h * 6 - i;
  const p = v * (1 - s), q = v * (1 - f * s), t = v * (1 - (1 - f) * s);
  switch (((i % 6) + 6) % 6) {
    case 0: return [v, t, p];
    case 1: return [q, v, p];
    case 2: return [p, v, t];
    case 3: return [p, q, v];
    case 4: return [t, p, v];
    default: return [v, p, q];
  }
}

// Ordered light to dark; identities interpolate along it so all tones in between occur.
const SKIN: RGB[] = [
  [0.98, 0.87, 0.79], [0.95, 0.79, 0.68], [0.88, 0.69, 0.56], [0.80, 0.59, 0.44],
  [0.66, 0.46, 0.32], [0.50, 0.34, 0.23], [0.36, 0.24, 0.17], [0.26, 0.17, 0.12],
];
const HAIR: RGB[] = [
  [0.06, 0.05, 0.05], [0.10, 0.07, 0.05], [0.20, 0.13, 0.08], [0.36, 0.24, 0.14],
  [0.72, 0.58, 0.36], [0.52, 0.24, 0.11], [0.55, 0.54, 0.52], [0.84, 0.83, 0.80],
];
const IRIS: RGB[] = [
  [0.30, 0.18, 0.09], [0.16, 0.10, 0.07], [0.28, 0.44, 0.62], [0.32, 0.44, 0.28], [0.45, 0.34, 0.18],
];

function paletteAt(p: readonly RGB[], t: number): RGB {
  const x = clamp01(t) * (p.length - 1);
  const i = Math.min(p.length - 2, Math.floor(x));
  return mixRGB(p[i], p[i + 1], x - i);
}

/** Value noise on an integer lattice, keyed; returns [0,1). */
function vnoise(key: number, x: number, y: number): number {
  const xi = Math.floor(x), yi = Math.floor(y);
  let fx = x - xi, fy = y - yi;
  fx = fx * fx * (3 - 2 * fx);
  fy = fy * fy * (3 - 2 * fy);
  // No inner closure: this runs per pixel and per octave, and tsx wraps every closure it creates.
  const kx0 = mix32(key ^ Math.imul(xi, 0x27d4eb2d)), kx1 = mix32(key ^ Math.imul(xi + 1, 0x27d4eb2d));
  const y0 = Math.imul(yi, 0x165667b1), y1 = Math.imul(yi + 1, 0x165667b1);
  const a = mix32(kx0 ^ y0), b = mix32(kx1 ^ y0), c = mix32(kx0 ^ y1), d = mix32(kx1 ^ y1);
  return lerp(lerp(a, b, fx), lerp(c, d, fx), fy) / 4294967296;
}

function fbm(key: number, x: number, y: number, octaves: number): number {
  let sum = 0, amp = 0.5, norm = 0, f = 1;
  for (let o = 0; o < octaves; o++) {
    sum += amp * vnoise(key + o * 0x9e37, x * f, y * f);
    norm += amp;
    amp *= 0.5;
    f *= 2.03;
  }
  return sum / norm;
}

/** Planar RGB float canvas plus the face's lighting layers (applied once features are painted). */
export class Canvas {
  readonly n: number;
  readonly rgb: Float32Array;
  readonly shade: Float32Array;
  readonly spec: Float32Array;
  constructor(readonly S: number) {
    this.n = S * S;
    this.rgb = new Float32Array(3 * this.n);
    this.shade = new Float32Array(this.n).fill(1);
    this.spec = new Float32Array(this.n);
  }
  over(p: number, c: RGB, a: number): void {
    const { rgb, n } = this;
    rgb[p] += (c[0] - rgb[p]) * a;
    rgb[n + p] += (c[1] - rgb[n + p]) * a;
    rgb[2 * n + p] += (c[2] - rgb[2 * n + p]) * a;
  }
  mul(p: number, f: RGB, a: number): void {
    const { rgb, n } = this;
    rgb[p] *= 1 + (f[0] - 1) * a;
    rgb[n + p] *= 1 + (f[1] - 1) * a;
    rgb[2 * n + p] *= 1 + (f[2] - 1) * a;
  }
  applyLighting(): void {
    const { rgb, n, shade, spec } = this;
    for (let p = 0; p < n; p++) {
      const s = shade[p], h = spec[p];
      rgb[p] = rgb[p] * s + h;
      rgb[n + p] = rgb[n + p] * s + h;
      rgb[2 * n + p] = rgb[2 * n + p] * s + h;
    }
  }
}

interface Ell {
  cx: number; cy: number; rx: number; ry: number; rot: number;
  /** bends the ellipse into an arc: local y is measured from the parabola y = bend * x^2 */
  bend?: number;
}

/** Paint callback: pixel index, ellipse-local unit coordinates, coverage in (0,1]. */
type Paint = (p: number, ex: number, ey: number, cov: number) => void;

/**
 * Visit the pixels an ellipse covers, with analytic antialiasing: coverage ramps over `soft` (at least one
 * pixel) around the boundary, using the first-order distance estimate (f-1)/|grad f|, so edges look the
 * same at every resolution.
 */
function drawEllipse(S: number, e: Ell, soft: number, paint: Paint): void {
  const px = 1 / S;
  const edge = Math.max(px, soft);
  const smooth = soft > px;
  const c = Math.cos(e.rot), s = Math.sin(e.rot);
  const bend = e.bend ?? 0;
  const bendExtent = Math.abs(bend) * e.rx * e.rx;
  const hx = Math.hypot(e.rx * c, e.ry * s) + edge + bendExtent;
  const hy = Math.hypot(e.rx * s, e.ry * c) + edge + bendExtent;
  const x0 = Math.max(0, Math.floor((e.cx - hx) * S));
  const x1 = Math.min(S - 1, Math.ceil((e.cx + hx) * S));
  const y0 = Math.max(0, Math.floor((e.cy - hy) * S));
  const y1 = Math.min(S - 1, Math.ceil((e.cy + hy) * S));
  const irx = 1 / e.rx, iry = 1 / e.ry;
  const minR = Math.min(e.rx, e.ry);
  for (let y = y0; y <= y1; y++) {
    const dy = (y + 0.5) * px - e.cy;
    for (let x = x0; x <= x1; x++) {
      const dx = (x + 0.5) * px - e.cx;
      const lx = dx * c + dy * s;
      const ly = -dx * s + dy * c - bend * lx * lx;
      const ex = lx * irx, ey = ly * iry;
      const r = Math.sqrt(ex * ex + ey * ey);
      let d: number;
      if (r < 1e-9) d = -minR;
      else {
        const g = Math.sqrt(ex * ex * irx * irx + ey * ey * iry * iry);
        d = ((r - 1) * r) / g;
      }
      let cov = 0.5 - d / edge;
      if (cov <= 0) continue;
      if (cov > 1) cov = 1;
      else if (smooth) cov = cov * cov * (3 - 2 * cov);
      paint(y * S + x, ex, ey, cov);
    }
  }
}

/** The face's own frame: feature positions are given in units of the half-width a and half-height b. */
export interface FaceFrame {
  cx: number; cy: number; a: number; b: number; rot: number;
}

function facePoint(f: FaceFrame, fx: number, fy: number): [number, number] {
  const c = Math.cos(f.rot), s = Math.sin(f.rot);
  const x = fx * f.a, y = fy * f.b;
  return [f.cx + x * c - y * s, f.cy + x * s + y * c];
}

interface Scene {
  frame: FaceFrame;
  jaw: number;
  skin: RGB;
  hair: RGB;
  hairStyle: number; // 0 short, 1 long, 2 very short/bald, 3 bun/top
  hairline: number; // fy of the hairline
  iris: RGB;
  eyeY: number; eyeX: number; eyeW: number; eyeH: number; gaze: number;
  browTilt: number; browThick: number; browArch: number;
  noseLen: number; noseW: number;
  mouthY: number; mouthW: number; mouthOpen: number; smile: number; lip: RGB;
  blush: number;
  beard: number;
  glasses: boolean;
  light: [number, number, number];
  ambient: number;
  bg: { kind: number; a: RGB; b: RGB; angle: number; tex: number; texScale: number; key: number; blobs: Array<{ e: Ell; c: RGB }> };
  clothes: RGB;
  texKey: number;
}

export function normalize3(v: [number, number, number]): [number, number, number] {
  const l = Math.hypot(v[0], v[1], v[2]);
  return [v[0] / l, v[1] / l, v[2] / l];
}

export function drawScene(r: Rng): Scene {
  const a = r.range(0.19, 0.245);
  const frame: FaceFrame = {
    cx: 0.5 + r.range(-0.05, 0.05),
    cy: 0.5 + r.range(-0.03, 0.05),
    a,
    b: a * r.range(1.22, 1.45),
    rot: r.range(-0.16, 0.16),
  };
  const skinT = r.float();
  const skin0 = paletteAt(SKIN, skinT);
  // Per-identity undertone: a little redder or yellower.
  const under = r.range(-0.03, 0.03);
  const skin: RGB = [skin0[0] + under, skin0[1], skin0[2] - under];
  // Dark hair is most common; fair skin makes light hair more likely.
  const hairT = r.bool(0.55) ? r.range(0, 0.3) : r.range(0, 1) * (0.6 + 0.4 * (1 - skinT));
  const hair = r.bool(0.08) ? HAIR[5] : paletteAt(HAIR, hairT);
  const bgKind = r.int(3);
  const bgA = hsv(r.float(), r.range(0.05, 0.5), r.range(0.2, 0.95));
  const bgB = mixRGB(bgA, hsv(r.float(), r.range(0.05, 0.5), r.range(0.15, 0.95)), r.range(0.3, 1));
  const blobs: Array<{ e: Ell; c: RGB }> = [];
  const nBlobs = bgKind === 2 ? 2 + r.int(4) : 0;
  for (let k = 0; k < nBlobs; k++) {
    blobs.push({
      e: { cx: r.float(), cy: r.float(), rx: r.range(0.05, 0.25), ry: r.range(0.05, 0.25), rot: r.range(0, Math.PI) },
      c: hsv(r.float(), r.range(0.1, 0.6), r.range(0.3, 1)),
    });
  }
  const light = normalize3([r.range(-0.8, 0.8), r.range(-0.7, 0.3), r.range(0.6, 1.2)]);
  return {
    frame,
    jaw: r.range(0.08, 0.38),
    skin,
    hair,
    hairStyle: r.int(4),
    hairline: -r.range(0.55, 0.78),
    iris: r.pick(IRIS),
    eyeY: -r.range(0.05, 0.18),
    eyeX: r.range(0.36, 0.46),
    eyeW: r.range(0.17, 0.23),
    eyeH: r.range(0.35, 0.55),
    gaze: r.range(-0.25, 0.25),
    browTilt: r.range(-0.18, 0.18),
    browThick: r.range(0.025, 0.06),
    browArch: r.range(0.5, 3),
    noseLen: r.range(0.3, 0.45),
    noseW: r.range(0.17, 0.27),
    mouthY: r.range(0.55, 0.68),
    mouthW: r.range(0.27, 0.4),
    mouthOpen: r.bool(0.25) ? r.range(0.02, 0.06) : 0,
    smile: r.range(-0.6, 2.2),
    lip: mixRGB(skin, [0.72, 0.3, 0.32], r.range(0.25, 0.5)),
    blush: r.range(0, 0.18),
    beard: r.bool(0.18) ? r.range(0.25, 0.8) : 0,
    glasses: r.bool(0.12),
    light,
    ambient: r.range(0.35, 0.6),
    bg: { kind: bgKind, a: bgA, b: bgB, angle: r.range(0, 2 * Math.PI), tex: r.range(0, 0.12), texScale: r.range(3, 14), key: r.u32(), blobs },
    clothes: hsv(r.float(), r.range(0.1, 0.8), r.range(0.1, 0.9)),
    texKey: r.u32(),
  };
}

// The background texture is low-frequency (3-14 cells across the image), so above this size it is
// evaluated on a coarse grid and upsampled: the same look at a fraction of the cost.
const TEX_GRID = 64;

function backgroundTexture(sc: Scene, S: number): Float32Array | null {
  const bg = sc.bg;
  if (bg.tex <= 0) return null;
  const G = Math.min(S, TEX_GRID);
  const t = new Float32Array(G * G);
  for (let y = 0; y < G; y++) {
    const v = (y + 0.5) / G;
    for (let x = 0; x < G; x++) {
      const u = (x + 0.5) / G;
      t[y * G + x] = (fbm(bg.key, u * bg.texScale, v * bg.texScale, 3) - 0.5) * 2 * bg.tex;
    }
  }
  return G === S ? t : resizePlanar(t, 1, G, G, S, S);
}

function renderBackground(cv: Canvas, sc: Scene): void {
  const { S, rgb, n } = cv;
  const bg = sc.bg;
  const ca = Math.cos(bg.angle), sa = Math.sin(bg.angle);
  const tex = backgroundTexture(sc, S);
  for (let y = 0; y < S; y++) {
    const v = (y + 0.5) / S;
    for (let x = 0; x < S; x++) {
      const u = (x + 0.5) / S;
      let t: number;
      if (bg.kind === 1) t = clamp01(Math.hypot(u - 0.5, v - 0.45) * 1.6);
      else t = clamp01(0.5 + (u - 0.5) * ca + (v - 0.5) * sa);
      const p = y * S + x;
      const tx = tex ? tex[p] : 0;
      rgb[p] = lerp(bg.a[0], bg.b[0], t) + tx;
      rgb[n + p] = lerp(bg.a[1], bg.b[1], t) + tx;
      rgb[2 * n + p] = lerp(bg.a[2], bg.b[2], t) + tx;
    }
  }
  for (const bl of bg.blobs) drawEllipse(S, bl.e, 0.06, (p, _ex, _ey, cov) => cv.over(p, bl.c, cov * 0.6));
}

/**
 * Render a face scene. `faceOnly` skips what a swap never takes from the donor (background, clothes, neck,
 * long hair behind the head): the donor is only sampled inside the target's inner-face mask.
 */
export function renderFaceScene(sc: Scene, S: number, faceOnly = false): Canvas {
  const cv = new Canvas(S);
  const f = sc.frame;
  const px = 1 / S;
  if (faceOnly) {
    // Where a misaligned warp samples past the donor's face, it should find skin-ish shadow, not a flat grey.
    for (let c = 0; c < 3; c++) cv.rgb.fill(sc.skin[c] * 0.7, c * cv.n, (c + 1) * cv.n);
  }
  else renderBackground(cv, sc);

  const [lx, ly, lz] = sc.light;
  const hairTex = (p: number, ex: number, ey: number): number => {
    const ang = Math.atan2(ey + 0.3, ex);
    const strands = Math.sin(ang * 90 + 9 * vnoise(sc.texKey, ex * 5, ey * 5));
    return 0.86 + 0.09 * strands + 0.1 * (vnoise(sc.texKey + 5, ex * 3, ey * 3) - 0.5);
  };

  // Shoulders and clothes.
  const [sx, sy] = facePoint(f, 0, 2.05);
  if (!faceOnly) drawEllipse(S, { cx: sx, cy: sy + 0.06, rx: f.a * 2.3, ry: f.b * 1.0, rot: f.rot * 0.3 }, px, (p, ex, ey, cov) => {
    const fold = 0.85 + 0.15 * Math.cos(ex * 5 + ey * 2);
    cv.over(p, scaleRGB(sc.clothes, fold * (0.75 + 0.25 * clamp01(0.5 - ex * lx))), cov);
  });

  // Long hair falls behind the neck and shoulders.
  if (sc.hairStyle === 1 && !faceOnly) {
    const [hx, hy] = facePoint(f, 0, 0.35);
    drawEllipse(S, { cx: hx, cy: hy, rx: f.a * 1.42, ry: f.b * 1.45, rot: f.rot }, 1.5 * px, (p, ex, ey, cov) =>
      cv.over(p, scaleRGB(sc.hair, hairTex(p, ex, ey)), cov));
  }

  // Neck, darker under the chin.
  const [nx, ny] = facePoint(f, 0, 1.05);
  if (!faceOnly) drawEllipse(S, { cx: nx, cy: ny, rx: f.a * 0.58, ry: f.b * 0.62, rot: f.rot }, px, (p, ex, ey, cov) => {
    const s = 0.62 + 0.25 * clamp01(ey + 0.4) - 0.12 * ex * lx;
    cv.over(p, scaleRGB(sc.skin, s), cov);
  });

  // Hair volume behind the head.
  if (sc.hairStyle !== 2) {
    const vol = sc.hairStyle === 3 ? 1.08 : 1.14;
    const [hx, hy] = facePoint(f, 0, -0.3);
    drawEllipse(S, { cx: hx, cy: hy, rx: f.a * vol * 1.06, ry: f.b * 0.92, rot: f.rot }, 1.5 * px, (p, ex, ey, cov) =>
      cv.over(p, scaleRGB(sc.hair, hairTex(p, ex, ey)), cov));
    if (sc.hairStyle === 3) {
      const [bx, by] = facePoint(f, 0.1, -1.12);
      drawEllipse(S, { cx: bx, cy: by, rx: f.a * 0.5, ry: f.a * 0.42, rot: 0 }, 1.5 * px, (p, ex, ey, cov) =>
        cv.over(p, scaleRGB(sc.hair, hairTex(p, ex, ey)), cov));
    }
  }

  // Ears.
  for (const side of [-1, 1]) {
    const [ex0, ey0] = facePoint(f, side * 0.97, sc.eyeY + 0.12);
    drawEllipse(S, { cx: ex0, cy: ey0, rx: f.a * 0.17, ry: f.b * 0.2, rot: f.rot + side * 0.2 }, px, (p, ex, _ey, cov) => {
      const s = 0.8 - 0.15 * Math.abs(ex) + 0.1 * side * lx;
      cv.over(p, scaleRGB(sc.skin, s), cov);
    });
  }

  // Face: an ellipse whose lower half narrows into a jaw. Shading from an ellipsoid normal, written into
  // the shade/spec layers so that features painted later are lit consistently.
  {
    const c = Math.cos(f.rot), s = Math.sin(f.rot);
    const hx = f.a * 1.05 + 2 * px, hy = f.b * 1.05 + 2 * px;
    const ext = Math.max(hx, hy);
    const x0 = Math.max(0, Math.floor((f.cx - ext) * S)), x1 = Math.min(S - 1, Math.ceil((f.cx + ext) * S));
    const y0 = Math.max(0, Math.floor((f.cy - ext) * S)), y1 = Math.min(S - 1, Math.ceil((f.cy + ext) * S));
    const hvx = lx, hvy = ly, hvz = lz + 1;
    const hl = Math.hypot(hvx, hvy, hvz);
    for (let y = y0; y <= y1; y++) {
      const dy = (y + 0.5) * px - f.cy;
      for (let x = x0; x <= x1; x++) {
        const dx = (x + 0.5) * px - f.cx;
        const qx = dx * c + dy * s, qy = -dx * s + dy * c;
        const fy = qy / f.b;
        const t = fy > 0 ? fy : 0;
        const aw = f.a * (1 - sc.jaw * t * t);
        const ex = qx / aw;
        const r = Math.sqrt(ex * ex + fy * fy);
        const d = (r - 1) * Math.min(aw, f.b);
        let cov = 0.5 - d / px;
        if (cov <= 0) continue;
        if (cov > 1) cov = 1;
        const p = y * S + x;
        const nz = Math.sqrt(Math.max(0, 1 - Math.min(1, r * r)));
        const nxv = ex * 0.9, nyv = fy * 0.9;
        const ndl = Math.max(0, nxv * lx + nyv * ly + nz * lz);
        const tex = 1 + (vnoise(sc.texKey + 7, ex * 9, fy * 9) - 0.5) * 0.06;
        cv.over(p, scaleRGB(sc.skin, tex), cov);
        const shadeV = sc.ambient + (1 - sc.ambient) * ndl * 1.1;
        cv.shade[p] = lerp(cv.shade[p], shadeV, cov);
        const ndh = Math.max(0, (nxv * hvx + nyv * hvy + nz * hvz) / hl);
        cv.spec[p] = lerp(cv.spec[p], 0.12 * Math.pow(ndh, 24), cov);
      }
    }
  }

  // Cheek blush.
  if (sc.blush > 0) {
    for (const side of [-1, 1]) {
      const [bx, by] = facePoint(f, side * 0.48, 0.3);
      drawEllipse(S, { cx: bx, cy: by, rx: f.a * 0.28, ry: f.a * 0.2, rot: f.rot }, f.a * 0.2, (p, _ex, _ey, cov) =>
        cv.over(p, [0.85, 0.35, 0.35], cov * sc.blush));
    }
  }

  // Beard / stubble on the lower face.
  if (sc.beard > 0) {
    const [bx, by] = facePoint(f, 0, 0.72);
    drawEllipse(S, { cx: bx, cy: by, rx: f.a * 0.85, ry: f.b * 0.42, rot: f.rot, bend: -2 }, f.a * 0.12, (p, ex, ey, cov) => {
      const grain = 0.6 + 0.4 * vnoise(sc.texKey + 3, ex * 40, ey * 40);
      cv.over(p, sc.hair, cov * sc.beard * grain);
    });
  }

  // Eyes: socket shadow, white, iris, pupil, lash line, catchlight.
  for (const side of [-1, 1]) {
    const [ex0, ey0] = facePoint(f, side * sc.eyeX, sc.eyeY);
    const rx = f.a * sc.eyeW, ry = rx * sc.eyeH;
    drawEllipse(S, { cx: ex0, cy: ey0 - ry * 0.3, rx: rx * 1.5, ry: ry * 2.2, rot: f.rot }, rx * 0.6, (p, _ex, _ey, cov) =>
      cv.mul(p, [0.82, 0.78, 0.78], cov));
    drawEllipse(S, { cx: ex0, cy: ey0, rx, ry, rot: f.rot, bend: 0.25 / rx }, px, (p, ex, ey, cov) => {
      cv.over(p, [0.9, 0.88, 0.85], cov);
      // The iris is wider than the eye opening, so the lids hide its top and bottom.
      const ix = ex * rx - sc.gaze * rx * 0.5, iy = ey * ry + ry * 0.1;
      const ir = rx * 0.44;
      const dist = Math.hypot(ix, iy);
      const irisCov = clamp01(0.5 - (dist - ir) / px);
      if (irisCov > 0) {
        const irisCol = scaleRGB(sc.iris, 0.75 + 0.4 * clamp01(iy / ir + 0.5));
        cv.over(p, irisCol, cov * irisCov);
        const pupilCov = clamp01(0.5 - (dist - ir * 0.42) / px);
        cv.over(p, [0.03, 0.03, 0.03], cov * pupilCov);
        const hlCov = clamp01(0.5 - (Math.hypot(ix + ir * 0.3, iy + ir * 0.3) - ir * 0.16) / px);
        cv.over(p, [1, 1, 1], cov * hlCov * 0.8);
      }
      // Upper lid line and its shadow.
      if (ey < -0.3) cv.over(p, [0.08, 0.06, 0.05], cov * clamp01((-0.3 - ey) * 2.5));
    });
  }

  // Brows.
  for (const side of [-1, 1]) {
    const [bx, by] = facePoint(f, side * sc.eyeX * 1.02, sc.eyeY - 0.17);
    const rx = f.a * 0.26;
    drawEllipse(S, { cx: bx, cy: by, rx, ry: f.b * sc.browThick, rot: f.rot + side * sc.browTilt, bend: -sc.browArch }, px,
      (p, ex, ey, cov) => {
        const grain = 0.75 + 0.25 * vnoise(sc.texKey + 11, ex * 12, ey * 3);
        const thin = 1 - 0.5 * clamp01(Math.abs(ex) - 0.3);
        cv.over(p, scaleRGB(sc.hair, 0.8), cov * grain * thin * 0.95);
      });
  }

  // Nose: side shadow away from the light, bottom shadow, tip highlight, nostrils.
  {
    const side = lx >= 0 ? -1 : 1;
    const [sx0, sy0] = facePoint(f, side * sc.noseW * 0.5, sc.eyeY + sc.noseLen * 0.55);
    drawEllipse(S, { cx: sx0, cy: sy0, rx: f.a * 0.07, ry: f.b * sc.noseLen * 0.55, rot: f.rot - side * 0.08 }, f.a * 0.08,
      (p, _ex, _ey, cov) => cv.mul(p, [0.8, 0.77, 0.77], cov * (0.5 + 0.6 * Math.abs(lx))));
    const [bx, by] = facePoint(f, 0, sc.eyeY + sc.noseLen + 0.04);
    drawEllipse(S, { cx: bx, cy: by, rx: f.a * sc.noseW, ry: f.b * 0.05, rot: f.rot }, f.a * 0.06, (p, _ex, _ey, cov) =>
      cv.mul(p, [0.78, 0.74, 0.74], cov));
    const [tx, ty] = facePoint(f, -side * 0.03, sc.eyeY + sc.noseLen - 0.02);
    drawEllipse(S, { cx: tx, cy: ty, rx: f.a * 0.07, ry: f.a * 0.06, rot: 0 }, f.a * 0.06, (p, _ex, _ey, cov) =>
      cv.over(p, mixRGB(sc.skin, [1, 1, 1], 0.3), cov * 0.5));
    for (const s2 of [-1, 1]) {
      const [nx2, ny2] = facePoint(f, s2 * sc.noseW * 0.45, sc.eyeY + sc.noseLen + 0.01);
      drawEllipse(S, { cx: nx2, cy: ny2, rx: f.a * 0.055, ry: f.a * 0.03, rot: f.rot + s2 * 0.4 }, px * 1.2, (p, _ex, _ey, cov) =>
        cv.over(p, scaleRGB(sc.skin, 0.35), cov * 0.85));
    }
  }

  // Mouth: lips, then the opening or the line between them, bent by the smile.
  {
    const [mx, my] = facePoint(f, 0, sc.mouthY);
    const rx = f.a * sc.mouthW;
    const bend = sc.smile / (f.a * 2);
    const lipH = f.b * (0.07 + sc.mouthOpen);
    drawEllipse(S, { cx: mx, cy: my, rx, ry: lipH, rot: f.rot, bend }, px, (p, _ex, ey, cov) =>
      cv.over(p, scaleRGB(sc.lip, ey < 0 ? 0.85 : 1.05), cov * 0.9));
    if (sc.mouthOpen > 0) {
      drawEllipse(S, { cx: mx, cy: my, rx: rx * 0.8, ry: f.b * sc.mouthOpen, rot: f.rot, bend }, px, (p, _ex, ey, cov) =>
        cv.over(p, ey < -0.2 ? [0.9, 0.88, 0.82] : [0.15, 0.05, 0.05], cov));
    } else {
      drawEllipse(S, { cx: mx, cy: my, rx: rx * 0.95, ry: Math.max(f.b * 0.01, px * 0.5), rot: f.rot, bend }, px, (p, _ex, _ey, cov) =>
        cv.over(p, scaleRGB(sc.lip, 0.35), cov * 0.85));
    }
    const [cx2, cy2] = facePoint(f, 0, sc.mouthY + 0.17);
    drawEllipse(S, { cx: cx2, cy: cy2, rx: rx * 0.5, ry: f.b * 0.04, rot: f.rot }, f.a * 0.05, (p, _ex, _ey, cov) =>
      cv.mul(p, [0.88, 0.86, 0.86], cov));
  }

  // Fringe / hairline over the forehead.
  if (sc.hairStyle !== 2) {
    const top = -1.0;
    const bottom = sc.hairline;
    const [hx, hy] = facePoint(f, 0, (top + bottom) / 2 - 0.05);
    drawEllipse(S, { cx: hx, cy: hy, rx: f.a * 1.06, ry: f.b * ((bottom - top) / 2 + 0.12), rot: f.rot, bend: 0.8 }, 1.2 * px,
      (p, ex, ey, cov) => cv.over(p, scaleRGB(sc.hair, hairTex(p, ex, ey)), cov));
  }

  // Glasses: two rims and a bridge.
  if (sc.glasses) {
    const frameCol: RGB = [0.08, 0.07, 0.07];
    for (const side of [-1, 1]) {
      const [gx, gy] = facePoint(f, side * sc.eyeX, sc.eyeY + 0.02);
      const rx = f.a * 0.3, ry = f.a * 0.21;
      const t = Math.max(px, f.a * 0.035);
      const inner = new Float32Array(cv.n);
      drawEllipse(S, { cx: gx, cy: gy, rx: rx - t, ry: ry - t, rot: f.rot }, px, (p, _ex, _ey, cov) => { inner[p] = cov; });
      drawEllipse(S, { cx: gx, cy: gy, rx, ry, rot: f.rot }, px, (p, _ex, _ey, cov) => {
        cv.over(p, frameCol, clamp01(cov - inner[p]) * 0.95);
        cv.over(p, [0.9, 0.95, 1], inner[p] * 0.06);
      });
    }
    const [bx, by] = facePoint(f, 0, sc.eyeY - 0.02);
    drawEllipse(S, { cx: bx, cy: by, rx: f.a * 0.12, ry: Math.max(px * 0.6, f.a * 0.02), rot: f.rot, bend: -2 }, px,
      (p, _ex, _ey, cov) => cv.over(p, frameCol, cov * 0.9));
  }

  cv.applyLighting();
  return cv;
}
