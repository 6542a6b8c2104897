// Records the boxes that @vladmandic/face-api's own SSD-MobileNet-v1 finds on the package's sample
// photos (and on one face-free crop of a sample) into tests/fixtures/faces/ssd_mobilenetv1.json, so the
// test suite compares ticketlab's port against the original without loading TensorFlow.js.
//
// Dev-only: needs the devDependencies @tensorflow/tfjs and @tensorflow/tfjs-backend-wasm (face-api's
// node-wasm build requires both); it runs TF.js's pure-JavaScript CPU backend. CommonJS because that
// build is. Run: node scripts/face-fixtures.cjs   (about 15 s per photo on one CPU core)
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const sharp = require('sharp');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');

const ROOT = path.resolve(__dirname, '..');
const PKG = path.dirname(require.resolve('@vladmandic/face-api/package.json'));
const OUT = path.join(ROOT, 'tests', 'fixtures', 'faces', 'ssd_mobilenetv1.json');
const MIN_CONFIDENCE = 0.5;

/** The photos: every demo sample, plus a crop of sample1 below everyone's face (bodies, a glass). */
const CASES = [
  ...[1, 2, 3, 4, 5, 6].map((i) => ({ image: `sample${i}.jpg` })),
  { image: 'sample1.jpg', crop: { left: 0, top: 780, width: 1100, height: 500 } },
];

async function rgb(file, crop) {
  let img = sharp(file).removeAlpha();
  if (crop) img = img.extract(crop);
  const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

async function main() {
  const tf = faceapi.tf;
  await tf.setBackend('cpu');
  await tf.ready();
  await faceapi.nets.ssdMobilenetv1.loadFromDisk(path.join(PKG, 'model'));
  const cases = [];
  for (const c of CASES) {
    const img = await rgb(path.join(PKG, 'demo', c.image), c.crop);
    const t = tf.tensor3d(new Uint8Array(img.data), [img.height, img.width, 3], 'int32');
    const dets = await faceapi.detectAllFaces(t, new faceapi.SsdMobilenetv1Options({ minConfidence: MIN_CONFIDENCE }));
    t.dispose();
    const faces = dets.map((d) => ({ score: d.score, box: [d.box.x, d.box.y, d.box.width, d.box.height] }));
    console.log(`${c.image}${c.crop ? ' (crop)' : ''}: ${faces.length} face(s)`);
    cases.push({ ...c, width: img.width, height: img.height, faces });
  }
  const doc = {
    source: `@vladmandic/face-api ${require('@vladmandic/face-api/package.json').version}, SsdMobilenetv1, TF.js ${tf.version_core} cpu backend`,
    minConfidence: MIN_CONFIDENCE,
    maxResults: 100,
    iouThreshold: 0.5,
    boxes: 'pixels of the photo (after the crop when there is one): [x, y, width, height]',
    cases,
  };
  fs.mkdirSync(path.dirname(OUT), { recursive: true });
  fs.writeFileSync(OUT, `${JSON.stringify(doc, null, 1)}\n`);
  console.log(`wrote ${path.relative(ROOT, OUT)}`);
}

main().catch((e) => {
  console.error(`face-fixtures: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
