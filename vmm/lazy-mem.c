#define LOG_TAG "restore"
/* Guest RAM filled from mapped checkpoint files while the guest already
 * runs (see lazy-mem.h). One 64-bit entry per guest page says where its
 * data is: file offset << 10 | file number << 2 | kind; 0 is a zero page.
 *
 * The memfd is shmem, so userfaultfd's missing mode sees every first touch
 * of a page that is a hole: by a vCPU, by KVM reading guest memory for the
 * guest (page tables under shadow paging, the kvm-clock page), or by the
 * VMM's own threads (virtio rings). UFFDIO_COPY puts the page into the
 * memfd itself, so once every page is in place the registration is dropped
 * and the memfd is ordinary guest RAM again: its data extents are right for
 * migrations and checkpoints from then on. */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <zstd.h>

#include "vmhop/guest-mem.h"
#include "vmhop/lazy-mem.h"
#include "vmhop/log.h"
#include "vmhop/util.h"

#define PAGE		4096u
#define KIND_MASK	3u
#define FILE_SHIFT	2
#define OFF_SHIFT	10
/* Pages filled around a faulting one: a guest touches its neighbours next
 * (stack, code, a buffer), and each fault costs a round trip through this
 * process (tens of microseconds here). */
#define FAULT_AROUND	32u
/* The populator's unit: pages per chunk (and at most per UFFDIO_COPY). It
 * takes the chunks the guest faults in first, then the rest in order. */
#define COPY_MAX	1024u
#define HINTS		16u
#define EAGAIN_MAX	10000

struct lazy_file {
	int fd;
	const uint8_t *map;
	size_t len;
};

/* What each filling thread needs for zstd pages. */
struct filler {
	ZSTD_DCtx *dctx;
	uint8_t *page;		/* page-aligned */
	uint8_t *frame;
};

struct lazy_mem {
	struct guest_mem *mem;
	uint64_t npages;
	uint64_t *page;
	struct lazy_file files[LAZY_MEM_MAX_FILES];
	unsigned nr_files;

	int uffd, stop_fd;
	pthread_t fault_thread, fill_thread;
	bool fault_started, fill_started, fault_joined;
	atomic_bool stop;		/* destroy: abandon the fill */
	atomic_bool retired;		/* registration dropped: late errors are moot */
	atomic_bool failed;
	lazy_mem_fail_fn fail;
	void *fail_opaque;

	/* Chunks (COPY_MAX pages) the populator has done, and chunks faults
	 * came from that it should do next (a ring, under lock). */
	_Atomic uint8_t *chunk_done;
	uint64_t nr_chunks;
	uint64_t hint[HINTS];
	unsigned hint_head, hint_len;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool deferred;			/* populator waits for a lazy_mem__wait */
	bool wanted;
	bool done;
	char why[256];			/* the failure, when failed */

	uint64_t t0;
	uint64_t pages_file;
	_Atomic uint64_t faulted, zero_faulted, faults, done_ns;
};

static inline unsigned kind_of(uint64_t v)
{
	return v & KIND_MASK;
}

static inline unsigned file_of(uint64_t v)
{
	return (v >> FILE_SHIFT) & (LAZY_MEM_MAX_FILES - 1);
}

static inline uint64_t off_of(uint64_t v)
{
	return v >> OFF_SHIFT;
}

struct lazy_mem *lazy_mem__new(uint64_t npages, struct err *e)
{
	struct lazy_mem *l = calloc(1, sizeof(*l));
	if (!l) {
		err__set(e, ENOMEM, "out of memory");
		return NULL;
	}
	l->npages = npages;
	l->uffd = l->stop_fd = -1;
	/* calloc: large enough to come from mmap, so untouched entries of a
	 * mostly empty guest cost nothing. */
	l->page = calloc(l->npages, sizeof(*l->page));
	if (!l->page) {
		free(l);
		err__set(e, ENOMEM, "out of memory for the page index of %llu pages",
			 (unsigned long long)npages);
		return NULL;
	}
	l->nr_chunks = (npages + COPY_MAX - 1) / COPY_MAX;
	l->chunk_done = calloc(l->nr_chunks, 1);
	if (!l->chunk_done) {
		free(l->page);
		free(l);
		err__set(e, ENOMEM, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	return l;
}

int lazy_mem__add_file(struct lazy_mem *l, int fd, const uint8_t *map, size_t len,
		       struct err *e)
{
	if (l->nr_files == LAZY_MEM_MAX_FILES) {
		if (map)
			munmap((void *)map, len);
		close(fd);
		return err__set(e, E2BIG, "more than %d checkpoint files", LAZY_MEM_MAX_FILES);
	}
	l->files[l->nr_files] = (struct lazy_file){ .fd = fd, .map = map, .len = len };
	return (int)l->nr_files++;
}

void lazy_mem__set(struct lazy_mem *l, uint64_t pfn, uint32_t n, unsigned file, uint8_t kind,
		   uint64_t data_off)
{
	for (uint32_t i = 0; i < n; i++) {
		uint64_t v = 0;
		if (kind == LAZY_MEM_RAW)
			v = (data_off + (uint64_t)i * PAGE) << OFF_SHIFT |
			    (uint64_t)file << FILE_SHIFT | LAZY_MEM_RAW;
		else if (kind == LAZY_MEM_ZSTD)
			v = data_off << OFF_SHIFT | (uint64_t)file << FILE_SHIFT | LAZY_MEM_ZSTD;
		l->page[pfn + i] = v;
	}
}

static void release_files(struct lazy_mem *l)
{
	for (unsigned i = 0; i < l->nr_files; i++) {
		if (l->files[i].map)
			munmap((void *)l->files[i].map, l->files[i].len);
		if (l->files[i].fd >= 0)
			close(l->files[i].fd);
		l->files[i] = (struct lazy_file){ .fd = -1 };
	}
	l->nr_files = 0;
}

static int filler_init(struct filler *f)
{
	f->dctx = ZSTD_createDCtx();
	f->frame = malloc(PAGE);
	if (posix_memalign((void **)&f->page, PAGE, PAGE))
		f->page = NULL;
	return f->dctx && f->frame && f->page ? 0 : -ENOMEM;
}

static void filler_free(struct filler *f)
{
	ZSTD_freeDCtx(f->dctx);
	free(f->frame);
	free(f->page);
}

/* The zstd page at v into f->page. Read with pread, not through the
 * mapping: once the guest runs, a file cut short under us must turn into an
 * error, not SIGBUS. The frame was checked before the guest started. */
static int unzstd(struct lazy_mem *l, struct filler *f, uint64_t v)
{
	const struct lazy_file *lf = &l->files[file_of(v)];
	uint8_t len[4];
	if (pread(lf->fd, len, 4, (off_t)off_of(v)) != 4)
		return -EIO;
	uint32_t clen = (uint32_t)len[0] | (uint32_t)len[1] << 8 | (uint32_t)len[2] << 16 |
			(uint32_t)len[3] << 24;
	if (!clen || clen >= PAGE || pread(lf->fd, f->frame, clen, (off_t)off_of(v) + 4) != clen)
		return -EIO;
	size_t n = ZSTD_decompressDCtx(f->dctx, f->page, PAGE, f->frame, clen);
	return !ZSTD_isError(n) && n == PAGE ? 0 : -EIO;
}

/* UFFDIO_COPY of n pages from src to pfn: pages already in place (EEXIST:
 * the other thread filled them) are skipped. Returns pages copied or -errno. */
static int64_t copy_pages(struct lazy_mem *l, uint64_t pfn, uint64_t n, const void *src)
{
	uint64_t done = 0, copied = 0;
	unsigned again = 0;
	while (done < n) {
		struct uffdio_copy c = {
			.dst = (uintptr_t)(l->mem->base + (pfn + done) * PAGE),
			.src = (uintptr_t)src + done * PAGE,
			.len = (n - done) * PAGE,
		};
		if (!ioctl(l->uffd, UFFDIO_COPY, &c))
			return (int64_t)(copied + n - done);
		int err = errno;
		if (err == EAGAIN && c.copy > 0) {
			done += (uint64_t)c.copy / PAGE;
			copied += (uint64_t)c.copy / PAGE;
		} else if (err == EEXIST) {
			done++;
		} else if ((err == EAGAIN || err == EINTR) && ++again < EAGAIN_MAX) {
			continue;
		} else {
			return -err;
		}
	}
	return (int64_t)copied;
}

static void failed(struct lazy_mem *l, uint64_t pfn, int err)
{
	if (atomic_exchange(&l->failed, true))
		return;
	pthread_mutex_lock(&l->lock);
	snprintf(l->why, sizeof(l->why), "filling guest page %llu from the checkpoint failed: %s "
		 "(did the file change during the restore?)", (unsigned long long)pfn, strerror(err));
	pthread_mutex_unlock(&l->lock);
	pr_err("%s", l->why);
	if (l->fail)
		l->fail(l->fail_opaque, l->why);
}

/* Fills pages [pfn, end) that have data; zero pages are left alone. */
static int fill_range(struct lazy_mem *l, struct filler *f, uint64_t pfn, uint64_t end,
		      uint64_t *copied)
{
	while (pfn < end) {
		uint64_t v = l->page[pfn];
		if (kind_of(v) == LAZY_MEM_ZERO) {
			pfn++;
			continue;
		}
		int64_t c;
		uint64_t n = 1;
		if (kind_of(v) == LAZY_MEM_ZSTD) {
			int rc = unzstd(l, f, v);
			c = rc < 0 ? rc : copy_pages(l, pfn, 1, f->page);
		} else {
			/* A run of raw pages lying back to back in one file. */
			while (pfn + n < end && n < COPY_MAX &&
			       l->page[pfn + n] == v + (n * PAGE << OFF_SHIFT))
				n++;
			const struct lazy_file *lf = &l->files[file_of(v)];
			c = copy_pages(l, pfn, n, lf->map + off_of(v));
		}
		if (c < 0)
			return (int)c;
		*copied += (uint64_t)c;
		pfn += n;
	}
	return 0;
}

static void wake(struct lazy_mem *l, uint64_t pfn)
{
	struct uffdio_range r = { .start = (uintptr_t)(l->mem->base + pfn * PAGE), .len = PAGE };
	(void)ioctl(l->uffd, UFFDIO_WAKE, &r);
}

/* The guest works here: the populator should fill this chunk next. */
static void hint(struct lazy_mem *l, uint64_t chunk)
{
	if (atomic_load(&l->chunk_done[chunk]))
		return;
	pthread_mutex_lock(&l->lock);
	unsigned last = (l->hint_head + l->hint_len + HINTS - 1) % HINTS;
	if (!l->hint_len || l->hint[last] != chunk) {
		if (l->hint_len == HINTS) {	/* full: the oldest hint goes */
			l->hint_head = (l->hint_head + 1) % HINTS;
			l->hint_len--;
		}
		l->hint[(l->hint_head + l->hint_len) % HINTS] = chunk;
		l->hint_len++;
	}
	pthread_mutex_unlock(&l->lock);
}

/* The next chunk to fill: the newest hint not done yet, else the next one
 * in order from *cursor; false when every chunk is done. */
static bool next_chunk(struct lazy_mem *l, uint64_t *cursor, uint64_t *chunk)
{
	pthread_mutex_lock(&l->lock);
	while (l->hint_len) {
		uint64_t c = l->hint[(l->hint_head + --l->hint_len) % HINTS];
		if (!atomic_load(&l->chunk_done[c])) {
			pthread_mutex_unlock(&l->lock);
			*chunk = c;
			return true;
		}
	}
	pthread_mutex_unlock(&l->lock);
	while (*cursor < l->nr_chunks && atomic_load(&l->chunk_done[*cursor]))
		++*cursor;
	*chunk = *cursor;
	return *cursor < l->nr_chunks;
}

static void serve(struct lazy_mem *l, struct filler *f, uint64_t addr)
{
	uint64_t pfn = (addr - (uintptr_t)l->mem->base) / PAGE;
	if (pfn >= l->npages)
		return;
	atomic_fetch_add(&l->faults, 1);
	hint(l, pfn / COPY_MAX);
	uint64_t copied = 0;
	int rc = 0;
	if (!atomic_load(&l->failed)) {
		uint64_t first = pfn & ~(uint64_t)(FAULT_AROUND - 1);
		rc = fill_range(l, f, first, MIN(first + FAULT_AROUND, l->npages), &copied);
		atomic_fetch_add(&l->faulted, copied);
	}
	/* A zero page, or (after a failure) any page: the VM is being stopped,
	 * its threads must still get out of the fault. */
	if (!rc && (kind_of(l->page[pfn]) == LAZY_MEM_ZERO || atomic_load(&l->failed))) {
		struct uffdio_zeropage z = {
			.range = { .start = (uintptr_t)(l->mem->base + pfn * PAGE), .len = PAGE },
		};
		if (!ioctl(l->uffd, UFFDIO_ZEROPAGE, &z))
			atomic_fetch_add(&l->zero_faulted, 1);
		else if (errno != EEXIST)
			rc = -errno;
	}
	if (rc < 0 && !atomic_load(&l->retired))
		failed(l, pfn, -rc);
	/* Filled by the populator meanwhile (EEXIST): make sure it goes on. */
	wake(l, pfn);
}

/* Ahead of the vCPUs (best effort: needs privilege): a vCPU waiting in a
 * fault waits for this thread. (Not the populator: ahead of the vCPUs it
 * would also be ahead of the control socket's thread, measured to slow a
 * restored guest's first steps more than it saves.) */
static void raise_priority(int nice)
{
	(void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice);
}

static void *fault_main(void *arg)
{
	struct lazy_mem *l = arg;
	struct filler f = { 0 };
	raise_priority(-10);
	if (filler_init(&f) < 0)
		failed(l, 0, ENOMEM);
	for (;;) {
		struct pollfd p[2] = { { .fd = l->uffd, .events = POLLIN },
				       { .fd = l->stop_fd, .events = POLLIN } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			failed(l, 0, errno);
			break;
		}
		if (p[1].revents)
			break;
		struct uffd_msg msg[16];
		ssize_t n = read(l->uffd, msg, sizeof(msg));
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			failed(l, 0, errno);
			break;
		}
		for (size_t i = 0; i < (size_t)n / sizeof(msg[0]); i++)
			if (msg[i].event == UFFD_EVENT_PAGEFAULT)
				serve(l, f.dctx ? &f : NULL, msg[i].arg.pagefault.address);
	}
	filler_free(&f);
	return NULL;
}

static void finish(struct lazy_mem *l)
{
	pthread_mutex_lock(&l->lock);
	l->done = true;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
}

static void stop_fault_thread(struct lazy_mem *l)
{
	uint64_t one = 1;
	if (write(l->stop_fd, &one, sizeof(one)) != sizeof(one))
		pr_warn("cannot signal the fault thread: %s", strerror(errno));
	pthread_join(l->fault_thread, NULL);
	l->fault_joined = true;
}

static void *fill_main(void *arg)
{
	struct lazy_mem *l = arg;
	struct filler f = { 0 };
	uint64_t copied = 0, pfn = 0;
	pthread_mutex_lock(&l->lock);
	while (l->deferred && !l->wanted && !atomic_load(&l->stop))
		pthread_cond_wait(&l->cond, &l->lock);
	pthread_mutex_unlock(&l->lock);
	int rc = filler_init(&f);
	uint64_t cursor = 0, chunk;
	while (!rc && !atomic_load(&l->stop) && !atomic_load(&l->failed) &&
	       next_chunk(l, &cursor, &chunk)) {
		pfn = chunk * COPY_MAX;
		rc = fill_range(l, &f, pfn, MIN(pfn + COPY_MAX, l->npages), &copied);
		if (!rc)
			atomic_store(&l->chunk_done[chunk], 1);
	}
	filler_free(&f);
	if (rc < 0)
		failed(l, pfn, -rc);
	if (atomic_load(&l->stop) || atomic_load(&l->failed)) {
		/* Destroy ends the fault thread; after a failure it goes on
		 * giving zero pages so the VM's threads can stop. */
		finish(l);
		return NULL;
	}
	/* Every page with data is in the memfd: from here on a missing page
	 * is a zero page and the kernel's own business. Unregistering wakes
	 * any thread still waiting in a fault; it retries as a plain one. */
	atomic_store(&l->retired, true);
	struct uffdio_range r = { .start = (uintptr_t)l->mem->base, .len = l->npages * PAGE };
	if (ioctl(l->uffd, UFFDIO_UNREGISTER, &r) < 0)
		pr_warn("UFFDIO_UNREGISTER: %s", strerror(errno));
	stop_fault_thread(l);
	release_files(l);
	atomic_store(&l->done_ns, util__now_ns() - l->t0);
	pr_info("guest memory complete after %.1f ms: %llu pages from the checkpoint, "
		 "%llu filled on first touch (%llu faults)", (double)atomic_load(&l->done_ns) / 1e6,
		 (unsigned long long)l->pages_file, (unsigned long long)atomic_load(&l->faulted),
		 (unsigned long long)atomic_load(&l->faults));
	finish(l);
	return NULL;
}

static int open_uffd(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0 && errno == EPERM) {
		/* Not privileged for kernel-mode faults through the syscall:
		 * the device node may still be ours to use. */
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
		if (dev >= 0) {
			fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
			close(dev);
		}
	}
	return fd;
}

int lazy_mem__start(struct lazy_mem *l, struct guest_mem *m, lazy_mem_fail_fn fail, void *opaque,
		    struct err *e)
{
	if (m->nr_pages != l->npages)
		return err__set(e, EINVAL, "the page index is for %llu pages, guest memory has %llu",
				(unsigned long long)l->npages, (unsigned long long)m->nr_pages);
	l->mem = m;
	for (uint64_t i = 0; i < l->npages; i++)
		l->pages_file += kind_of(l->page[i]) != LAZY_MEM_ZERO;
	int uffd = open_uffd();
	if (uffd < 0)
		return err__setsys(e, EOPNOTSUPP, "userfaultfd: %s", strerror(errno));
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_MISSING_SHMEM };
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)l->mem->base, .len = l->npages * PAGE },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	uint64_t need = 1ULL << _UFFDIO_COPY | 1ULL << _UFFDIO_ZEROPAGE | 1ULL << _UFFDIO_WAKE;
	if (ioctl(uffd, UFFDIO_API, &api) < 0 || ioctl(uffd, UFFDIO_REGISTER, &reg) < 0 ||
	    (reg.ioctls & need) != need) {
		int err = errno;
		close(uffd);
		return err__set(e, EOPNOTSUPP, "userfaultfd on guest memory: %s", strerror(err));
	}
	l->uffd = uffd;
	l->stop_fd = eventfd(0, EFD_CLOEXEC);
	l->fail = fail;
	l->fail_opaque = opaque;
	l->t0 = util__now_ns();
	if (l->stop_fd < 0)
		return err__setsys(e, errno, "eventfd");
	/* Signals are for the loop's and the vCPUs' threads: these two live
	 * for the whole fill and must not take one meant for another. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int r = pthread_create(&l->fault_thread, NULL, fault_main, l);
	l->fault_started = r == 0;
	if (!r) {
		r = pthread_create(&l->fill_thread, NULL, fill_main, l);
		l->fill_started = r == 0;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r)
		return err__setsys(e, r, "starting the %s thread",
				   l->fault_started ? "memory populator" : "page fault");
	l->mem->lazy = l;
	return 0;
}

int lazy_mem__fill_now(struct lazy_mem *l, struct guest_mem *m, struct err *e)
{
	if (m->nr_pages != l->npages)
		return err__set(e, EINVAL, "the page index is for %llu pages, guest memory has %llu",
				(unsigned long long)l->npages, (unsigned long long)m->nr_pages);
	l->mem = m;
	struct filler f = { 0 };
	if (filler_init(&f) < 0) {
		filler_free(&f);
		return err__set(e, ENOMEM, "out of memory");
	}
	int rc = 0;
	for (uint64_t pfn = 0; pfn < l->npages && !rc;) {
		uint64_t v = l->page[pfn], n = 1;
		uint8_t *to = l->mem->base + pfn * PAGE;
		const struct lazy_file *lf = &l->files[file_of(v)];
		if (kind_of(v) == LAZY_MEM_RAW) {
			while (pfn + n < l->npages && l->page[pfn + n] == v + (n * PAGE << OFF_SHIFT))
				n++;
			memcpy(to, lf->map + off_of(v), n * PAGE);
		} else if (kind_of(v) == LAZY_MEM_ZSTD) {
			if (unzstd(l, &f, v) < 0)
				rc = err__set(e, EIO, "page %llu: the zstd frame cannot be read again",
					      (unsigned long long)pfn);
			else
				memcpy(to, f.page, PAGE);
		}
		pfn += n;
	}
	filler_free(&f);
	release_files(l);
	l->done = true;
	return rc;
}

void lazy_mem__defer(struct lazy_mem *l)
{
	l->deferred = true;
}

int lazy_mem__wait(struct lazy_mem *l, struct err *e)
{
	if (!l)
		return 0;
	pthread_mutex_lock(&l->lock);
	l->wanted = true;
	pthread_cond_broadcast(&l->cond);
	while (l->fill_started && !l->done)
		pthread_cond_wait(&l->cond, &l->lock);
	int rc = atomic_load(&l->failed) ? err__set(e, EIO, "guest memory is incomplete: %s", l->why) : 0;
	pthread_mutex_unlock(&l->lock);
	return rc;
}

void lazy_mem__get_stats(struct lazy_mem *l, struct lazy_mem_stats *st)
{
	*st = (struct lazy_mem_stats){
		.pages_file = l->pages_file, .pages_faulted = atomic_load(&l->faulted),
		.pages_zero_faulted = atomic_load(&l->zero_faulted),
		.faults = atomic_load(&l->faults), .done_ns = atomic_load(&l->done_ns),
	};
}

void lazy_mem__destroy(struct lazy_mem *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	atomic_store(&l->stop, true);
	pthread_cond_broadcast(&l->cond);
	bool incomplete = l->fill_started && !l->done;
	pthread_mutex_unlock(&l->lock);
	if (incomplete)
		pr_info("the VM ended before its memory was complete: %llu of %llu pages from the "
			"checkpoint filled on first touch (%llu faults)",
			(unsigned long long)atomic_load(&l->faulted), (unsigned long long)l->pages_file,
			(unsigned long long)atomic_load(&l->faults));
	if (l->fill_started)
		pthread_join(l->fill_thread, NULL);
	if (l->fault_started && !l->fault_joined)
		stop_fault_thread(l);
	if (l->uffd >= 0)
		close(l->uffd);
	if (l->stop_fd >= 0)
		close(l->stop_fd);
	release_files(l);
	if (l->mem && l->mem->lazy == l)
		l->mem->lazy = NULL;
	pthread_cond_destroy(&l->cond);
	pthread_mutex_destroy(&l->lock);
	free((void *)l->chunk_done);
	free(l->page);
	free(l);
}
