#include <stdio.h>

#include "cli/commands.h"

int cmd_ctl(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "vmhop ctl: not implemented yet\n");
	return 2;
}
