/*
 * disk_work.c: sector pattern (512 bytes): "VMHOPBLK", u64 LE sector (the
 * disk's index in bits 48-63, 0 for the first disk), u64 LE generation (>= 1),
 * then byte i (24..511) = (sector*31 + gen*17 + i) & 0xFF.  The index makes
 * two disks' patterns differ, so disks swapped by the host are caught.
 * tests/guest/check-disk.py checks the same pattern from the host.
 */
#include "arch.h"
#include "disk_work.h"
#include "lib.h"
#include "pci.h"
#include "serial.h"
#include "clock.h"

#define CHUNK_BYTES	(64 * KIB)
#define CHUNK_SECTORS	(CHUNK_BYTES / SECTOR_SIZE)
#define INDEX_SHIFT	48	/* the disk index's place in the sector field */
#define BURST_MS	20

static uint8_t chunk_bufs[MAX_DISKS][CHUNK_BYTES] __attribute__((aligned(4096)));

static void fill_sector(uint8_t *s, unsigned index, uint64_t sector, uint64_t gen)
{
	uint8_t b = (uint8_t)(sector * 31 + gen * 17);
	uint64_t field = sector | (uint64_t)index << INDEX_SHIFT;

	memcpy(s, "VMHOPBLK", 8);
	memcpy(s + 8, &field, 8);
	memcpy(s + 16, &gen, 8);
	for (unsigned i = 24; i < SECTOR_SIZE; i++)
		s[i] = (uint8_t)(b + i);
}

static void fill_chunk(struct disk_work *dw, uint64_t chunk, uint64_t gen)
{
	for (unsigned i = 0; i < CHUNK_SECTORS; i++)
		fill_sector(dw->buf + i * SECTOR_SIZE, dw->index, chunk * CHUNK_SECTORS + i, gen);
}

static int fail(struct disk_work *dw, const char *what, uint64_t chunk, int status)
{
	fmt__snprintf(dw->fail, sizeof(dw->fail), "%s: %s at sector %llu: %s (status %d)",
		      dw->ftag, what, (unsigned long long)(chunk * CHUNK_SECTORS),
		      status < 0 ? "no completion" : "device error", status);
	return -1;
}

/* Synchronous chunk I/O, for the end of the run. */
static int io(struct disk_work *dw, uint32_t type, uint64_t chunk, const char *what)
{
	int st = virtio_blk__request(&dw->dev, type, chunk * CHUNK_SECTORS, dw->buf,
				     (uint32_t)CHUNK_BYTES);

	return st == VIRTIO_BLK_S_OK ? 0 : fail(dw, what, chunk, st);
}

static void submit(struct disk_work *dw, uint32_t type)
{
	virtio_blk__submit(&dw->dev, type, dw->chunk * CHUNK_SECTORS, dw->buf,
			   (uint32_t)CHUNK_BYTES);
}

/* Compare dw->buf with the pattern of `gen`; report the first bad sector. */
static int check_chunk(struct disk_work *dw, uint64_t chunk, uint64_t gen)
{
	uint8_t want[SECTOR_SIZE];

	for (unsigned i = 0; i < CHUNK_SECTORS; i++) {
		uint64_t sector = chunk * CHUNK_SECTORS + i, got_gen, got_field;
		const uint8_t *s = dw->buf + i * SECTOR_SIZE;
		unsigned b = 0, got_index;
		char other[32] = "";

		fill_sector(want, dw->index, sector, gen);
		if (!memcmp(s, want, SECTOR_SIZE))
			continue;
		while (s[b] == want[b])
			b++;
		memcpy(&got_gen, s + 16, 8);
		memcpy(&got_field, s + 8, 8);
		got_index = (unsigned)(got_field >> INDEX_SHIFT);
		if (memcmp(s, "VMHOPBLK", 8))
			got_gen = 0;	/* not our pattern at all */
		else if (got_index != dw->index)
			fmt__snprintf(other, sizeof(other), " holds_disk=%u", got_index);
		fmt__snprintf(dw->fail, sizeof(dw->fail),
			      "%s sector=%llu gen=%llu byte=%u expected=0x%x got=0x%x holds_gen=%llu%s",
			      dw->ftag, (unsigned long long)sector, (unsigned long long)gen, b,
			      want[b], s[b], (unsigned long long)got_gen, other);
		return -1;
	}
	return 0;
}

/* disk_rate: a chunk may be written once the TSC reaches next_tsc. */
static bool may_write(struct disk_work *dw)
{
	uint64_t now;

	if (!dw->cost)
		return true;
	now = rdtsc();
	if (!dw->next_tsc || now > dw->next_tsc + dw->burst)
		dw->next_tsc = now > dw->burst ? now - dw->burst : 0;	/* no catch-up burst after a pause */
	if (now < dw->next_tsc)
		return false;
	dw->next_tsc += dw->cost;
	return true;
}

/* Generation chunk c holds now (rw). */
static uint64_t gen_of(const struct disk_work *dw, uint64_t c)
{
	if (dw->phase == DISK_PH_LOOP)
		return c < dw->chunk ? dw->gen : dw->gen - 1;
	return 1;
}

unsigned disk_work__count(const struct params *p)
{
	unsigned n;

	if (p->disk == DISK_NONE)
		return 1;
	if (p->disks)
		return (unsigned)p->disks;
	n = virtio_blk__count();
	return n < 1 ? 1 : n > MAX_DISKS ? MAX_DISKS : n;
}

int disk_work__start(struct disk_work *dw, const struct params *p, unsigned index)
{
	char err[160], rate[40] = "";

	memset(dw, 0, sizeof(*dw));
	dw->index = index;
	/* The first disk's lines are those of the single-disk guest, unchanged. */
	if (index) {
		fmt__snprintf(dw->tag, sizeof(dw->tag), "DISK%u", index);
		fmt__snprintf(dw->ftag, sizeof(dw->ftag), "disk%u", index);
	} else {
		fmt__snprintf(dw->tag, sizeof(dw->tag), "DISK");
		fmt__snprintf(dw->ftag, sizeof(dw->ftag), "disk");
	}
	dw->buf = chunk_bufs[index < MAX_DISKS ? index : 0];
	dw->mode = p->disk;
	dw->mib = p->disk_mib;
	dw->chunks = p->disk_mib * MIB / CHUNK_BYTES;
	dw->loop = p->disk_loop;
	if (dw->mode == DISK_NONE) {
		dw->verdict = "none";
		serial__printf("DISK none");
		return 0;
	}
	if (virtio_blk__init(&dw->dev, index, err, sizeof(err))) {
		/* The driver's reasons start with "disk:". */
		fmt__snprintf(dw->fail, sizeof(dw->fail), "%s%s", dw->ftag,
			      memcmp(err, "disk", 4) ? err : err + 4);
		return -1;
	}
	if (p->disk_rate) {
		dw->cost = clock_khz * (CHUNK_BYTES * 1000) / p->disk_rate;
		dw->burst = clock__ms_to_ticks(BURST_MS);
		fmt__snprintf(rate, sizeof(rate), " rate=%llu", (unsigned long long)p->disk_rate);
	}
	serial__printf("%s virtio-blk pci=00:%02x.%u capacity_sectors=%llu ro_offered=%u queue_size=%u mode=%s mib=%llu loop=%u%s",
		       dw->tag, (dw->dev.bdf >> 3) & 31, dw->dev.bdf & 7,
		       (unsigned long long)dw->dev.capacity, dw->dev.ro_offered ? 1u : 0u,
		       dw->dev.queue_size, cmdline__disk_name(dw->mode),
		       (unsigned long long)dw->mib, dw->loop ? 1u : 0u, rate);
	if (dw->dev.capacity < dw->chunks * CHUNK_SECTORS) {
		fmt__snprintf(dw->fail, sizeof(dw->fail),
			      "%s: capacity %llu sectors is smaller than disk_mib=%llu", dw->ftag,
			      (unsigned long long)dw->dev.capacity, (unsigned long long)dw->mib);
		return -1;
	}
	if (dw->mode == DISK_RO) {
		if (!dw->dev.ro_offered) {
			fmt__snprintf(dw->fail, sizeof(dw->fail),
				      "%s: ro requested but the device does not offer VIRTIO_BLK_F_RO",
				      dw->ftag);
			return -1;
		}
		dw->phase = DISK_PH_RO_READ;
	} else {
		dw->phase = DISK_PH_WRITE;
		dw->gen = 1;
	}
	return 0;
}

/* Start the request the current phase needs next (the device is idle); false if it must wait. */
static bool start_next(struct disk_work *dw)
{
	switch (dw->phase) {
	case DISK_PH_WRITE:
		if (!may_write(dw))
			return false;
		fill_chunk(dw, dw->chunk, 1);
		submit(dw, VIRTIO_BLK_T_OUT);
		break;
	case DISK_PH_LOOP:
		if (dw->loop_write) {
			if (!may_write(dw))
				return false;
			fill_chunk(dw, dw->chunk, dw->gen);
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
	return true;
}

/* The request of the current phase completed with status st. */
static int complete(struct disk_work *dw, int st)
{
	uint64_t c = dw->chunk;

	if (dw->phase == DISK_PH_RO_WRITE) {
		if (st == VIRTIO_BLK_S_IOERR) {
			serial__printf("%s readonly write refused", dw->tag);
			dw->verdict = "ro-refused";
			dw->phase = DISK_PH_IDLE;
			return 0;
		}
		if (st == VIRTIO_BLK_S_OK)
			fmt__snprintf(dw->fail, sizeof(dw->fail),
				      "%s: ro: a write succeeded on a read-only disk", dw->ftag);
		else
			fmt__snprintf(dw->fail, sizeof(dw->fail),
				      "%s: ro: a write got status %d, expected IOERR (1)", dw->ftag, st);
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
			serial__printf("%s ok mib=%llu gen=1", dw->tag, (unsigned long long)dw->mib);
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
		return start_next(dw) ? 1 : 0;
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

	dw->cost = 0;	/* the run is over: no more pacing */
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
	serial__printf("%s final ok mib=%llu gen=%llu rewrites=%llu", dw->tag,
		       (unsigned long long)dw->mib, (unsigned long long)last_gen,
		       (unsigned long long)dw->rewrites);
	return 0;
}
