/*
 * Loads the PulseAudio backend (audioloop_pulse.node: pa-backend.c, a plain
 * shared object) on first use, so that a daemon on PipeWire never maps
 * libpulse and its dependency tree (libsndfile and its codecs, libX11,
 * libsystemd, libgcrypt, ...: 2.4 MiB of RSS measured), and a machine
 * without libpulse still runs the PipeWire backend.
 *
 * The backend module is built beside the addon and calls back into the
 * addon (the cable's [rt] functions, al_host_push, the mirror helpers), so
 * the addon is first made global (RTLD_NOLOAD | RTLD_GLOBAL on itself: Node
 * loaded it with local scope).
 *
 * Threads: [js] only (coreOpen), never concurrently.
 */
#define _GNU_SOURCE /* dladdr */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"

/* node-gyp names every module it builds .node; this one has no N-API entry */
#define AL_PULSE_MODULE "audioloop_pulse.node"

static const struct al_backend_ops *loaded; /* [js] */
static char load_error[512];                /* [js] why the last load failed, "" if it did not */

const char *al_pulseaudio_load_error(void)
{
	return load_error;
}

const struct al_backend_ops *al_pulseaudio_ops_load(void)
{
	if (loaded)
		return loaded;
	load_error[0] = '\0';
	Dl_info self;
	if (dladdr((void *)al_pulseaudio_ops_load, &self) == 0 || self.dli_fname == NULL) {
		snprintf(load_error, sizeof(load_error), "cannot find the addon's own path");
		return NULL;
	}
	if (dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL) == NULL) {
		snprintf(load_error, sizeof(load_error), "%s", dlerror());
		return NULL;
	}
	/* beside the addon */
	char path[4096];
	const char *slash = strrchr(self.dli_fname, '/');
	if (slash)
		snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - self.dli_fname), self.dli_fname, AL_PULSE_MODULE);
	else
		snprintf(path, sizeof(path), "./%s", AL_PULSE_MODULE);
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		snprintf(load_error, sizeof(load_error), "%s", dlerror());
		return NULL;
	}
	const struct al_backend_ops *ops = dlsym(h, "al_pulseaudio_ops");
	if (ops == NULL) {
		snprintf(load_error, sizeof(load_error), "%.400s: no al_pulseaudio_ops", path);
		dlclose(h);
		return NULL;
	}
	loaded = ops; /* never unloaded: its threads and callbacks may outlive any one core */
	return loaded;
}
