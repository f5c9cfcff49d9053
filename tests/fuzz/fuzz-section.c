/* libFuzzer target: a SECTION payload decoded into a registry (fields,
 * struct arrays, version windows, subsections, custom data), and parsed
 * without one. */
#include "fuzz-common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_state st[2];
	struct section_registry reg;
	struct err e = { 0 };
	fz_fill(&st[0], 0);
	fz_fill(&st[1], 1);
	fz_registry(&reg, st);
	section__decode(&reg, data, size, 48, &e);
	struct section_info si;
	err__clear(&e);
	section__parse_info(data, size, 48, &si, &e);
	section__registry_free(&reg);
	return 0;
}
