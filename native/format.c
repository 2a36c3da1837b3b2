#include <string.h>

#include "format.h"

static const struct al_format formats[] = {
	{ "u8",    AL_U8,    1, 0x80 },
	{ "s16le", AL_S16LE, 2, 0x00 },
	{ "s24le", AL_S24LE, 3, 0x00 },
	{ "s32le", AL_S32LE, 4, 0x00 },
	{ "f32le", AL_F32LE, 4, 0x00 },
};

const struct al_format *al_format_find(const char *name)
{
	for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++)
		if (strcmp(formats[i].name, name) == 0)
			return &formats[i];
	return NULL;
}
