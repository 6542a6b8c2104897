// `ticketlab info`: which adapter, backend, features and limits the engine runs on.
import { closeDevice, initDevice } from '../tensor/device.js';
import { parseFlags, type Command } from './args.js';

export const infoCommand: Command = {
  name: 'info',
  summary: 'print the WebGPU adapter, backend, features and limits in use',
  help: `ticketlab info [--backend B] [--adapter NAME] [--json]

Opens the WebGPU device the way every other command does and prints what it found.
  --backend B      Dawn backend (vulkan, metal, d3d12, opengl, ...); env TICKETLAB_BACKEND
  --adapter NAME   pick the adapter whose name contains NAME; env TICKETLAB_ADAPTER
  --json           machine-readable output
`,
  async run(args) {
    const { values } = parseFlags(args, { backend: { type: 'string' }, adapter: { type: 'string' }, json: { type: 'boolean' } }, 'info');
    const dev = await initDevice({ backend: values.backend, adapter: values.adapter });
    const i = dev.info;
    if (values.json) {
      process.stdout.write(JSON.stringify(i, null, 2) + '\n');
    } else {
      const lim = (k: string) => (i.limits[k] ?? 0).toLocaleString('en-US');
      process.stdout.write(
        [
          `adapter:      ${[i.vendor, i.device].filter(Boolean).join(' ') || '(unnamed)'}`,
          `description:  ${i.description || '-'}`,
          `architecture: ${i.architecture || '-'}`,
          `backend:      ${i.backend}${i.isSoftware ? ' (software rasteriser: CPU speed)' : ''}`,
          `features:     ${i.features.join(', ')}`,
          'limits:',
          ...[
            'maxStorageBufferBindingSize',
            'maxBufferSize',
            'maxComputeWorkgroupStorageSize',
            'maxComputeInvocationsPerWorkgroup',
            'maxComputeWorkgroupSizeX',
            'maxComputeWorkgroupsPerDimension',
            'maxStorageBuffersPerShaderStage',
            'minUniformBufferOffsetAlignment',
          ].map((k) => `  ${k.padEnd(36)} ${lim(k)}`),
          '',
        ].join('\n'),
      );
    }
    closeDevice();
    return 0;
  },
};
