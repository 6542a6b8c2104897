// Ctrl-C: the first one asks the loop to finish its step and save; a second one exits at once.
import { closeDevice } from '../tensor/device.js';
import { Interrupted } from '../train/trainer.js';

/**
 * `signal` aborts with the first interrupt, for work that can be cut short at once (a child process such
 * as ffmpeg, which would otherwise run on until it finishes or for ever on a blocked read).
 */
export function installStopSignal(
  log: (m: string) => void,
  message = 'interrupt: finishing the current step and saving (Ctrl-C again to exit now)',
): { stop: boolean; signal: AbortSignal; dispose(): void } {
  const abort = new AbortController();
  const signal = {
    stop: false,
    signal: abort.signal,
    dispose() {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onInt);
    },
  };
  const onInt = () => {
    if (signal.stop) {
      log('second interrupt: exiting without saving the current epoch');
      process.exit(130);
    }
    signal.stop = true;
    abort.abort();
    log(message);
  };
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onInt);
  return signal;
}

/**
 * Runs a command body with the stop signal installed: an interrupted run prints where its state is
 * and exits 130; the device is closed either way.
 */
export async function withRun<T>(fn: (signal: { stop: boolean }) => Promise<T>, log = (m: string) => process.stderr.write(m + '\n')): Promise<T | number> {
  const signal = installStopSignal(log);
  try {
    return await fn(signal);
  } catch (e) {
    if (e instanceof Interrupted) {
      log(e.message);
      return 130;
    }
    throw e;
  } finally {
    signal.dispose();
    closeDevice();
  }
}
