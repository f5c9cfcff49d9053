/* Reads a list of image ranges ahead of the disk copy on a thread of its
 * own, so the storage's latency overlaps the copy's CPU work (checksums,
 * the channel) instead of adding to it. */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "migrate/disk-copy.h"
#include "vmhop/util.h"

#define SLOTS 4

enum slot_state { SLOT_FREE, SLOT_READY };

struct readahead {
	int fd;
	const struct disk_chunk *v;
	size_t n;
	size_t next;			/* the consumer's next chunk */
	bool held;			/* the consumer holds chunk next - 1 */
	pthread_t thread;
	bool running;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	struct {
		uint8_t *buf;
		enum slot_state state;
		int err;		/* errno of a failed read */
	} s[SLOTS];
};

static void *reader(void *arg)
{
	struct readahead *ra = arg;
	for (size_t i = 0; i < ra->n; i++) {
		unsigned k = i % SLOTS;
		pthread_mutex_lock(&ra->mu);
		while (ra->s[k].state != SLOT_FREE && !ra->stop)
			pthread_cond_wait(&ra->cv, &ra->mu);
		bool stop = ra->stop;
		pthread_mutex_unlock(&ra->mu);
		if (stop)
			break;
		const struct disk_chunk *c = &ra->v[i];
		/* Whole 4 KiB blocks for O_DIRECT; the image's end reads short. */
		ssize_t got = pread(ra->fd, ra->s[k].buf, ALIGN_UP((size_t)c->len, 4096), (off_t)c->off);
		pthread_mutex_lock(&ra->mu);
		ra->s[k].err = got < 0 ? errno : (uint64_t)got < c->len ? EIO : 0;
		ra->s[k].state = SLOT_READY;
		pthread_cond_broadcast(&ra->cv);
		pthread_mutex_unlock(&ra->mu);
	}
	return NULL;
}

int readahead__start(struct readahead **out, int fd, const struct disk_chunk *v, size_t n,
		     struct err *e)
{
	struct readahead *ra = calloc(1, sizeof(*ra));
	if (!ra)
		return err__set(e, ENOMEM, "out of memory");
	ra->fd = fd;
	ra->v = v;
	ra->n = n;
	pthread_mutex_init(&ra->mu, NULL);
	pthread_cond_init(&ra->cv, NULL);
	for (unsigned k = 0; k < SLOTS; k++)
		if (posix_memalign((void **)&ra->s[k].buf, 4096, DISK_CHUNK_MAX)) {
			readahead__stop(ra);
			return err__set(e, ENOMEM, "out of memory");
		}
	int r = pthread_create(&ra->thread, NULL, reader, ra);
	if (r) {
		readahead__stop(ra);
		return err__setsys(e, r, "starting the disk read-ahead thread");
	}
	ra->running = true;
	*out = ra;
	return 0;
}

int readahead__next(struct readahead *ra, const uint8_t **buf, const struct disk_chunk **c)
{
	pthread_mutex_lock(&ra->mu);
	if (ra->held) {
		ra->s[(ra->next - 1) % SLOTS].state = SLOT_FREE;
		ra->held = false;
		pthread_cond_broadcast(&ra->cv);
	}
	if (ra->next >= ra->n) {
		pthread_mutex_unlock(&ra->mu);
		return 0;
	}
	unsigned k = ra->next % SLOTS;
	while (ra->s[k].state != SLOT_READY)
		pthread_cond_wait(&ra->cv, &ra->mu);
	int err = ra->s[k].err;
	*buf = ra->s[k].buf;
	*c = &ra->v[ra->next++];
	ra->held = true;
	pthread_mutex_unlock(&ra->mu);
	return err ? -err : 1;
}

void readahead__stop(struct readahead *ra)
{
	if (!ra)
		return;
	pthread_mutex_lock(&ra->mu);
	ra->stop = true;
	pthread_cond_broadcast(&ra->cv);
	pthread_mutex_unlock(&ra->mu);
	if (ra->running)
		pthread_join(ra->thread, NULL);
	for (unsigned k = 0; k < SLOTS; k++)
		free(ra->s[k].buf);
	pthread_cond_destroy(&ra->cv);
	pthread_mutex_destroy(&ra->mu);
	free(ra);
}
