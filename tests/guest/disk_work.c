/*
 * disk_work.c: sector pattern (512 bytes): "VMHOPBLK", u64 LE sector,
 * u64 LE generation (>= 1), then byte i (24..511) = (sector*31 + gen*17 + i)
 * & 0xFF.  tests/guest/check-disk.py checks the same pattern from the host.
 */
#include "arch.h"
#include "disk_work.h"
#include "lib.h"
#include "pci.h"
#include "serial.h"

#define CHUNK_BYTES	(64 * KIB)
#define CHUNK_SECTORS	(CHUNK_BYTES / SECTOR_SIZE)

static uint8_t chunk_buf[CHUNK_BYTES] __attribute__((aligned(4096)));

static void fill_sector(uint8_t *s, uint64_t sector, uint64_t gen)
{
	uint8_t b = (uint8_t)(sector * 31 + gen * 17);

	memcpy(s, "VMHOPBLK", 8);
	memcpy(s + 8, &sector, 8);
	memcpy(s + 16, &gen, 8);
	for (unsigned i = 24; i < SECTOR_SIZE; i++)
		s[i] = (uint8_t)(b + i);
}

static void fill_chunk(uint64_t chunk, uint64_t gen)
{
	for (unsigned i = 0; i < CHUNK_SECTORS; i++)
		fill_sector(chunk_buf + i * SECTOR_SIZE, chunk * CHUNK_SECTORS + i, gen);
}

static int fail(struct disk_work *dw, const char *what, uint64_t chunk, int status)
{
	fmt__snprintf(dw->fail, sizeof(dw->fail), "disk: %s at sector %llu: %s (status %d)",
		      what, (unsigned long long)(chunk * CHUNK_SECTORS),
		      status < 0 ? "no completion" : "device error", status);
	return -1;
}

/* Synchronous chunk I/O, for the end of the run. */
static int io(struct disk_work *dw, uint32_t type, uint64_t chunk, const char *what)
{
	int st = virtio_blk__request(&dw->dev, type, chunk * CHUNK_SECTORS, chunk_buf,
				     (uint32_t)CHUNK_BYTES);

	return st == VIRTIO_BLK_S_OK ? 0 : fail(dw, what, chunk, st);
}

static void submit(struct disk_work *dw, uint32_t type)
{
	virtio_blk__submit(&dw->dev, type, dw->chunk * CHUNK_SECTORS, chunk_buf,
			   (uint32_t)CHUNK_BYTES);
}

/* Compare chunk_buf with the pattern of `gen`; report the first bad sector. */
static int check_chunk(struct disk_work *dw, uint64_t chunk, uint64_t gen)
{
	uint8_t want[SECTOR_SIZE];

	for (unsigned i = 0; i < CHUNK_SECTORS; i++) {
		uint64_t sector = chunk * CHUNK_SECTORS + i, got_gen;
		const uint8_t *s = chunk_buf + i * SECTOR_SIZE;
		unsigned b = 0;

		fill_sector(want, sector, gen);
		if (!memcmp(s, want, SECTOR_SIZE))
			continue;
		while (s[b] == want[b])
			b++;
		memcpy(&got_gen, s + 16, 8);
		if (memcmp(s, "VMHOPBLK", 8))
			got_gen = 0;	/* not our pattern at all */
		fmt__snprintf(dw->fail, sizeof(dw->fail),
			      "disk sector=%llu gen=%llu byte=%u expected=0x%x got=0x%x holds_gen=%llu",
			      (unsigned long long)sector, (unsigned long long)gen, b, want[b], s[b],
			      (unsigned long long)got_gen);
		return -1;
	}
	return 0;
}

/* Generation chunk c holds now (rw). */
static uint64_t gen_of(const struct disk_work *dw, uint64_t c)
{
	if (dw->phase == DISK_PH_LOOP)
		return c < dw->chunk ? dw->gen : dw->gen - 1;
	return 1;
}

int disk_work__start(struct disk_work *dw, const struct params *p)
{
	char err[160];

	memset(dw, 0, sizeof(*dw));
	dw->mode = p->disk;
	dw->mib = p->disk_mib;
	dw->chunks = p->disk_mib * MIB / CHUNK_BYTES;
	dw->loop = p->disk_loop;
	if (dw->mode == DISK_NONE) {
		dw->verdict = "none";
		serial__printf("DISK none");
		return 0;
	}
	if (virtio_blk__init(&dw->dev, err, sizeof(err))) {
		fmt__snprintf(dw->fail, sizeof(dw->fail), "%s", err);
		return -1;
	}
	serial__printf("DISK virtio-blk pci=00:%02x.%u capacity_sectors=%llu ro_offered=%u queue_size=%u mode=%s mib=%llu loop=%u",
		       (dw->dev.bdf >> 3) & 31, dw->dev.bdf & 7,
		       (unsigned long long)dw->dev.capacity, dw->dev.ro_offered ? 1u : 0u,
		       dw->dev.queue_size, cmdline__disk_name(dw->mode),
		       (unsigned long long)dw->mib, dw->loop ? 1u : 0u);
	if (dw->dev.capacity < dw->chunks * CHUNK_SECTORS) {
		fmt__snprintf(dw->fail, sizeof(dw->fail),
			      "disk: capacity %llu sectors is smaller than disk_mib=%llu",
			      (unsigned long long)dw->dev.capacity, (unsigned long long)dw->mib);
		return -1;
	}
	if (dw->mode == DISK_RO) {
		if (!dw->dev.ro_offered) {
			fmt__snprintf(dw->fail, sizeof(dw->fail),
				      "disk: ro requested but the device does not offer VIRTIO_BLK_F_RO");
			return -1;
		}
		dw->phase = DISK_PH_RO_READ;
	} else {
		dw->phase = DISK_PH_WRITE;
		dw->gen = 1;
	}
	return 0;
}

/* Start the request the current phase needs next (the device is idle). */
static void start_next(struct disk_work *dw)
{
	switch (dw->phase) {
	case DISK_PH_WRITE:
		fill_chunk(dw->chunk, 1);
		submit(dw, VIRTIO_BLK_T_OUT);
		break;
	case DISK_PH_LOOP:
		if (dw->loop_write) {
			fill_chunk(dw->chunk, dw->gen);
			submit(dw, VIRTIO_BLK_T_OUT);
		} else {
			submit(dw, VIRTIO_BLK_T_IN);	/* verify the previous generation first */
		}
		break;
	case DISK_PH_VERIFY:
	case DISK_PH_RO_READ:
		submit(dw, VIRTIO_BLK_T_IN);
		break;
	case DISK_PH_RO_WRITE:
		/* Write back what was just read: harmless if the device wrongly accepts it. */
		submit(dw, VIRTIO_BLK_T_OUT);
		break;
	default:
		break;
	}
}

/* The request of the current phase completed with status st. */
static int complete(struct disk_work *dw, int st)
{
	uint64_t c = dw->chunk;

	if (dw->phase == DISK_PH_RO_WRITE) {
		if (st == VIRTIO_BLK_S_IOERR) {
			serial__printf("DISK readonly write refused");
			dw->verdict = "ro-refused";
			dw->phase = DISK_PH_IDLE;
			return 0;
		}
		if (st == VIRTIO_BLK_S_OK)
			fmt__snprintf(dw->fail, sizeof(dw->fail),
				      "disk: ro: a write succeeded on a read-only disk");
		else
			fmt__snprintf(dw->fail, sizeof(dw->fail),
				      "disk: ro: a write got status %d, expected IOERR (1)", st);
		return -1;
	}
	if (st != VIRTIO_BLK_S_OK)
		return fail(dw, dw->phase == DISK_PH_WRITE || dw->loop_write ? "write" : "read", c, st);

	switch (dw->phase) {
	case DISK_PH_WRITE:
		if (++dw->chunk == dw->chunks) {
			dw->chunk = 0;
			dw->phase = DISK_PH_VERIFY;
		}
		break;
	case DISK_PH_VERIFY:
		if (check_chunk(dw, c, 1))
			return -1;
		if (++dw->chunk == dw->chunks) {
			serial__printf("DISK ok mib=%llu gen=1", (unsigned long long)dw->mib);
			dw->verdict = "ok";
			dw->chunk = 0;
			dw->gen = 2;
			dw->phase = dw->loop ? DISK_PH_LOOP : DISK_PH_IDLE;
		}
		break;
	case DISK_PH_LOOP:
		if (!dw->loop_write) {
			if (check_chunk(dw, c, dw->gen - 1))
				return -1;
			dw->loop_write = true;
			break;
		}
		dw->loop_write = false;
		dw->rewrites++;
		if (++dw->chunk == dw->chunks) {
			dw->chunk = 0;
			dw->gen++;
		}
		break;
	case DISK_PH_RO_READ:
		if (++dw->chunk == dw->chunks) {
			dw->chunk = dw->chunks - 1;	/* the buffer holds this chunk */
			dw->phase = DISK_PH_RO_WRITE;
		}
		break;
	default:
		break;
	}
	return 0;
}

int disk_work__step(struct disk_work *dw)
{
	int st;

	if (!dw->dev.busy) {
		if (dw->phase == DISK_PH_IDLE)
			return 0;
		start_next(dw);
		return 1;
	}
	st = virtio_blk__poll(&dw->dev);
	if (st == VIRTIO_BLK_BUSY)
		return 0;
	return complete(dw, st) ? -1 : 1;
}

bool disk_work__active(const struct disk_work *dw)
{
	return dw->dev.busy || dw->phase != DISK_PH_IDLE;
}

int disk_work__finish(struct disk_work *dw)
{
	uint64_t last_gen = 1;
	int r;

	/* Let the request in flight complete, and the first passes if the run was short. */
	while (dw->dev.busy || (dw->phase != DISK_PH_IDLE && dw->phase != DISK_PH_LOOP)) {
		if (disk_work__step(dw) < 0)
			return -1;
		cpu_relax();
	}
	if (dw->mode != DISK_RW)
		return 0;
	r = virtio_blk__request(&dw->dev, VIRTIO_BLK_T_FLUSH, 0, 0, 0);
	if (r != VIRTIO_BLK_S_OK && r != VIRTIO_BLK_S_UNSUPP)
		return fail(dw, "flush", 0, r);
	for (uint64_t c = 0; c < dw->chunks; c++) {
		uint64_t g = gen_of(dw, c);

		if (io(dw, VIRTIO_BLK_T_IN, c, "read") || check_chunk(dw, c, g))
			return -1;
		if (g > last_gen)
			last_gen = g;
	}
	serial__printf("DISK final ok mib=%llu gen=%llu rewrites=%llu", (unsigned long long)dw->mib,
		       (unsigned long long)last_gen, (unsigned long long)dw->rewrites);
	return 0;
}
