"""One transaction per use case, behind TokensService, the one front door."""
