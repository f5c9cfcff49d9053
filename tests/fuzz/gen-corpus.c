/* Writes the fuzz seed corpus: real streams made by the codec.
 *   gen-corpus DIR     -> DIR/{stream,section,mem,release}/...
 * The corpus in tests/fuzz/corpus was made with it; rerun it after a format
 * change. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz-common.h"
#include "vmhop/release.h"

static void put_file(const char *dir, const char *sub, const char *name,
		     const void *p1, size_t n1, const void *p2, size_t n2)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(p1, 1, n1, f) != n1 || (n2 && fwrite(p2, 1, n2, f) != n2) || fclose(f)) {
		fprintf(stderr, "gen-corpus: %s: %s\n", path, strerror(errno));
		exit(1);
	}
}

static void make_ram(uint8_t *ram, size_t npages)
{
	uint32_t x = 1;
	for (size_t p = 0; p < npages; p++) {
		uint8_t *pg = ram + p * STREAM_PAGE_SIZE;
		for (size_t i = 0; i < STREAM_PAGE_SIZE; i++) {
			switch (p % 3) {
			case 0: pg[i] = 0; break;
			case 1: x = x * 1103515245u + 12345u; pg[i] = (uint8_t)(x >> 16); break;
			default: pg[i] = (uint8_t)(i / 512 + p); break;
			}
		}
	}
}

static void stream(const char *dir, int format, bool digest, bool index,
		   bool compress, int n)
{
	struct stream_mem m;
	struct stream_io io;
	stream__mem_init_grow(&m);
	stream__io_mem(&io, &m);
	struct stream_writer w;
	struct stream_writer_opts o = {
		.format = (uint16_t)format, .release = "SP3", .release_ordinal = 3,
		.features = digest ? STREAM_FEAT_DIGEST : 0, .index = index,
	};
	struct err e = { 0 };
	struct fz_state st[2];
	fz_fill(&st[0], (unsigned)n);
	fz_fill(&st[1], (unsigned)n + 1);
	struct section_registry reg;
	fz_registry(&reg, st);
	enum { NP = 6 };
	static uint8_t ram[NP * STREAM_PAGE_SIZE];
	make_ram(ram, NP);
	struct stream_mem_enc enc;
	struct stream_mem_enc_opts eo = { .compress = compress, .detect_zero = true, .max_run = 3 };
	struct stream_ram sr = { .host = ram, .npages = NP };
	if (stream__writer_init(&w, &io, &o) || stream__write_note(&w, "fuzz seed") ||
	    stream__mem_enc_init(&enc, &eo, &e) ||
	    section__save_stream(&reg, &w, &enc, &sr, &e)) {
		fprintf(stderr, "gen-corpus: %s%s\n", w.err.msg, e.msg);
		exit(1);
	}
	char name[64], flags[8];
	snprintf(flags, sizeof(flags), "%s%s%s", digest ? "d" : "", index ? "i" : "",
		 compress ? "z" : "");
	if (!flags[0])
		strcpy(flags, "plain");
	uint8_t mode;
	for (mode = 0; mode < 2; mode++) {
		snprintf(name, sizeof(name), "v%d-%s-%d", format, flags, mode);
		put_file(dir, "stream", name, &mode, 1, m.buf, m.len);
	}
	/* the plain stream too, for vmhop stream-info and hand inspection */
	snprintf(name, sizeof(name), "v%d-%s.vmhop", format, flags);
	put_file(dir, "files", name, m.buf, m.len, NULL, 0);
	/* every record payload, for the section and mem targets */
	size_t off = STREAM_HEADER_SIZE;
	int k = 0;
	while (off + 12 <= m.len) {
		uint16_t type = stream__rd16(m.buf + off);
		uint32_t len = stream__rd32(m.buf + off + 4);
		const uint8_t *pl = m.buf + off + 8;
		if (type == STREAM_REC_SECTION) {
			snprintf(name, sizeof(name), "v%d-%d-%d", format, n, k);
			put_file(dir, "section", name, pl, len, NULL, 0);
		} else if (type == STREAM_REC_MEM) {
			uint8_t pre[2] = { (uint8_t)(format - 1), (uint8_t)k };
			snprintf(name, sizeof(name), "v%d-%s-%d", format, compress ? "z" : "r", k);
			put_file(dir, "mem", name, pre, 2, pl, len);
		}
		off += 12 + len;
		k++;
	}
	stream__mem_enc_free(&enc);
	stream__writer_free(&w);
	section__registry_free(&reg);
	stream__mem_free(&m);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: gen-corpus DIR\n");
		return 2;
	}
	const char *dir = argv[1];
	mkdir(dir, 0755);
	stream(dir, 1, false, false, false, 1);
	stream(dir, 2, true, false, true, 2);
	stream(dir, 3, true, true, true, 3);
	stream(dir, 3, false, true, false, 4);
	size_t len;
	const char *t = release__builtin_text(&len);
	put_file(dir, "release", "builtin.conf", t, len, NULL, 0);
	const char *four = "level SP1 1 writes 1 reads 1..1\nlevel SP2 2 writes 2 reads 1..2\n"
			   "level SP3 3 writes 3 reads 1..3\nlevel SP4 4 writes 4 reads 2..4\n"
			   "allow SP1 -> SP1 SP2 SP3\nallow SP2 -> SP2 SP3 SP4\nallow SP3 -> SP3 SP4\n"
			   "allow SP4 -> SP4\nbuild SP4\n";
	put_file(dir, "release", "four.conf", four, strlen(four), NULL, 0);
	return 0;
}
