/* The sample formats of the protocol (backend-neutral). */
#ifndef AL_FORMAT_H
#define AL_FORMAT_H

#include <stdint.h>

enum al_sample {
	AL_U8,
	AL_S16LE,
	AL_S24LE,
	AL_S32LE,
	AL_F32LE,
};

struct al_format {
	const char *name;
	enum al_sample sample;
	uint32_t bytes;  /* per sample */
	uint8_t silence; /* byte value of digital silence */
};

/* [any] the format called `name` ("s16le"), NULL if unknown */
const struct al_format *al_format_find(const char *name);

#endif
