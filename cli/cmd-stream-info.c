#include <stdio.h>

#include "cli/commands.h"

int cmd_stream_info(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "vmhop stream-info: not implemented yet\n");
	return 2;
}
