/* The end of every Check program's main: run the suite (CK_VERBOSITY
 * decides the output; the summary line is what CI shows) and turn the
 * failures into the exit status. */
#ifndef VMHOP_TESTS_CHECK_RUN_H
#define VMHOP_TESTS_CHECK_RUN_H

#include <check.h>
#include <stdlib.h>

static inline int check_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
