/** Root hooks: every tracked process is stopped after each test; the private sound server after the run. */
import { stopAllTracked } from './proc';
import { stopStartedSoundServer } from './soundserver';

export const mochaHooks = {
  async afterEach(): Promise<void> {
    await stopAllTracked();
  },
};

export function mochaGlobalTeardown(): void {
  stopStartedSoundServer();
}
