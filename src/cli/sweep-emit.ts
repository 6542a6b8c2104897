// `ticketlab sweep CONFIG --emit slurm|k8s`: the scheduler files that start N workers on a cluster.
// Nothing of ours coordinates them: each task runs `ticketlab sweep CONFIG --worker`, and the workers
// share the work through the sweep folder (src/prune/units.ts). Pure text generation, tested by shape.
import * as path from 'node:path';
import { fileSlug } from '../report/run-report.js';

export interface EmitCommon {
  /** The config file as the workers will see it (absolute for Slurm; relative to the mount for k8s). */
  config: string;
  /** --out override to pass on, or null. */
  out: string | null;
  workers: number;
  gpusPerWorker: number;
  /** Job name (derived from the sweep's out folder by default). */
  name: string;
  /** Extra flags for the workers (e.g. --lock-timeout). */
  workerFlags: string[];
}

export interface SlurmOptions extends EmitCommon {
  /** Working directory of the tasks (relative paths in the config are relative to it). */
  workdir: string;
  /** How to start ticketlab on a node, e.g. `node /opt/ticketlab/bin/ticketlab.mjs`. */
  ticketlab: string;
  partition: string | null;
  time: string | null;
  cpusPerWorker: number | null;
  mem: string | null;
  account: string | null;
  /** Folder for the tasks' stdout/stderr (%A = job, %a = array index). */
  logDir: string;
}

export interface K8sOptions extends EmitCommon {
  image: string;
  /** PersistentVolumeClaim (ReadWriteMany) that holds the config, the data and the sweep folder. */
  pvc: string;
  /** Where the claim is mounted; the workers' working directory. */
  mount: string;
  /** The command inside the image. */
  ticketlab: string;
  namespace: string | null;
  cpusPerWorker: number | null;
  mem: string | null;
}

/** A word for a POSIX shell: bare when safe, else single-quoted. */
export function shellWord(s: string): string {
  return /^[A-Za-z0-9_./:=@%+,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A Kubernetes object name: lower-case alphanumerics and '-', at most 63 characters. */
export function k8sName(s: string): string {
  const n = s.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 50).replace(/-+$/, '');
  return n || 'sweep';
}

export function jobName(out: string): string {
  return `ticketlab-${fileSlug(path.basename(path.resolve(out)))}`;
}

function workerArgs(o: EmitCommon): string[] {
  return ['sweep', o.config, '--worker', ...(o.out ? ['--out', o.out] : []), ...o.workerFlags];
}

/** An sbatch script whose array tasks 0..N-1 are sweep workers. */
export function slurmScript(o: SlurmOptions): string {
  const sb = (k: string, v: string | number) => `#SBATCH --${k}=${v}`;
  const lines = [
    '#!/bin/bash',
    `# ${o.workers} ticketlab sweep workers as one Slurm job array, written by 'ticketlab sweep --emit slurm'.`,
    '# Submit with: sbatch <this file>. Each array task is one worker; the workers share the units of the',
    '# sweep through its folder, so tasks may start late, be cancelled (scancel <job>_<task>) and be',
    '# resubmitted (sbatch --array=<task> <this file>): a killed task loses only the level it was training,',
    '# which the next worker resumes from its checkpoint. Progress: ticketlab sweep <config> --status.',
    sb('job-name', o.name),
    sb('array', `0-${o.workers - 1}`),
    sb('ntasks', 1),
    ...(o.cpusPerWorker ? [sb('cpus-per-task', o.cpusPerWorker)] : []),
    ...(o.gpusPerWorker > 0 ? [sb('gres', `gpu:${o.gpusPerWorker}`)] : []),
    ...(o.mem ? [sb('mem', o.mem)] : []),
    ...(o.partition ? [sb('partition', o.partition)] : []),
    ...(o.time ? [sb('time', o.time)] : []),
    ...(o.account ? [sb('account', o.account)] : []),
    sb('output', path.join(o.logDir, '%A_%a.log')),
    // A requeued task (node failure, preemption) simply becomes a worker again.
    '#SBATCH --requeue',
    '',
    'set -euo pipefail',
    `cd ${shellWord(o.workdir)}`,
    // With a GPU each, the scheduler shows the task only its own GPU: the worker takes adapter 0 of them.
    `exec ${o.ticketlab} ${workerArgs(o).map(shellWord).join(' ')}`,
    '',
  ];
  return lines.join('\n');
}

/** YAML scalars: JSON strings are valid YAML and need no escaping rules of our own. */
const y = (s: string) => JSON.stringify(s);

/** A Kubernetes Indexed Job: N pods, each a sweep worker, sharing the sweep folder on one volume. */
export function k8sJob(o: K8sOptions): string {
  const command = [...o.ticketlab.split(/\s+/).filter(Boolean), ...workerArgs(o)];
  const resources: string[] = [];
  const limits = [
    ...(o.gpusPerWorker > 0 ? [`nvidia.com/gpu: ${o.gpusPerWorker}`] : []),
    ...(o.cpusPerWorker ? [`cpu: ${o.cpusPerWorker}`] : []),
    ...(o.mem ? [`memory: ${y(o.mem)}`] : []),
  ];
  if (limits.length) resources.push('          resources:', '            limits:', ...limits.map((l) => `              ${l}`));
  const lines = [
    `# ${o.workers} ticketlab sweep workers as a Kubernetes Indexed Job, written by 'ticketlab sweep --emit k8s'.`,
    `# Apply with: kubectl apply -f <this file>. The claim ${o.pvc} (ReadWriteMany) must hold the config, the`,
    '# data and the sweep folder, at the paths the config names relative to its root. Pods share the work',
    '# through the sweep folder; a pod that dies loses only the level it held, which another pod resumes',
    '# after the lock timeout. Progress: ticketlab sweep <config> --status (anywhere the volume is mounted).',
    'apiVersion: batch/v1',
    'kind: Job',
    'metadata:',
    `  name: ${o.name}`,
    ...(o.namespace ? [`  namespace: ${o.namespace}`] : []),
    '  labels:',
    '    app.kubernetes.io/name: ticketlab-sweep',
    'spec:',
    '  completionMode: Indexed',
    `  completions: ${o.workers}`,
    `  parallelism: ${o.workers}`,
    // Each index may fail a few times (an evicted pod, a node lost) before the Job gives up.
    `  backoffLimit: ${Math.max(6, 3 * o.workers)}`,
    '  template:',
    '    metadata:',
    '      labels:',
    '        app.kubernetes.io/name: ticketlab-sweep',
    '    spec:',
    '      restartPolicy: OnFailure',
    '      containers:',
    '        - name: worker',
    `          image: ${y(o.image)}`,
    `          workingDir: ${y(o.mount)}`,
    `          command: [${command.map(y).join(', ')}]`,
    // JOB_COMPLETION_INDEX is set by Kubernetes in Indexed Jobs; the worker names itself after it.
    ...resources,
    '          volumeMounts:',
    '            - name: sweep',
    `              mountPath: ${y(o.mount)}`,
    '      volumes:',
    '        - name: sweep',
    '          persistentVolumeClaim:',
    `            claimName: ${y(o.pvc)}`,
    '',
  ];
  return lines.join('\n');
}
