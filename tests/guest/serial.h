/* serial.h: COM1 output, one whole line at a time across CPUs. */
#ifndef GUEST_SERIAL_H
#define GUEST_SERIAL_H

void serial__init(void);
/* Print one formatted line ("\n" appended) without interleaving with other CPUs. */
void serial__printf(const char *f, ...) __attribute__((format(printf, 1, 2)));
/* Wait until the transmitter is empty (before powering off). */
void serial__drain(void);

#endif
