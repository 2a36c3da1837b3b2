/**
 * PulseAudio backend: the same Endpoint contract as PipeWire over
 * native/pa-backend.c (libpulse, pa_threaded_mainloop). A read loop is a
 * module-null-sink whose monitor we record at the server's exact format; a
 * write loop is a module-remap-source (an ordinary source) on the monitor of
 * a null sink we play into. Client streams on our devices come from the
 * server's subscription events; ending them kills the sink-inputs /
 * source-outputs (PulseAudio would otherwise rescue them to another device).
 */
import { PipeWireBackend, type PipeWireBackendOptions } from './pipewire';

export type PulseAudioBackendOptions = Omit<PipeWireBackendOptions, 'nativeBackend'>;

export class PulseAudioBackend extends PipeWireBackend {
  /** Connects to the PulseAudio server of this environment (PULSE_SERVER, or the default socket). */
  constructor(opts: PulseAudioBackendOptions = {}) {
    super({ ...opts, nativeBackend: 'pulseaudio' });
  }
}
