/**
 * The backend contract (test/contract/backend-contract.ts) on this run's
 * real sound server: PipeWire with the PipeWire backend, or (with
 * AUDIOLOOP_TEST_SOUNDSERVER=pulseaudio, scripts/test.sh's second pass) a
 * real PulseAudio with the PulseAudio backend; real paplay/parecord clients.
 */
import { backendContract } from '../contract/backend-contract';
import { pulseToolsDriver } from '../contract/pulse-driver';
import { requireSoundServer, soundServerKind, suiteBackend } from '../helpers/soundserver';

let driver: ReturnType<typeof pulseToolsDriver> | null = null;

backendContract({
  name: `${soundServerKind()} (real server, paplay/parecord)`,
  prepare() {
    requireSoundServer.call(this);
    driver = pulseToolsDriver();
    return { connect: () => suiteBackend('audioloop-contract'), driver };
  },
  finish() {
    driver?.dispose();
  },
});
