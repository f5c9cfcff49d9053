# snapshot: sources and tests are added here
