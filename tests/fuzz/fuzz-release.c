/* libFuzzer target: the release-level data parser and the incoming-stream
 * check against whatever matrix it accepted. */
#include <string.h>

#include "vmhop/release.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct release_matrix m;
	struct err e = { 0 };
	if (release__parse(&m, (const char *)data, size, &e))
		return 0;
	char buf[256];
	for (size_t d = 0; d < m.n; d++) {
		struct release_policy pol = { &m, &m.levels[d] };
		release__accepts(&m, &m.levels[d], buf, sizeof(buf));
		for (size_t s = 0; s < m.n; s++) {
			err__clear(&e);
			release__check_incoming(&pol, m.levels[s].name, m.levels[s].ordinal,
						m.levels[s].write_format, &e);
		}
	}
	return 0;
}
