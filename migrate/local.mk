# migrate: sources and tests are added here
