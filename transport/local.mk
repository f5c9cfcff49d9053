# transport: sources and tests are added here
