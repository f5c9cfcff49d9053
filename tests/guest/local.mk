# tests/guest: sources and tests are added here
