# transport: sources and tests are added here
EXTRA_DIST += transport/README.md
