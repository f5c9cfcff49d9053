/* The record types, their names and the format version that added them. */
#include "vmhop/stream.h"
#include "vmhop/util.h"

static const struct {
	uint16_t type;
	uint16_t since;
	const char *name;
} types[] = {
	{ STREAM_REC_END, 1, "END" },
	{ STREAM_REC_SECTION, 1, "SECTION" },
	{ STREAM_REC_MEM, 1, "MEM" },
	{ STREAM_REC_INDEX, 3, "INDEX" },
	{ STREAM_REC_NOTE, 1, "NOTE" },
};

const char *stream__rec_name(uint16_t type)
{
	for (size_t i = 0; i < ARRAY_SIZE(types); i++)
		if (types[i].type == type)
			return types[i].name;
	return "unknown";
}

uint16_t stream__rec_since(uint16_t type)
{
	for (size_t i = 0; i < ARRAY_SIZE(types); i++)
		if (types[i].type == type)
			return types[i].since;
	return 0;
}
