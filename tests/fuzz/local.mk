# tests/fuzz: sources and tests are added here
