"""Helpers the tests share: servers, clients, media peers, fixtures' building blocks."""
