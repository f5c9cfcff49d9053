/* lib.h: the little of libc the guest needs (it is freestanding). */
#ifndef GUEST_LIB_H
#define GUEST_LIB_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define KIB 1024ULL
#define MIB (1024ULL * 1024)
#define GIB (1024ULL * 1024 * 1024)
#define PAGE_SIZE 4096ULL

void *memset(void *d, int c, size_t n);
void *memcpy(void *restrict d, const void *restrict s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

/* snprintf subset: %d %i %u %x %s %c %%, flags '0' and '-', width, l/ll/z. */
int fmt__vsnprintf(char *buf, size_t size, const char *f, va_list ap);
int fmt__snprintf(char *buf, size_t size, const char *f, ...)
	__attribute__((format(printf, 3, 4)));

#endif
