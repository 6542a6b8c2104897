// Ctrl-C: the first one asks the loop to finish its step and save; a second one exits at once.
export function installStopSignal(log: (m: string) => void): { stop: boolean; dispose(): void } {
  const signal = {
    stop: false,
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
    log('interrupt: finishing the current step and saving (Ctrl-C again to exit now)');
  };
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onInt);
  return signal;
}
