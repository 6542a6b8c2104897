// The one WebGPU device of the process, opened through Dawn (npm `webgpu`).
//
// Why a process-wide singleton: every tensor, pipeline and pooled buffer belongs to one GPUDevice,
// and opening an adapter costs tens of milliseconds; ops must be synchronous after start-up, so the
// async open happens once (initDevice) and everything else uses device().
import { create, globals } from 'webgpu';

export interface DeviceOptions {
  /** Dawn backend: vulkan, metal, d3d12, d3d11, opengl, opengles, null. Env: TICKETLAB_BACKEND. */
  backend?: string;
  /** Substring of the adapter name to pick (e.g. "llvmpipe", "H100"). Env: TICKETLAB_ADAPTER. */
  adapter?: string;
  /**
   * Which adapter of several, by position in Dawn's list (0-based), for one worker per GPU on a node.
   * Env: TICKETLAB_ADAPTER_INDEX. With `adapterIndexWraps` (an index taken from a scheduler's
   * variables), an index past the end wraps around (the scheduler already gave the task its own GPU),
   * and an adapter that Dawn cannot tell from an earlier one by name falls back to that one with a
   * warning; for an explicit index both are errors.
   */
  adapterIndex?: number;
  adapterIndexWraps?: boolean;
  /** Where that warning goes (default stderr). */
  warn?: (message: string) => void;
  /** WebGPU's GPUPowerPreference, spelled out so the published types need no WebGPU declarations. */
  powerPreference?: 'low-power' | 'high-performance';
}

export interface DeviceInfo {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  backend: string;
  isSoftware: boolean;
  features: string[];
  limits: Record<string, number>;
}

/** Features we turn on when the adapter offers them: they change no results, only what kernels may use. */
const WANTED_FEATURES = ['timestamp-query', 'subgroups', 'shader-f16', 'subgroup-size-control'] as const;

/** Limits raised to what the adapter allows: big tensors need big bindings. */
const RAISED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxStorageBuffersPerShaderStage',
  'maxComputeWorkgroupsPerDimension',
] as const;

export class NoAdapterError extends Error {
  constructor(detail: string) {
    super(
      `no WebGPU adapter found (${detail}); run 'bash scripts/setup.sh' to install the Vulkan loader and Mesa's lavapipe`,
    );
    this.name = 'NoAdapterError';
  }
}

export class Device {
  readonly features: ReadonlySet<string>;
  readonly limits: Readonly<Record<string, number>>;
  /** Set when the device was lost or destroyed; ops then fail loudly instead of hanging. */
  lost: string | null = null;
  /**
   * The first uncaptured WebGPU error (a bad kernel or launch) since the last check. Errors arrive
   * asynchronously, so readbacks call takeError() and throw: results computed after an invalid
   * dispatch are never returned as if they were good.
   */
  private firstError: string | null = null;

  noteError(msg: string): void {
    this.firstError ??= msg;
  }
  takeError(): string | null {
    const e = this.firstError;
    this.firstError = null;
    return e;
  }

  /**
   * The Dawn device. @internal: kept out of the published declarations (stripInternal), so that they
   * name no WebGPU type and a user's project needs neither `@webgpu/types` nor a `lib.dom` with WebGPU
   * in it (TypeScript >= 6 has one, and the two clash).
   */
  readonly gpu: GPUDevice;
  readonly info: DeviceInfo;

  /** @internal: devices come from initDevice(). */
  constructor(gpu: GPUDevice, info: DeviceInfo) {
    this.gpu = gpu;
    this.info = info;
    this.features = new Set(info.features);
    this.limits = info.limits;
  }

  get hasTimestamps(): boolean {
    return this.features.has('timestamp-query');
  }
  get hasSubgroups(): boolean {
    return this.features.has('subgroups');
  }
}

/**
 * Dawn instances, one per set of flags, kept for the life of the process (reused when the device is
 * opened again). A dropped one would be destroyed by a GC finalizer at an arbitrary moment, Vulkan
 * instance and driver included, beside the driver's threads: test workers died of native crashes
 * (segfaults, glibc's "futex facility returned an unexpected error code") around closing and
 * reopening the device. The crashes that could be reproduced came from stale buffers (see the close
 * hooks); this removes the one teardown left that runs at a moment nobody chose. A kept instance whose
 * device is destroyed does not hold Node's event loop open.
 */
const roots = new Map<string, GPU>();
function dawnRoot(flags: string[]): GPU {
  const key = flags.join('\n');
  let root = roots.get(key);
  if (!root) {
    root = create(flags);
    roots.set(key, root);
  }
  return root;
}
let current: Device | null = null;
let opening: Promise<Device> | null = null;

function limitsOf(l: GPUSupportedLimits): Record<string, number> {
  const out: Record<string, number> = {};
  // GPUSupportedLimits is an interface object with getters on the prototype: copy them by name.
  for (const k in l) {
    const v = (l as unknown as Record<string, unknown>)[k];
    if (typeof v === 'number') out[k] = v;
  }
  return out;
}

function dawnFlags(o: DeviceOptions): string[] {
  const flags: string[] = [];
  if (o.backend) flags.push(`backend=${o.backend}`);
  if (o.adapter) flags.push(`adapter=${o.adapter}`);
  // Dawn toggles for kernel tuning, e.g. TICKETLAB_DAWN_ENABLE=disable_robustness (no bounds clamps).
  if (process.env.TICKETLAB_DAWN_ENABLE) flags.push(`enable-dawn-features=${process.env.TICKETLAB_DAWN_ENABLE}`);
  // Timestamp quantisation (a fingerprinting guard for web pages) is always off: the profiler and the
  // tuner need exact kernel times. TICKETLAB_DAWN_DISABLE adds more toggles to switch off.
  const off = ['timestamp_quantization', ...(process.env.TICKETLAB_DAWN_DISABLE ?? '').split(',').filter(Boolean)];
  flags.push(`disable-dawn-features=${[...new Set(off)].join(',')}`);
  return flags;
}

/**
 * The adapters Dawn offers ("backend: name"), in its order. Dawn has no listing call: asked for an
 * adapter that does not exist, it fails with the list, which is parsed here.
 */
export async function listAdapters(backend?: string): Promise<{ backend: string; name: string }[]> {
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  Object.assign(globalThis, globals);
  let message = '';
  try {
    const root = dawnRoot([...(backend ? [`backend=${backend}`] : []), 'adapter=\u0001no adapter has this name']);
    await root.requestAdapter();
  } catch (e) {
    message = String((e as Error)?.message ?? e);
  }
  return [...message.matchAll(/\* backend: '([^']*)', name: '([^']*)'/g)].map((m) => ({ backend: m[1], name: m[2] }));
}

/** The adapter name for an index (see DeviceOptions.adapterIndex), or a one-line error. */
async function adapterByIndex(index: number, wraps: boolean, warn: (m: string) => void, backend?: string): Promise<string> {
  const list = await listAdapters(backend);
  if (!list.length) throw new NoAdapterError('Dawn listed none');
  if (!wraps && index >= list.length) throw new Error(`adapter index ${index} is out of range: ${list.length} adapter${list.length === 1 ? '' : 's'} (${list.map((a, i) => `${i}: ${a.name}`).join('; ')})`);
  const i = index % list.length;
  const name = list[i].name;
  // Dawn picks the first adapter whose name contains ours: identical GPUs cannot be told apart by name.
  const first = list.findIndex((a) => a.name === name);
  if (first !== i) {
    const why = `adapters ${first} and ${i} are both '${name}' and Dawn selects by name; give each worker its own GPU through the scheduler (Slurm --gres=gpu:1 with ConstrainDevices, a Kubernetes GPU limit, or the driver's visible-devices setting)`;
    if (!wraps) throw new Error(`adapter index ${index}: ${why}`);
    warn(`warning: adapter index ${index} (from the scheduler) falls back to adapter ${first}: ${why}`);
  }
  return name;
}

async function open(o: DeviceOptions): Promise<Device> {
  // Dawn talks to the Vulkan WSI layer, which wants a runtime dir even when headless.
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  Object.assign(globalThis, globals);
  const envIndex = process.env.TICKETLAB_ADAPTER_INDEX;
  if (o.adapterIndex === undefined && envIndex !== undefined && !/^\d+$/.test(envIndex)) throw new Error(`TICKETLAB_ADAPTER_INDEX '${envIndex}' must be a non-negative integer`);
  const index = o.adapterIndex ?? (envIndex !== undefined ? Number(envIndex) : undefined);
  const backend = o.backend ?? process.env.TICKETLAB_BACKEND ?? undefined;
  const opts: DeviceOptions = {
    backend,
    adapter: o.adapter ?? process.env.TICKETLAB_ADAPTER ?? (index !== undefined ? await adapterByIndex(index, o.adapterIndexWraps ?? false, o.warn ?? ((m) => process.stderr.write(m + '\n')), backend) : undefined),
    powerPreference: o.powerPreference ?? 'high-performance',
  };
  let adapter: GPUAdapter | null;
  try {
    adapter = await dawnRoot(dawnFlags(opts)).requestAdapter({ powerPreference: opts.powerPreference });
  } catch (e) {
    throw new NoAdapterError(String((e as Error)?.message ?? e).split('\n')[0]);
  }
  if (!adapter) {
    const which = [opts.backend && `backend=${opts.backend}`, opts.adapter && `adapter=${opts.adapter}`]
      .filter(Boolean)
      .join(', ');
    throw new NoAdapterError(which || 'Dawn returned none');
  }
  const offered = new Set<string>(adapter.features as unknown as Iterable<string>);
  const requiredFeatures = WANTED_FEATURES.filter((f) => offered.has(f)) as GPUFeatureName[];
  const adapterLimits = limitsOf(adapter.limits);
  const requiredLimits: Record<string, number> = {};
  for (const k of RAISED_LIMITS) if (adapterLimits[k] !== undefined) requiredLimits[k] = adapterLimits[k];
  const gpu = await adapter.requestDevice({ requiredFeatures, requiredLimits });
  const ai = adapter.info;
  const desc = `${ai.description ?? ''}`;
  const info: DeviceInfo = {
    vendor: ai.vendor ?? '',
    architecture: ai.architecture ?? '',
    device: ai.device ?? '',
    description: desc,
    backend: opts.backend ?? 'default',
    isSoftware: /llvmpipe|lavapipe|swiftshader|software/i.test(`${ai.device} ${desc} ${ai.architecture}`),
    features: [...(gpu.features as unknown as Iterable<string>)].sort(),
    limits: limitsOf(gpu.limits),
  };
  const dev = new Device(gpu, info);
  gpu.lost.then((l) => {
    dev.lost = `${l.reason}: ${l.message}`;
  });
  gpu.addEventListener('uncapturederror', (ev) => {
    const err = (ev as GPUUncapturedErrorEvent).error;
    // An uncaptured validation error means a kernel launch was wrong: the next readback throws it.
    const lines = err.message.split('\n').map((l) => l.trim()).filter(Boolean);
    dev.noteError(lines.slice(0, 3).join(' | '));
  });
  return dev;
}

/** Opens the device once; later calls return the same one. */
export function initDevice(o: DeviceOptions = {}): Promise<Device> {
  if (current) return Promise.resolve(current);
  opening ??= open(o).then(
    (d) => {
      current = d;
      return d;
    },
    (e) => {
      opening = null;
      throw e;
    },
  );
  return opening;
}

/** The open device; throws if initDevice() has not completed. */
export function device(): Device {
  if (!current) throw new Error('ticketlab: the GPU device is not open; await initDevice() first');
  if (current.lost) throw new Error(`ticketlab: the GPU device was lost (${current.lost})`);
  return current;
}

/** The adapter as the commands' `device:` line names it: `llvmpipe (LLVM 15.0.7, 256 bits) (software)`. */
export function deviceName(info: DeviceInfo): string {
  return `${info.device || info.description}${info.isSoftware ? ' (software)' : ''}`;
}

export function deviceIsOpen(): boolean {
  return current !== null;
}

/**
 * Destroys the device, so that Node can exit, after every close hook has dropped the GPU objects it
 * holds. The hooks stay registered: they are registered once, at import, and must run at every close
 * of a process that opens the device again (tests, library users). Dawn's instance is kept (see roots).
 */
export function closeDevice(): void {
  for (const h of closeHooks) h();
  if (current) {
    current.gpu.destroy();
    current.lost ??= 'closed';
  }
  current = null;
  opening = null;
}

const closeHooks = new Set<() => void>();
/** Lets layers above (pools, caches) drop their GPU objects when the device closes. */
export function onDeviceClose(h: () => void): void {
  closeHooks.add(h);
}
