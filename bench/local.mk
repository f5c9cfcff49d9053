# bench: sources and tests are added here
