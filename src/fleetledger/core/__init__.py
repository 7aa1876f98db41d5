"""The core: errors, money, time, the usage event and its dimensions, the filter grammar, the event bus."""
