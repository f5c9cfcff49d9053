/* The hashing threads: each claims the next chunk of the tree digest
 * (stream.h, STREAM_FEAT_DIGEST_TREE) once the writer has written all of
 * it, hashes it from the page cache and asks for its writeback, so that
 * the fsync at the end has little left to wait for. The last, shorter
 * chunk is claimed once the length is final. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "vmhop/file-hasher.h"
#include "vmhop/stream.h"
#include "vmhop/util.h"

#define PIECE (1u << 20)
#define MAX_THREADS 4

struct file_hasher {
	int fd;
	unsigned nthreads;
	pthread_t threads[MAX_THREADS];
	pthread_mutex_t lock;
	pthread_cond_t cond;	/* more written, a chunk hashed, or stop */
	uint64_t written;	/* [0, written) may be read */
	uint64_t final_len;	/* 0 until the length is final */
	uint64_t claimed;	/* chunks [0, claimed) are taken */
	uint64_t done;		/* chunks hashed */
	uint8_t (*sums)[32];	/* each chunk's SHA-256 */
	uint64_t cap;		/* entries in sums */
	int error;		/* errno of a failed read; sticky */
	bool stop;
};

static uint64_t chunks_in(uint64_t len)
{
	return (len + STREAM_TREE_CHUNK - 1) / STREAM_TREE_CHUNK;
}

/* The next chunk whose bytes are all written, its end in *end. */
static bool claimable(const struct file_hasher *h, uint64_t *end)
{
	uint64_t start = h->claimed * STREAM_TREE_CHUNK;
	*end = start + STREAM_TREE_CHUNK;
	if (h->final_len && start < h->final_len) {
		*end = MIN(*end, h->final_len);
		return true;
	}
	return *end <= h->written;
}

static int hash_read_back(struct file_hasher *h, EVP_MD_CTX *md, uint8_t *buf, uint64_t start,
			  uint64_t end)
{
	for (uint64_t off = start; off < end;) {
		size_t n = (size_t)MIN(end - off, (uint64_t)PIECE);
		int rc = util__pread_all(h->fd, buf, n, (off_t)off);
		if (rc < 0)
			return rc;
		if (EVP_DigestUpdate(md, buf, n) != 1)
			return -EIO;
		off += n;
	}
	return 0;
}

/* Hashed where the page cache has it (chunks start page-aligned), saving
 * the copy of a read; read back where the file cannot be mapped. */
static int hash_chunk(struct file_hasher *h, EVP_MD_CTX *md, uint8_t *buf, uint64_t start,
		      uint64_t end, uint8_t sum[32])
{
	if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		return -ENOMEM;
	size_t len = (size_t)(end - start);
	void *map = mmap(NULL, len, PROT_READ, MAP_SHARED | MAP_POPULATE, h->fd, (off_t)start);
	int rc = 0;
	if (map != MAP_FAILED) {
		if (EVP_DigestUpdate(md, map, len) != 1)
			rc = -EIO;
		munmap(map, len);
	} else {
		rc = hash_read_back(h, md, buf, start, end);
	}
	unsigned n = 0;
	if (!rc && (EVP_DigestFinal_ex(md, sum, &n) != 1 || n != 32))
		rc = -EIO;
	if (rc < 0)
		return rc;
	/* Only a start: a failure shows in the fsync that follows. */
	(void)sync_file_range(h->fd, (off_t)start, (off_t)len, SYNC_FILE_RANGE_WRITE);
	return 0;
}

/* With the lock held and a chunk claimable: hashes it (the lock dropped
 * meanwhile) and records its sum or the error. */
static void take_chunk(struct file_hasher *h, EVP_MD_CTX *md, uint8_t *buf, uint64_t end)
{
	uint64_t i = h->claimed++;
	if (i >= h->cap) {
		uint64_t cap = h->cap ? h->cap * 2 : 256;
		void *p = realloc(h->sums, cap * sizeof(*h->sums));
		if (!p) {
			h->error = ENOMEM;
			return;
		}
		h->sums = p;
		h->cap = cap;
	}
	pthread_mutex_unlock(&h->lock);
	uint8_t sum[32];
	int rc = hash_chunk(h, md, buf, i * STREAM_TREE_CHUNK, end, sum);
	pthread_mutex_lock(&h->lock);
	if (rc < 0) {
		h->error = -rc;
	} else {
		memcpy(h->sums[i], sum, 32);
		h->done++;
	}
	pthread_cond_broadcast(&h->cond);
}

static void *hasher_main(void *arg)
{
	struct file_hasher *h = arg;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t *buf = malloc(PIECE);
	pthread_mutex_lock(&h->lock);
	if (!md || !buf)
		h->error = ENOMEM;
	for (;;) {
		uint64_t end = 0;
		while (!h->stop && !h->error && !claimable(h, &end))
			pthread_cond_wait(&h->cond, &h->lock);
		if (h->stop || h->error)
			break;
		take_chunk(h, md, buf, end);
	}
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
	EVP_MD_CTX_free(md);
	free(buf);
	return NULL;
}

int file_hasher__start(struct file_hasher **out, int fd, struct err *e)
{
	*out = NULL;
	struct file_hasher *h = calloc(1, sizeof(*h));
	if (!h)
		return err__set(e, ENOMEM, "out of memory");
	h->fd = fd;
	/* One CPU is the writer's; the caller of __final joins in once
	 * the writer is done. */
	long cpus = sysconf(_SC_NPROCESSORS_ONLN) - 1;
	unsigned want = cpus < 1 ? 1 : cpus > MAX_THREADS ? MAX_THREADS : (unsigned)cpus;
	int rc = pthread_mutex_init(&h->lock, NULL);
	if (rc) {
		free(h);
		return err__setsys(e, rc, "starting the checkpoint's hashing threads");
	}
	if ((rc = pthread_cond_init(&h->cond, NULL)) != 0) {
		pthread_mutex_destroy(&h->lock);
		free(h);
		return err__setsys(e, rc, "starting the checkpoint's hashing threads");
	}
	while (h->nthreads < want &&
	       (rc = pthread_create(&h->threads[h->nthreads], NULL, hasher_main, h)) == 0)
		h->nthreads++;
	*out = h;
	if (!h->nthreads) {
		file_hasher__free(h);
		*out = NULL;
		return err__setsys(e, rc, "starting the checkpoint's hashing threads");
	}
	return 0;	/* fewer threads than wanted only take longer */
}

void file_hasher__wrote(struct file_hasher *h, uint64_t end)
{
	pthread_mutex_lock(&h->lock);
	if (end > h->written) {
		h->written = end;
		if (end >= (h->claimed + 1) * STREAM_TREE_CHUNK)
			pthread_cond_broadcast(&h->cond);
	}
	pthread_mutex_unlock(&h->lock);
}

int file_hasher__final(struct file_hasher *h, uint64_t len, uint8_t md[32], struct err *e)
{
	pthread_mutex_lock(&h->lock);
	if (!len || len != h->written) {
		pthread_mutex_unlock(&h->lock);
		return err__set(e, EINVAL, "digest of %llu bytes asked, %llu written",
				(unsigned long long)len, (unsigned long long)h->written);
	}
	h->final_len = len;
	pthread_cond_broadcast(&h->cond);
	uint64_t n = chunks_in(len);
	/* The writer is done: this thread hashes beside the others. */
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t *buf = malloc(PIECE);
	uint64_t end = 0;
	while (!h->error && h->done < n) {
		if (ctx && buf && claimable(h, &end))
			take_chunk(h, ctx, buf, end);
		else
			pthread_cond_wait(&h->cond, &h->lock);
	}
	int error = h->error;
	pthread_mutex_unlock(&h->lock);
	EVP_MD_CTX_free(ctx);
	free(buf);
	if (error)
		return err__setsys(e, error, "reading the checkpoint back for its digest");
	/* Every chunk is hashed, so nothing is claimable: the threads wait and
	 * touch sums no more. */
	struct stream_hash root;
	if (stream_hash__init(&root, false) < 0)
		return err__set(e, ENOMEM, "setting up SHA-256");
	stream_hash__update(&root, h->sums, (size_t)(n * 32));
	if (stream_hash__final(&root, md) < 0)
		return err__set(e, EIO, "computing SHA-256");
	return 0;
}

void file_hasher__free(struct file_hasher *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->lock);
	h->stop = true;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
	for (unsigned i = 0; i < h->nthreads; i++)
		pthread_join(h->threads[i], NULL);
	pthread_cond_destroy(&h->cond);
	pthread_mutex_destroy(&h->lock);
	free(h->sums);
	free(h);
}
