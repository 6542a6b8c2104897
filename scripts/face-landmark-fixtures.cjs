// Records the 68 landmarks that @vladmandic/face-api's own FaceLandmark68Net finds on face crops of the
// package's sample photos into tests/fixtures/faces/face_landmark_68.json, so the test suite compares
// ticketlab's port against the original without loading TensorFlow.js.
//
// The crops: for every face in tests/fixtures/faces/ssd_mobilenetv1.json (recorded by
// scripts/face-fixtures.cjs), the square of 1.3 x the box's longer side centred on it, rounded and
// clipped at the photo's border (ticketlab's cropRect rule). The rectangle is stored with the points, so
// the test crops exactly the same pixels. Points are in crop pixels.
//
// Dev-only, as face-fixtures.cjs (TF.js's pure-JavaScript CPU backend). Run: node scripts/face-landmark-fixtures.cjs
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const sharp = require('sharp');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');

const ROOT = path.resolve(__dirname, '..');
const PKG = path.dirname(require.resolve('@vladmandic/face-api/package.json'));
const BOXES = path.join(ROOT, 'tests', 'fixtures', 'faces', 'ssd_mobilenetv1.json');
const OUT = path.join(ROOT, 'tests', 'fixtures', 'faces', 'face_landmark_68.json');
const MARGIN = 1.3;

// src/data/image.ts cropRect, restated: this CommonJS script cannot import the TypeScript sources. The
// test crops the stored rectangles, so the comparison does not depend on the two staying identical.
function cropRect([x, y, w, h], imgW, imgH, scale) {
  const side = Math.max(w, h) * scale;
  const cx = x + w / 2, cy = y + h / 2;
  let left = Math.round(cx - side / 2), top = Math.round(cy - side / 2);
  let right = Math.round(cx + side / 2), bottom = Math.round(cy + side / 2);
  left = Math.min(Math.max(left, 0), imgW - 1);
  top = Math.min(Math.max(top, 0), imgH - 1);
  right = Math.min(Math.max(right, left + 1), imgW);
  bottom = Math.min(Math.max(bottom, top + 1), imgH);
  return { left, top, width: right - left, height: bottom - top };
}

async function main() {
  const tf = faceapi.tf;
  await tf.setBackend('cpu');
  await tf.ready();
  await faceapi.nets.faceLandmark68Net.loadFromDisk(path.join(PKG, 'model'));
  const boxes = JSON.parse(fs.readFileSync(BOXES, 'utf8'));
  const faces = [];
  for (const c of boxes.cases) {
    if (c.crop) continue;
    for (const f of c.faces) {
      const rect = cropRect(f.box, c.width, c.height, MARGIN);
      const { data, info } = await sharp(path.join(PKG, 'demo', c.image)).removeAlpha().extract(rect).raw().toBuffer({ resolveWithObject: true });
      const t = tf.tensor3d(new Uint8Array(data), [info.height, info.width, 3], 'int32');
      const lm = await faceapi.nets.faceLandmark68Net.detectLandmarks(t);
      t.dispose();
      faces.push({ image: c.image, crop: rect, points: lm.positions.map((p) => [p.x, p.y]) });
    }
    console.log(`${c.image}: ${c.faces.length} face(s)`);
  }
  const doc = {
    source: `@vladmandic/face-api ${require('@vladmandic/face-api/package.json').version}, FaceLandmark68Net, TF.js ${tf.version_core} cpu backend`,
    points: '68 [x, y] in pixels of the crop (crop = [left, top, width, height] of the photo)',
    faces,
  };
  fs.writeFileSync(OUT, `${JSON.stringify(doc, null, 1)}\n`);
  console.log(`wrote ${path.relative(ROOT, OUT)}`);
}

main().catch((e) => {
  console.error(`face-landmark-fixtures: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
